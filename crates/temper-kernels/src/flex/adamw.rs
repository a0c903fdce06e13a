//! AdamW's update of one parameter in one pass: each element's decay, moments and step computed
//! together, in place in the parameter's and moments' buffers when nothing else holds them
//! (the plain path runs about a dozen element-wise ops, each a pass over memory and most a new
//! buffer).

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{
    ROWS_PER_TASK_ELEMENTS, all_f32, contiguous, dims, new_tensor, values, writable_in_place,
};
use crate::AdamWStep;

/// `(parameter, gradient, exp_avg, exp_avg_sq)` → the three updated, or the four back when
/// they are not all f32 of one length.
pub(crate) fn update(
    parameter: FlexTensor,
    gradient: FlexTensor,
    exp_avg: FlexTensor,
    exp_avg_sq: FlexTensor,
    step: &AdamWStep,
) -> Result<(FlexTensor, FlexTensor, FlexTensor), Box<[FlexTensor; 4]>> {
    let shape = dims(&parameter);
    let same = [&gradient, &exp_avg, &exp_avg_sq]
        .iter()
        .all(|t| dims(t) == shape);
    if !all_f32(&[&parameter, &gradient, &exp_avg, &exp_avg_sq]) || shape.len() != 1 || !same {
        return Err(Box::new([parameter, gradient, exp_avg, exp_avg_sq]));
    }
    // The scalars as burn-flex's scalar ops round them, so each element's result is the plain
    // twin's to the bit.
    let c = step.scalars().to_f32();
    let gradient = contiguous(gradient);
    let (mut parameter, mut exp_avg, mut exp_avg_sq) =
        (owned(parameter), owned(exp_avg), owned(exp_avg_sq));
    let g = values(&gradient);
    let (p, m, v) = (
        parameter.storage_mut::<f32>(),
        exp_avg.storage_mut::<f32>(),
        exp_avg_sq.storage_mut::<f32>(),
    );
    p.par_chunks_mut(ROWS_PER_TASK_ELEMENTS)
        .zip(m.par_chunks_mut(ROWS_PER_TASK_ELEMENTS))
        .zip(v.par_chunks_mut(ROWS_PER_TASK_ELEMENTS))
        .zip(g.par_chunks(ROWS_PER_TASK_ELEMENTS))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let decayed = *p * c.decay;
                *m = *m + (g - *m) * c.one_minus_beta1;
                *v = *v * c.beta2 + (g * g) * c.one_minus_beta2;
                let denominator = v.sqrt() / c.bias_correction2_sqrt + c.epsilon;
                *p = decayed - (*m / denominator) * c.step_size;
            }
        });
    Ok((parameter, exp_avg, exp_avg_sq))
}

/// `t` itself when its buffer is its own, contiguous and exactly its size (then it is written
/// in place), else a copy that is.
fn owned(t: FlexTensor) -> FlexTensor {
    let n = t.layout().num_elements();
    if writable_in_place(&t) {
        t
    } else {
        let t = contiguous(t);
        new_tensor(values(&t).to_vec(), [n])
    }
}
