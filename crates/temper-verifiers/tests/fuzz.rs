//! Fuzz targets, driven by proptest: every extractor, normaliser, the expression evaluator and
//! every checker on arbitrary input. The property is "returns, without panicking"; inputs mix
//! arbitrary Unicode with the tokens each target parses, up to deep nesting.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use temper_verifiers::gsm8k::{drop_thousands_separators, extract, hash_answer, last_number};
use temper_verifiers::ifeval::checkers::Checker;
use temper_verifiers::ifeval::{literal, punkt, pyjson, words};
use temper_verifiers::ifeval_old::{FUNCTION_NAMES, call};
use temper_verifiers::math::eval::{evaluate, numerically_equal};
use temper_verifiers::math::extract::{boxed_answer, last_dollar_answer, minerva_answer};
use temper_verifiers::math::normalize::{hendrycks_is_equiv, normalize_final_answer, strip_string};

fn latex() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "\\boxed{",
            "\\boxed ",
            "\\fbox{",
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            "$",
            "\\frac",
            "\\dfrac",
            "\\sqrt",
            "\\sqrt[",
            "^",
            "_",
            "+",
            "-",
            "*",
            "/",
            "=",
            ",",
            ".",
            "%",
            "\\%",
            "\\pi",
            "\\cdot",
            "\\text{",
            "\\left",
            "\\right",
            "x",
            "y",
            "1",
            "2",
            "10",
            "0.5",
            " ",
            "\n",
            "\\",
            "Final Answer: The final answer is",
            ". I hope it is correct.",
        ])
        .prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..80).prop_map(|tokens| tokens.concat())
}

fn prose() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        latex(),
        "[ -~\n]{0,300}",
        "[0-9.,+ a٣-]{0,40}"
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn boxed_extraction(text in latex()) {
        let _ = boxed_answer(&text);
    }

    #[test]
    fn minerva_and_dollar_extraction(text in prose()) {
        let _ = minerva_answer(&text);
        if let Some(inside) = last_dollar_answer(&text) {
            prop_assert!(text.contains(inside));
        }
    }

    #[test]
    fn last_number_extraction(text in prose()) {
        let cleaned = drop_thousands_separators(&text);
        if let Some(number) = last_number(&cleaned) {
            prop_assert!(cleaned.contains(number));
        }
        // The tail-only extraction equals the whole-text pipeline it shortcuts.
        prop_assert_eq!(extract(&text), last_number(&cleaned).unwrap_or(&cleaned));
        let _ = hash_answer(&text);
    }

    #[test]
    fn normalisers(text in latex()) {
        let _ = normalize_final_answer(&text);
        let _ = strip_string(&text);
        prop_assert!(hendrycks_is_equiv(&text, &text));
    }

    #[test]
    fn expression_evaluator(a in latex(), b in latex()) {
        let _ = evaluate(&a, 0);
        let _ = numerically_equal(&a, &b);
    }

    #[test]
    fn python_literals_and_json(text in prose()) {
        let _ = literal::literal_eval(&text);
        let _ = pyjson::python_json_loads_ok(&text);
    }

    #[test]
    fn tokenisers(text in prose()) {
        let _ = punkt::count_sentences(&text);
        let _ = words::word_tokenize(&text);
        let _ = words::count_words(&text);
    }

    #[test]
    fn every_ifeval_checker(text in prose(), pattern in "[a-z.*+?()\\[\\]|\\\\]{1,6}") {
        let kwargs = json!({
            "keywords": [pattern.clone()], "keyword": pattern.clone(), "frequency": 1, "relation": "at least",
            "forbidden_words": [pattern.clone()], "letter": "a", "let_frequency": 2, "let_relation": "less than",
            "language": "en", "num_sentences": 1, "num_paragraphs": 2, "num_words": 3, "nth_paragraph": 1,
            "first_word": "a", "num_placeholders": 1, "postscript_marker": pattern.clone(), "num_bullets": 1,
            "num_highlights": 1, "section_spliter": pattern.clone(), "num_sections": 1, "prompt_to_repeat": "a",
            "end_phrase": "a", "capital_frequency": 1, "capital_relation": "at least",
        });
        let Value::Object(all) = kwargs else { unreachable!() };
        for id in temper_verifiers::ifeval::INSTRUCTION_IDS {
            // Each checker gets the kwargs it takes (IFEval refuses others).
            let checker = Checker::new(id, &all).expect("kwargs are valid");
            let _ = checker.check(&text);
        }
    }

    #[test]
    fn every_ifeval_old_function(text in prose()) {
        let args: Map<String, Value> = serde_json::from_value(json!({})).expect("a map");
        for name in FUNCTION_NAMES {
            let _ = call(name, &text, &args);
        }
        let numbers: Map<String, Value> =
            serde_json::from_value(json!({"N": 2, "quantifier": "around"})).expect("a map");
        let _ = call("validate_word_constraint", &text, &numbers);
        let _ = call("verify_sentence_constraint", &text, &numbers);
        let _ = call("validate_frequency_capital_words", &text, &numbers);
    }
}
