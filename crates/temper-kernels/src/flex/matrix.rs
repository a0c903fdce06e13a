//! A 2-D f32 tensor as the fused kernels read it: in place, through its strides, whatever view
//! of a buffer it is (a narrowed slice, a transpose), so that no weight is copied to be read.

use burn::backend::flex::FlexTensor;

use super::{contiguous, dims};

/// A 2-D f32 tensor read in place: element `(i, j)` at `offset + i·rs + j·cs` of its storage,
/// with positive strides one of which is 1 (row- or column-major, possibly a narrowed view).
pub(crate) struct Matrix {
    tensor: FlexTensor,
    pub(crate) cols: usize,
    pub(crate) offset: usize,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

impl Matrix {
    /// `tensor` read where it lies, or made contiguous first when its strides do not allow it.
    pub(crate) fn new(tensor: FlexTensor) -> Self {
        Self::read_in_place(tensor).unwrap_or_else(|tensor| {
            Self::read_in_place(contiguous(tensor))
                .unwrap_or_else(|_| unreachable!("a contiguous matrix is read in place"))
        })
    }

    /// `tensor` read where it lies, or back untouched when its strides do not allow it.
    pub(crate) fn read_in_place(tensor: FlexTensor) -> Result<Self, FlexTensor> {
        let Some((offset, rs, cs)) = Self::in_place(&tensor) else {
            return Err(tensor);
        };
        Ok(Matrix {
            cols: dims(&tensor)[1],
            tensor,
            offset,
            rs,
            cs,
        })
    }

    /// `(offset, row stride, column stride)` when gemm may read `tensor` as it lies.
    fn in_place(tensor: &FlexTensor) -> Option<(usize, isize, isize)> {
        let layout = tensor.layout();
        let (rows, cols, mut rs, mut cs) = layout.as_2d_strides()?;
        if rows == 0 || cols == 0 {
            return Some((0, 1, 1));
        }
        // A stride along a dimension of size 1 is never followed.
        if rows == 1 {
            rs = 1;
        }
        if cols == 1 {
            cs = 1;
        }
        if rs < 1 || cs < 1 || (rs != 1 && cs != 1) {
            return None;
        }
        let offset = layout.start_offset();
        let last = offset + (rows - 1) * rs as usize + (cols - 1) * cs as usize;
        (last < tensor.storage::<f32>().len()).then_some((offset, rs, cs))
    }

    /// Element `(row, col)`.
    pub(crate) fn get(&self, row: usize, col: usize) -> f32 {
        let index = self.offset as isize + row as isize * self.rs + col as isize * self.cs;
        self.tensor.storage::<f32>()[index as usize]
    }

    /// A pointer to the start of row `row`.
    pub(crate) fn at(&self, row: usize) -> *const f32 {
        let storage = self.tensor.storage::<f32>();
        storage
            .as_ptr()
            .wrapping_add(self.offset)
            .wrapping_offset(row as isize * self.rs)
    }

    /// The buffer the matrix lies in (element `(i, j)` at `offset + i·rs + j·cs`).
    pub(crate) fn storage(&self) -> &[f32] {
        self.tensor.storage::<f32>()
    }
}
