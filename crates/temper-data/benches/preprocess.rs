//! Template + tokenise + mask throughput on 10k synthetic conversational preference pairs
//! with the bundled tokenizer and its Qwen2.5 chat template: the work TRL's DPO
//! preprocessing does before training. `examples/bench_data.rs` runs the same work next to
//! TRL itself and prints both rates.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use temper_data::tokenize::{tokenize, tokenize_all};
use temper_data::{ChatTokenizer, Example, Format, TokenizeOptions, synthetic};

/// The allocator the `temper` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAIRS: usize = 10_000;

fn pairs() -> Vec<Example> {
    synthetic::preference_records(PAIRS, 0)
        .iter()
        .flat_map(|record| {
            Format::TrlPreference
                .parse(record)
                .expect("synthetic pairs are valid")
        })
        .collect()
}

fn tokenizer() -> ChatTokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer");
    ChatTokenizer::from_dir(&dir, None).expect("fixture tokenizer")
}

fn preprocess(c: &mut Criterion) {
    let examples = pairs();
    let tokenizer = tokenizer();
    let options = TokenizeOptions::default();
    let mut group = c.benchmark_group("dpo_preprocess");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PAIRS as u64));
    group.bench_function("parallel_10k_pairs", |b| {
        b.iter(|| tokenize_all(&tokenizer, &examples, &options));
    });
    group.bench_function("one_thread_10k_pairs", |b| {
        b.iter(|| {
            examples
                .iter()
                .map(|e| tokenize(&tokenizer, e, &options))
                .collect::<Vec<_>>()
        });
    });
    group.finish();
}

criterion_group!(benches, preprocess);
criterion_main!(benches);
