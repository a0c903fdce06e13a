//! The real Qwen2.5, Qwen3, Llama 3.1, Mistral, OLMo 2, Gemma 3 and SmolLM2 chat templates
//! (and the fixture tokenizer's) render exactly as transformers' `apply_chat_template` does
//! (fixtures/templates/parity.jsonl, made by fixtures/gen/template_parity.py).

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use temper_data::{ChatTemplate, Message};

fn template(name: &str) -> ChatTemplate {
    let config: Value = if name == "fixture" {
        let text =
            std::fs::read_to_string(common::fixture("tokenizer/tokenizer_config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    } else {
        let text =
            std::fs::read_to_string(common::fixture(&format!("templates/{name}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let special_tokens: BTreeMap<String, String> = ["bos_token", "eos_token"]
        .into_iter()
        .filter_map(|key| Some((key.to_string(), config.get(key)?.as_str()?.to_string())))
        .collect();
    ChatTemplate::new(config["chat_template"].as_str().unwrap(), special_tokens).unwrap()
}

#[test]
fn templates_render_exactly_as_transformers() {
    let text = std::fs::read_to_string(common::fixture("templates/parity.jsonl")).unwrap();
    let mut templates: BTreeMap<String, ChatTemplate> = BTreeMap::new();
    let mut checked = BTreeMap::<String, usize>::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let name = row["template"].as_str().unwrap().to_string();
        let case = row["case"].as_str().unwrap();
        let template = templates
            .entry(name.clone())
            .or_insert_with(|| template(&name));
        let messages: Vec<Message> = serde_json::from_value(row["messages"].clone())
            .unwrap_or_else(|e| panic!("{name}/{case}: messages do not fit the Message type: {e}"));
        let tools: Option<Vec<Value>> = serde_json::from_value(row["tools"].clone()).unwrap();
        let rendered = template.render(
            &messages,
            tools.as_deref(),
            row["add_generation_prompt"].as_bool().unwrap(),
        );
        if row["error"].as_bool().unwrap() {
            assert!(
                rendered.is_err(),
                "{name}/{case}: transformers raised, we rendered {rendered:?}"
            );
        } else {
            let rendered = rendered.unwrap_or_else(|e| panic!("{name}/{case}: {e}"));
            assert_eq!(rendered, row["rendered"].as_str().unwrap(), "{name}/{case}");
        }
        *checked.entry(name).or_default() += 1;
    }
    for name in [
        "qwen2.5", "qwen3", "llama3.1", "mistral", "olmo2", "gemma3", "smollm2", "fixture",
    ] {
        assert!(
            checked.get(name).copied().unwrap_or(0) >= 4,
            "too few {name} rows: {checked:?}"
        );
    }
}
