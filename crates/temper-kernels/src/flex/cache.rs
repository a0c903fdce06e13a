//! Writing a KV cache's new positions into its buffer in place. burn-flex's `slice_assign`
//! holds a second handle on the buffer while it writes, so it always copies the whole buffer:
//! a decoding step would cost the cache's size instead of its new tokens.

use burn::backend::flex::FlexTensor;

use super::{all_f32, contiguous, dims, values, writable_in_place};

/// `(buffer [B, C, H, D], start, new [B, N, H, D])` → the buffer with positions
/// `start..start + N` replaced, or the buffer back untouched when it is shared, not one whole
/// contiguous f32 buffer, or `new` does not fit.
pub(crate) fn write_positions(
    mut buffer: FlexTensor,
    start: usize,
    new: FlexTensor,
) -> Result<FlexTensor, FlexTensor> {
    let (shape, new_shape) = (dims(&buffer), dims(&new));
    let [batch, capacity, heads, dim] = shape[..] else {
        return Err(buffer);
    };
    let n = new_shape.get(1).copied().unwrap_or(0);
    let fits = new_shape[..] == [batch, n, heads, dim] && start + n <= capacity;
    if !all_f32(&[&buffer, &new]) || !fits || !writable_in_place(&buffer) {
        return Err(buffer);
    }
    let new = contiguous(new);
    let source = values(&new);
    // Held once (checked above), so this borrows the buffer without copying it.
    let target = buffer.storage_mut::<f32>();
    let row = heads * dim;
    for b in 0..batch {
        let from = &source[b * n * row..(b + 1) * n * row];
        let at = (b * capacity + start) * row;
        target[at..at + n * row].copy_from_slice(from);
    }
    Ok(buffer)
}
