//! A verifier's inputs as an RLVR row holds them: the first byte picks a verifier, the rest is
//! `{"ground_truth": ..., "response": "..."}` JSON (or, if not JSON, a response checked
//! against a fixed ground truth). Any input gives a score or an error about the ground truth,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_verifiers::registry::Registry;

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, rest)) = bytes.split_first() else {
        return;
    };
    let registry = Registry::default();
    let names: Vec<&str> = registry.names().collect();
    let name = names[usize::from(selector) % names.len()];
    let Ok(verifier) = registry.get(name) else {
        return;
    };
    let (response, truth) = match serde_json::from_slice::<serde_json::Value>(rest) {
        Ok(row) => (
            row["response"].as_str().unwrap_or_default().to_string(),
            row["ground_truth"].clone(),
        ),
        Err(_) => (
            String::from_utf8_lossy(rest).into_owned(),
            serde_json::json!("42"),
        ),
    };
    let _ = verifier.verify(&response, &truth);
});
