//! Deterministic synthetic preference pairs for benchmarks: varied English prompts (a system
//! message in some, earlier turns in some) with chosen and rejected answers of 20–80 words.
//! The same seed always gives the same records, on every machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const TOPICS: &[&str] = &[
    "photosynthesis",
    "binary search",
    "compound interest",
    "plate tectonics",
    "the water cycle",
    "neural networks",
    "sourdough bread",
    "the Roman Empire",
    "black holes",
    "supply and demand",
    "vaccines",
    "climate change",
    "the human heart",
    "jazz music",
    "electric cars",
    "volcanoes",
    "recursion",
    "hash tables",
    "renewable energy",
    "inflation",
    "coral reefs",
    "honey bees",
    "public key cryptography",
    "the Renaissance",
    "ocean tides",
    "compilers",
    "rainforests",
];

const QUESTIONS: &[&str] = &[
    "Can you explain {t} to a ten-year-old?",
    "What is the most important thing to understand about {t}?",
    "How would you summarise {t} in a few sentences?",
    "Why does {t} matter today?",
    "What are common misconceptions about {t}?",
    "Give me three facts about {t} that would surprise a student.",
    "How is {t} related to {u}?",
    "Compare {t} with {u} in plain language.",
];

const CONTEXT: &[&str] = &[
    "I have been reading about this for a while and I am still confused.",
    "Please keep the answer short and avoid jargon.",
    "This is for a presentation I am giving next week.",
    "I would appreciate an example or two.",
    "Assume I know the basics of {u}.",
    "Use simple words, since English is not my first language.",
];

const SYSTEMS: &[&str] = &[
    "You are a helpful assistant.",
    "You are a patient teacher who explains things step by step.",
    "You are a concise assistant. Answer in as few words as possible while staying accurate.",
];

const WORDS: &[&str] = &[
    "the",
    "process",
    "works",
    "because",
    "energy",
    "moves",
    "through",
    "a",
    "system",
    "that",
    "can",
    "be",
    "measured",
    "and",
    "explained",
    "with",
    "simple",
    "examples",
    "in",
    "everyday",
    "life",
    "for",
    "instance",
    "when",
    "you",
    "look",
    "at",
    "how",
    "it",
    "changes",
    "over",
    "time",
    "clear",
    "pattern",
    "appears",
    "which",
    "scientists",
    "describe",
    "using",
    "models",
    "data",
    "careful",
    "observation",
    "most",
    "people",
    "notice",
    "first",
    "important",
    "idea",
    "is",
    "this",
    "also",
    "means",
    "many",
    "small",
    "steps",
    "add",
    "up",
    "to",
];

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A random template with its `{t}` and `{u}` filled by random topics.
fn fill(rng: &mut ChaCha8Rng, templates: &[&str]) -> String {
    let template = pick(rng, templates);
    template
        .replace("{t}", pick(rng, TOPICS))
        .replace("{u}", pick(rng, TOPICS))
}

fn answer(rng: &mut ChaCha8Rng) -> String {
    let words = rng.random_range(20..=80);
    let mut text = String::new();
    for i in 0..words {
        let word = pick(rng, WORDS);
        if i == 0 {
            let mut chars = word.chars();
            text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            text.push_str(chars.as_str());
        } else {
            text.push(' ');
            text.push_str(word);
        }
        if i + 1 == words || rng.random_ratio(1, 12) {
            text.push('.');
        }
    }
    text
}

/// `count` conversational TRL preference records `{prompt, chosen, rejected}`.
pub fn preference_records(count: usize, seed: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut prompt = Vec::new();
            if rng.random_ratio(3, 10) {
                prompt.push(json!({"role": "system", "content": pick(&mut rng, SYSTEMS)}));
            }
            for _ in 0..[0, 0, 0, 1, 2][rng.random_range(0..5)] {
                prompt.push(json!({"role": "user", "content": fill(&mut rng, QUESTIONS)}));
                prompt.push(json!({"role": "assistant", "content": answer(&mut rng)}));
            }
            let mut question = fill(&mut rng, QUESTIONS);
            for _ in 0..rng.random_range(0..3) {
                question.push(' ');
                question.push_str(&fill(&mut rng, CONTEXT));
            }
            prompt.push(json!({"role": "user", "content": question}));
            let chosen = answer(&mut rng);
            let mut rejected = answer(&mut rng);
            if rejected == chosen {
                rejected.push_str(" Maybe.");
            }
            json!({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Format;

    #[test]
    fn records_are_seeded_and_valid_pairs() {
        let records = preference_records(50, 3);
        assert_eq!(records, preference_records(50, 3));
        assert_ne!(records, preference_records(50, 4));
        for record in &records {
            Format::TrlPreference.parse(record).expect("a valid pair");
        }
    }
}
