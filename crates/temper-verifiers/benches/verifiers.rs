//! Verification throughput on the conformance fixtures (fixtures/verifiers): gsm8k, math,
//! ifeval_old rows through the registry, IFEval rows strict + loose. `examples/bench_verifiers.rs`
//! times the same rows next to the Python references and prints both rates.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use temper_verifiers::{Instructions, Registry};

fn rows(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/verifiers")
        .join(name);
    std::fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect()
}

fn verifiers(c: &mut Criterion) {
    let registry = Registry::default();
    for (file, dataset) in [
        ("gsm8k.jsonl", "gsm8k"),
        ("math.jsonl", "math"),
        ("ifeval_old.jsonl", "ifeval_old"),
    ] {
        let rows = rows(file);
        let verifier = registry.get(dataset).expect("registered");
        let mut group = c.benchmark_group(dataset);
        group.throughput(Throughput::Elements(rows.len() as u64));
        group.bench_function("rows", |b| {
            b.iter(|| {
                rows.iter()
                    .map(|row| {
                        verifier
                            .score(row["response"].as_str().unwrap_or(""), &row["ground_truth"])
                            .unwrap_or(0.0)
                    })
                    .sum::<f64>()
            })
        });
        group.finish();
    }
    let rows = rows("ifeval.jsonl");
    let mut group = c.benchmark_group("ifeval");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("strict_and_loose", |b| {
        b.iter(|| {
            rows.iter()
                .map(|row| {
                    let ids: Vec<String> =
                        serde_json::from_value(row["instruction_id_list"].clone())
                            .unwrap_or_default();
                    let kwargs: Vec<Value> =
                        serde_json::from_value(row["kwargs"].clone()).unwrap_or_default();
                    let instructions =
                        Instructions::new(&ids, &kwargs).expect("fixture kwargs are valid");
                    instructions
                        .following(row["response"].as_str().unwrap_or(""))
                        .loose
                        .len()
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = verifiers
}
criterion_main!(benches);
