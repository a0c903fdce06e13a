//! Properties: any response gets a score in [0, 1] from every verifier without panicking, on
//! arbitrary Unicode, very long text and deep nesting; Punkt's sentences are pieces of the
//! text in order; loose mode never follows fewer instructions than strict mode.

use proptest::prelude::*;
use serde_json::{Value, json};
use temper_verifiers::ifeval::{INSTRUCTION_IDS, punkt};
use temper_verifiers::{Instructions, Registry, Row, Shaping};

/// Text that reaches the rules: LaTeX, markdown, punctuation, quotes, digits and any Unicode.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "\\boxed{",
            "\\fbox{",
            "{",
            "}",
            "$",
            "\\frac",
            "\\sqrt",
            "^",
            "Final Answer: The final answer is ",
            ". I hope it is correct.",
            "####",
            ",",
            ".",
            "...",
            "?",
            "!",
            "\n",
            "\n\n",
            "***",
            "******",
            "* ",
            "- ",
            "<<",
            ">>",
            "\"",
            "'",
            "P.S.",
            "Section 1",
            "Mr.",
            "U.S.",
            "CAN'T",
            "</think>",
            "<answer>",
            "</answer>",
            "[x]",
            "*bold*",
            "12",
            "3.5",
            "-7",
            "1,000",
            "٣",
            "é",
            "🎉",
            "\u{2028}",
            "\x1c",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z ]{1,12}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// A ground truth for each registered verifier.
fn ground_truths() -> Vec<(&'static str, Value)> {
    vec![
        ("gsm8k", json!("72")),
        ("gsm8k_strict", json!("1,000")),
        ("math", json!("\\frac{1}{2}")),
        ("strict_math", json!("x^2+1")),
        (
            "ifeval",
            json!(
                "[{'instruction_id': ['punctuation:no_comma', 'length_constraints:number_sentences'], 'kwargs': [None, {'num_sentences': 2, 'relation': 'at least'}]}]"
            ),
        ),
        (
            "ifeval_old",
            json!(
                "{\"func_name\": \"validate_word_constraint\", \"N\": 5, \"quantifier\": \"around\"}"
            ),
        ),
    ]
}

/// One kwargs set per IFEval instruction.
fn all_instructions() -> Instructions {
    let kwargs = |id: &str| match id {
        "keywords:existence" => json!({"keywords": ["cat", "a.b"]}),
        "keywords:frequency" => json!({"keyword": "the", "frequency": 2, "relation": "at least"}),
        "keywords:forbidden_words" => json!({"forbidden_words": ["dog"]}),
        "keywords:letter_frequency" => {
            json!({"letter": "e", "let_frequency": 3, "let_relation": "less than"})
        }
        "language:response_language" => json!({"language": "en"}),
        "length_constraints:number_sentences" => {
            json!({"num_sentences": 2, "relation": "at least"})
        }
        "length_constraints:number_paragraphs" => json!({"num_paragraphs": 2}),
        "length_constraints:number_words" => json!({"num_words": 5, "relation": "less than"}),
        "length_constraints:nth_paragraph_first_word" => {
            json!({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "x"})
        }
        "detectable_content:number_placeholders" => json!({"num_placeholders": 1}),
        "detectable_content:postscript" => json!({"postscript_marker": "P.P.S"}),
        "detectable_format:number_bullet_lists" => json!({"num_bullets": 2}),
        "detectable_format:number_highlighted_sections" => json!({"num_highlights": 1}),
        "detectable_format:multiple_sections" => {
            json!({"section_spliter": "Section", "num_sections": 1})
        }
        "combination:repeat_prompt" => json!({"prompt_to_repeat": "Say hi."}),
        "startend:end_checker" => json!({"end_phrase": "Bye."}),
        "change_case:capital_word_frequency" => {
            json!({"capital_frequency": 1, "capital_relation": "at least"})
        }
        _ => json!({}),
    };
    let ids: Vec<String> = INSTRUCTION_IDS.iter().map(|id| id.to_string()).collect();
    let kwargs: Vec<Value> = INSTRUCTION_IDS.iter().map(|id| kwargs(id)).collect();
    Instructions::new(&ids, &kwargs).expect("valid kwargs")
}

fn score_with_every_verifier(response: &str) {
    let registry = Registry::default();
    for (dataset, ground_truth) in ground_truths() {
        let ground_truths = [ground_truth];
        let datasets = [dataset.to_string()];
        let row = Row {
            response,
            ground_truths: &ground_truths,
            datasets: &datasets,
            finished: false,
        };
        let scored = registry
            .score(&row, &Shaping::default())
            .expect("ground truths are valid");
        assert!(
            (0.0..=1.0).contains(&scored.score),
            "{dataset}: {}",
            scored.score
        );
    }
}

fn check_everything(response: &str) {
    score_with_every_verifier(response);
    let following = all_instructions().following(response);
    for (strict, loose) in following.strict.iter().zip(&following.loose) {
        assert!(
            !strict || *loose,
            "loose mode follows whatever strict mode follows"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_response_gets_a_score(response in text()) {
        check_everything(&response);
    }

    #[test]
    fn punkt_sentences_are_pieces_of_the_text(response in text()) {
        let mut last_end = 0;
        for (start, end) in punkt::sentence_spans(&response) {
            prop_assert!(start >= last_end.min(start) && end <= response.len());
            if start < end {
                prop_assert!(response.is_char_boundary(start) && response.is_char_boundary(end));
                last_end = end;
            }
        }
    }
}

#[test]
fn long_and_deeply_nested_inputs() {
    let inputs = [
        "{".repeat(100_000),
        format!("\\boxed{{{}", "{".repeat(50_000)),
        format!("\\boxed{{{}}}", "(".repeat(50_000)),
        "(".repeat(100_000) + &")".repeat(100_000),
        "[".repeat(100_000),
        "$".repeat(100_000),
        "!".repeat(100_000),
        ". ".repeat(50_000),
        "a. b".repeat(25_000),
        "*".repeat(100_000),
        "\n".repeat(100_000),
        "9,".repeat(50_000),
        "é🎉\u{2028}".repeat(30_000),
        "Final Answer: The final answer is ".repeat(3_000),
        "\\frac{".repeat(20_000),
        "2^".repeat(50_000) + "2",
        "\\sqrt[".repeat(20_000),
    ];
    let instructions = all_instructions();
    for input in &inputs {
        score_with_every_verifier(input);
        assert_eq!(instructions.strict(input).len(), INSTRUCTION_IDS.len());
    }
}
