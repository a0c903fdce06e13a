//! Log-prob gather and the DPO loss at a realistic shape on the CPU (burn-ndarray, f32):
//! `[B, T, V] = [8, 1024, 32768]` logits, i.e. 4 chosen/rejected pairs of 1024 tokens over a
//! Llama-2-sized vocabulary (1 GiB of logits). `benches/logprobs_memory.rs` prints the peak
//! memory of the plain and the chunked gather.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use temper_objectives::logprobs::{SequenceLogProbs, token_log_probs, token_log_probs_chunked};
use temper_objectives::preference::{DpoConfig, dpo_loss};

type Cpu = NdArray<f32>;
type CpuGrad = Autodiff<Cpu>;

const BATCH: usize = 8;
const SEQ: usize = 1024;
const VOCAB: usize = 32768;
const CHUNK: usize = 128;

fn inputs<B: burn::tensor::backend::Backend>() -> (Tensor<B, 3>, Tensor<B, 2, Int>, Tensor<B, 2>) {
    let device = Default::default();
    let logits = Tensor::random([BATCH, SEQ, VOCAB], Distribution::Normal(0.0, 3.0), &device);
    let labels = Tensor::random(
        [BATCH, SEQ],
        Distribution::Uniform(0.0, VOCAB as f64),
        &device,
    );
    let mask = Tensor::ones([BATCH, SEQ], &device);
    (logits, labels, mask)
}

fn gather(c: &mut Criterion) {
    let (logits, labels, mask) = inputs::<Cpu>();
    let mut group = c.benchmark_group("token_log_probs_8x1024x32768");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * SEQ) as u64));
    group.bench_function("plain", |b| {
        b.iter(|| {
            token_log_probs(logits.clone(), labels.clone(), mask.clone())
                .unwrap()
                .into_data()
        })
    });
    group.bench_function("chunked_128", |b| {
        b.iter(|| {
            token_log_probs_chunked(logits.clone(), labels.clone(), mask.clone(), CHUNK)
                .unwrap()
                .into_data()
        })
    });
    group.finish();
}

/// Logits → log-probs → sequence sums → DPO loss → backward to the logits: the objective's
/// share of one training step.
fn dpo_step(c: &mut Criterion) {
    let (logits, labels, mask) = inputs::<Cpu>();
    let device = Default::default();
    let reference = Tensor::<Cpu, 1>::random([BATCH], Distribution::Normal(-2000.0, 10.0), &device);
    let reference = SequenceLogProbs {
        sum: Tensor::<CpuGrad, 1>::from_inner(reference),
        tokens: Tensor::full([BATCH], SEQ as f32, &device),
    }
    .split_pairs()
    .unwrap();
    let config = DpoConfig::default();
    let mut group = c.benchmark_group("dpo_loss_8x1024x32768");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * SEQ) as u64));
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let logits = Tensor::<CpuGrad, 3>::from_inner(logits.clone()).require_grad();
            let per_token = token_log_probs(
                logits.clone(),
                Tensor::from_inner(labels.clone()),
                Tensor::from_inner(mask.clone()),
            )
            .unwrap();
            let mask = Tensor::from_inner(mask.clone());
            let policy = SequenceLogProbs::from_tokens(per_token, mask)
                .split_pairs()
                .unwrap();
            let out = dpo_loss(&config, &policy, &reference).unwrap();
            let grads = out.loss.backward();
            logits.grad(&grads).map(|g| g.into_data())
        })
    });
    group.finish();
}

criterion_group!(benches, gather, dpo_step);
criterion_main!(benches);
