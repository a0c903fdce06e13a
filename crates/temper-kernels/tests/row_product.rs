//! The one-row products (`linear`, `transposed_product`) against their plain twins over random
//! widths, for every layout a weight arrives in (a `Linear` weight, a narrowed view of one, a
//! tied table read through its transpose), with and without a bias; the same bits under one
//! thread and two; and more than one row left to the plain product untouched.

mod common;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use common::Rng;
use proptest::prelude::*;
use temper_kernels::{linear, plain, transposed_product};

fn matrix(rng: &mut Rng, rows: usize, cols: usize) -> Tensor<Flex, 2> {
    let data = TensorData::new(rng.values(rows * cols, 1.0), [rows, cols]);
    Tensor::from_data(data, &Default::default())
}

fn values(t: Tensor<Flex, 2>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32 data")
}

/// Each output within 1e-5 of the plain one, relative to the size of the sum that made it
/// (`Σ|x·w|`, plus the bias): the two sum the same products in different orders.
fn assert_close(got: &[f32], expected: &[f32], magnitudes: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), expected.len());
    for (j, ((g, e), m)) in got.iter().zip(expected).zip(magnitudes).enumerate() {
        prop_assert!(
            (g - e).abs() <= 1e-5 * m.max(f32::MIN_POSITIVE),
            "output {j}: {g} vs {e} (magnitude {m})"
        );
    }
    Ok(())
}

/// `Σ_k |x_k · w_kj| + |b_j|` for each output `j`.
fn magnitudes(
    x: &Tensor<Flex, 2>,
    weight: &Tensor<Flex, 2>,
    bias: Option<&Tensor<Flex, 1>>,
) -> Vec<f32> {
    let sums = x.clone().abs().matmul(weight.clone().abs());
    let sums = match bias {
        Some(b) => sums + b.clone().abs().unsqueeze(),
        None => sums,
    };
    values(sums)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn one_row_linear_equals_the_plain_product(
        width in 1usize..=70,
        outputs in 1usize..=1100,
        narrowed in any::<bool>(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seeded(seed);
        let x = matrix(&mut rng, 1, width);
        // A narrowed view: rows lie `outputs + 3` apart, from an offset of 2.
        let weight = if narrowed {
            matrix(&mut rng, width, outputs + 3).narrow(1, 2, outputs)
        } else {
            matrix(&mut rng, width, outputs)
        };
        let bias = with_bias.then(|| matrix(&mut rng, 1, outputs).reshape([outputs]));
        let scale = magnitudes(&x, &weight, bias.as_ref());
        let expected = values(plain::linear(x.clone(), weight.clone(), bias.clone()));
        assert_close(&values(linear(x, weight, bias)), &expected, &scale)?;
    }

    #[test]
    fn one_row_transposed_product_equals_the_plain_product(
        width in 1usize..=70,
        rows in 1usize..=700,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seeded(seed);
        let x = matrix(&mut rng, 1, width);
        let table = matrix(&mut rng, rows, width);
        let scale = magnitudes(&x, &table.clone().transpose(), None);
        let expected = values(plain::transposed_product(x.clone(), table.clone()));
        assert_close(&values(transposed_product(x, table)), &expected, &scale)?;
    }
}

#[test]
fn the_bits_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::seeded(7);
    let x = matrix(&mut rng, 1, 203);
    let weight = matrix(&mut rng, 203, 1500);
    let table = matrix(&mut rng, 900, 203);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let projected = values(linear(x.clone(), weight.clone(), None));
            let head = values(transposed_product(x.clone(), table.clone()));
            (projected, head)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn several_rows_take_the_plain_product() {
    let mut rng = Rng::seeded(11);
    let x = matrix(&mut rng, 3, 40);
    let weight = matrix(&mut rng, 40, 600);
    let table = matrix(&mut rng, 600, 40);
    assert_eq!(
        values(linear(x.clone(), weight.clone(), None)),
        values(plain::linear(x.clone(), weight, None))
    );
    assert_eq!(
        values(transposed_product(x.clone(), table.clone())),
        values(plain::transposed_product(x, table))
    );
}
