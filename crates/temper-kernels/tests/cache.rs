//! The KV-cache write: the same values as the plain twin (`slice_assign`) over random shapes,
//! in place on burn-flex when the buffer is held once, and a copy that leaves the original
//! untouched when it is held elsewhere too.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use proptest::prelude::*;
use temper_kernels::{plain, write_positions};

fn counting(shape: [usize; 4], from: f32) -> Tensor<Flex, 4> {
    let len = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|i| from + i as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values(t: Tensor<Flex, 4>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32 data")
}

/// Where the tensor's elements live (the handle taken for this is dropped at once).
fn address(t: &Tensor<Flex, 4>) -> usize {
    t.clone().into_primitive().tensor().bytes().as_ptr() as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn cache_writes_equal_slice_assign_and_happen_in_place(
        batch in 1usize..=3,
        capacity in 1usize..=12,
        heads in 1usize..=3,
        dim in 1usize..=9,
        start_fraction in 0.0f64..1.0,
        n_fraction in 0.0f64..1.0,
        shared in any::<bool>(),
    ) {
        let start = ((capacity - 1) as f64 * start_fraction) as usize;
        let n = 1 + ((capacity - start - 1) as f64 * n_fraction) as usize;
        let buffer = counting([batch, capacity, heads, dim], 0.0);
        let new = counting([batch, n, heads, dim], 10_000.0);
        let expected = values(plain::write_positions(buffer.clone(), start, new.clone()));
        let kept = shared.then(|| buffer.clone());
        let before = address(&buffer);
        let written = write_positions(buffer, start, new);
        prop_assert_eq!(address(&written) == before, !shared, "in place exactly when held once");
        prop_assert_eq!(values(written), expected);
        if let Some(kept) = kept {
            prop_assert_eq!(values(kept), values(counting([batch, capacity, heads, dim], 0.0)));
        }
    }
}
