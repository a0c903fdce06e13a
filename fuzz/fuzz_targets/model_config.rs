//! A model's `config.json`: any input gives a configuration or an error naming the field,
//! never a panic, and never an allocation sized by an absurd value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_model::ModelConfig;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_json(text) {
        let _ = config.parameter_count();
        let _ = temper_model::weights::expected_tensors(&config);
    }
});
