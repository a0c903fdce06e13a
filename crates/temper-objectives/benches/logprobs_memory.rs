//! Peak heap memory of the plain and the chunked log-prob gather at `[8, 1024, 32768]`, measured
//! by counting the allocator's live bytes (the ndarray backend allocates on the heap). Prints a
//! table; run with `cargo bench -p temper-objectives --bench logprobs_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::{Distribution, Int, Tensor};
use temper_objectives::logprobs::{token_log_probs, token_log_probs_chunked};

/// Counts live and peak bytes; no crate does this for a whole process without a profiler.
struct PeakCounter;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakCounter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: PeakCounter = PeakCounter;

type Cpu = NdArray<f32>;
const SHAPE: [usize; 3] = [8, 1024, 32768];

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `f`, returning (peak bytes above what was live before, seconds).
fn measure(f: impl FnOnce()) -> (usize, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    f();
    (
        PEAK.load(Ordering::Relaxed) - before,
        start.elapsed().as_secs_f64(),
    )
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
