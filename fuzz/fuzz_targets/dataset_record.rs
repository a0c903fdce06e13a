//! One dataset record, as every format reads it: detection, then each format's parser. Any
//! input gives examples or an error naming a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_data::formats::{Format, detect};

fuzz_target!(|bytes: &[u8]| {
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    let _ = detect(&record);
    for format in Format::ALL {
        let _ = format.parse(&record);
    }
});
