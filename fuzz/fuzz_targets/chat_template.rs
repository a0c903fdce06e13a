//! A chat template from `tokenizer_config.json`: compiled, then rendered over a short
//! conversation within the render step budget. Any source gives text or an error, never a
//! panic or a render that does not return.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use temper_data::template::ChatTemplate;
use temper_data::types::{Message, Role};

fuzz_target!(|bytes: &[u8]| {
    let Ok(source) = std::str::from_utf8(bytes) else {
        return;
    };
    let tokens = BTreeMap::from([
        ("bos_token".to_string(), "<s>".to_string()),
        ("eos_token".to_string(), "</s>".to_string()),
    ]);
    let Ok(template) = ChatTemplate::new(source, tokens) else {
        return;
    };
    let messages = [
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "What is 2 + 2?"),
        Message::new(Role::Assistant, "4"),
    ];
    let _ = template.render(&messages, None, true);
});
