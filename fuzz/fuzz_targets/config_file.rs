//! A training config file (`--config`): YAML, TOML or JSON by its first byte, read, checked
//! key by key, and resolved for every trainer. Any input gives settings or an error naming
//! the key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_train::config::read_config_file;
use temper_train::{TrainConfig, TrainerKind};

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, text)) = bytes.split_first() else {
        return;
    };
    let extension = ["yaml", "toml", "json"][usize::from(selector) % 3];
    let dir = std::env::temp_dir().join(format!("temper-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("config.{extension}"));
    if std::fs::write(&path, text).is_err() {
        return;
    }
    let Ok(map) = read_config_file(&path) else {
        return;
    };
    let Ok(config) = TrainConfig::from_map(map) else {
        return;
    };
    for kind in TrainerKind::ALL {
        let _ = config.resolve(kind);
    }
});
