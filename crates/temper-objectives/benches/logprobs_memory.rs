//! Peak heap memory of the plain and the chunked log-prob gather at `[8, 1024, 32768]`, measured
//! by a counting global allocator (`peak_alloc`; the ndarray backend allocates on the heap). Prints a
//! table; run with `cargo bench -p temper-objectives --bench logprobs_memory`.

use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::{Distribution, Int, Tensor};
use peak_alloc::PeakAlloc;
use temper_objectives::logprobs::{token_log_probs, token_log_probs_chunked};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

type Cpu = NdArray<f32>;
const SHAPE: [usize; 3] = [8, 1024, 32768];

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `f`, returning (peak bytes above what was live before, seconds).
fn measure(f: impl FnOnce()) -> (usize, f64) {
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    let start = Instant::now();
    f();
    (HEAP.peak_usage() - before, start.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every bench for its names
    }
    let device = Default::default();
    let [batch, seq, vocab] = SHAPE;
    let logits = Tensor::<Cpu, 3>::random(SHAPE, Distribution::Normal(0.0, 3.0), &device);
    let labels = Tensor::<Cpu, 2, Int>::random(
        [batch, seq],
        Distribution::Uniform(0.0, vocab as f64),
        &device,
    );
    let mask = Tensor::<Cpu, 2>::ones([batch, seq], &device);
    let logits_bytes = batch * seq * vocab * 4;

    println!(
        "token log-probs, logits [{batch}, {seq}, {vocab}] f32 ({:.0} MiB), burn-ndarray",
        mib(logits_bytes)
    );
    println!("| variant | peak extra memory | × logits | time |");
    println!("|---|---:|---:|---:|");
    let mut reference = None;
    let mut row = |name: &str, run: &dyn Fn() -> Vec<f32>| {
        let mut out = Vec::new();
        let (peak, secs) = measure(|| out = run());
        println!(
            "| {name} | {:.0} MiB | {:.2} | {secs:.2} s |",
            mib(peak),
            peak as f64 / logits_bytes as f64
        );
        match &reference {
            None => reference = Some(out),
            Some(expected) => {
                let worst = expected
                    .iter()
                    .zip(&out)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= 1e-5, "{name} differs from plain by {worst}");
            }
        }
    };
    let data = |t: Tensor<Cpu, 2>| t.into_data().to_vec::<f32>().expect("f32");
    row("plain", &|| {
        data(token_log_probs(logits.clone(), labels.clone(), mask.clone()).unwrap())
    });
    for chunk in [512, 128, 32] {
        row(&format!("chunked, {chunk} positions"), &|| {
            data(
                token_log_probs_chunked(logits.clone(), labels.clone(), mask.clone(), chunk)
                    .unwrap(),
            )
        });
    }
}
