//! Every dataset format Temper reads, and how `--format auto` tells them apart.
//!
//! Each format is one module that turns a JSON record into [`Example`]s. Detection looks at
//! the fields of the first record: each format has fields it requires and fields it rules
//! out, and a record that fits several formats is an error naming them.

mod alpaca;
mod fields;

pub(crate) use fields::type_name;
mod messages;
mod rlvr;
mod sharegpt;
mod trl;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::FieldError;
use crate::types::{DataKind, Example};

/// A dataset format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `instruction`, `input`, `output`, optional `system` and `history`; or `conversations`
    /// holding such turns (LLaMA-Factory `alpaca`).
    Alpaca,
    /// `instruction`, `input`, `chosen`, `rejected` (LLaMA-Factory `alpaca` with ranking).
    AlpacaPreference,
    /// `conversations: [{from, value}]` (LLaMA-Factory `sharegpt`).
    ShareGpt,
    /// `conversations` as the prompt, `chosen` and `rejected` messages (LLaMA-Factory ranking).
    ShareGptPreference,
    /// `conversations` whose assistant turns offer candidates labelled chosen or rejected.
    ShareGptLabelled,
    /// TRL language modelling `{text}`.
    TrlText,
    /// TRL conversational `{messages}`.
    TrlMessages,
    /// TRL `{prompt, completion}`, standard or conversational.
    TrlPromptCompletion,
    /// TRL `{prompt, chosen, rejected}`, standard or conversational.
    TrlPreference,
    /// TRL / open-instruct `{chosen, rejected}` holding whole conversations (implicit prompt).
    TrlImplicitPreference,
    /// TRL's unpaired preference data (KTO): `{prompt, completion, label}`, or a conversation
    /// (`messages`, ShareGPT `conversations`) with a boolean `label` or `kto_tag`.
    TrlUnpaired,
    /// open-instruct RLVR `{messages, ground_truth, dataset}`.
    OpenInstructRlvr,
    /// TRL prompt-only `{prompt, ...}` for GRPO; other columns travel with the prompt.
    TrlPromptOnly,
}

impl Format {
    pub const ALL: [Format; 13] = [
        Format::Alpaca,
        Format::AlpacaPreference,
        Format::ShareGpt,
        Format::ShareGptPreference,
        Format::ShareGptLabelled,
        Format::TrlText,
        Format::TrlMessages,
        Format::TrlPromptCompletion,
        Format::TrlPreference,
        Format::TrlImplicitPreference,
        Format::TrlUnpaired,
        Format::OpenInstructRlvr,
        Format::TrlPromptOnly,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Alpaca => "alpaca",
            Format::AlpacaPreference => "alpaca-preference",
            Format::ShareGpt => "sharegpt",
            Format::ShareGptPreference => "sharegpt-preference",
            Format::ShareGptLabelled => "sharegpt-labelled",
            Format::TrlText => "trl-text",
            Format::TrlMessages => "trl-messages",
            Format::TrlPromptCompletion => "trl-prompt-completion",
            Format::TrlPreference => "trl-preference",
            Format::TrlImplicitPreference => "trl-implicit-preference",
            Format::TrlUnpaired => "trl-unpaired",
            Format::OpenInstructRlvr => "openinstruct-rlvr",
            Format::TrlPromptOnly => "trl-prompt-only",
        }
    }

    pub fn kind(self) -> DataKind {
        match self {
            Format::Alpaca
            | Format::ShareGpt
            | Format::TrlText
            | Format::TrlMessages
            | Format::TrlPromptCompletion => DataKind::Sft,
            Format::AlpacaPreference
            | Format::ShareGptPreference
            | Format::ShareGptLabelled
            | Format::TrlPreference
            | Format::TrlImplicitPreference => DataKind::Preference,
            Format::TrlUnpaired => DataKind::Unpaired,
            Format::OpenInstructRlvr | Format::TrlPromptOnly => DataKind::Rlvr,
        }
    }

    /// Parses one record into its examples (a labelled ShareGPT record can yield several).
    pub fn parse(self, record: &Value) -> Result<Vec<Example>, FieldError> {
        let object = fields::as_object(record, "")?;
        match self {
            Format::Alpaca => alpaca::parse_sft(object),
            Format::AlpacaPreference => alpaca::parse_preference(object),
            Format::ShareGpt => sharegpt::parse_sft(object),
            Format::ShareGptPreference => sharegpt::parse_preference(object),
            Format::ShareGptLabelled => sharegpt::parse_labelled(object),
            Format::TrlText => trl::parse_text(object),
            Format::TrlMessages => trl::parse_messages_record(object),
            Format::TrlPromptCompletion => trl::parse_prompt_completion(object),
            Format::TrlPreference => trl::parse_preference(object),
            Format::TrlImplicitPreference => trl::parse_implicit_preference(object),
            Format::TrlUnpaired => trl::parse_unpaired(object),
            Format::OpenInstructRlvr => rlvr::parse_open_instruct(object),
            Format::TrlPromptOnly => rlvr::parse_prompt_only(object),
        }
    }

    /// Whether a record's fields fit this format (see [`detect`]).
    fn fits(self, record: &fields::Object) -> bool {
        let has = |key: &str| record.get(key).is_some_and(|v| !v.is_null());
        let conversations = record.get("conversations");
        let alpaca_turns = conversations.is_some_and(alpaca::is_turn_list);
        let labelled = conversations.is_some_and(sharegpt::has_labelled_candidates);
        let preference = has("chosen") && has("rejected");
        // A boolean label beside one completion: unpaired preference data, never SFT.
        let unpaired = ["label", "kto_tag"]
            .iter()
            .any(|k| record.get(*k).is_some_and(Value::is_boolean))
            && !preference;
        match self {
            Format::Alpaca => {
                (has("instruction") && has("output") || alpaca_turns) && !preference && !unpaired
            }
            Format::AlpacaPreference => has("instruction") && preference,
            Format::ShareGpt => {
                has("conversations") && !alpaca_turns && !labelled && !preference && !unpaired
            }
            Format::ShareGptPreference => has("conversations") && preference,
            Format::ShareGptLabelled => labelled && !preference,
            Format::TrlText => {
                has("text")
                    && ![
                        "messages",
                        "conversations",
                        "prompt",
                        "instruction",
                        "chosen",
                        "rejected",
                    ]
                    .iter()
                    .any(|k| has(k))
                    && !unpaired
            }
            Format::TrlMessages => {
                has("messages")
                    && !has("ground_truth")
                    && !has("prompt")
                    && !preference
                    && !unpaired
            }
            Format::TrlPromptCompletion => has("prompt") && has("completion") && !unpaired,
            Format::TrlUnpaired => {
                unpaired
                    && (has("prompt") && has("completion")
                        || has("messages") && !has("prompt")
                        || has("conversations") && !alpaca_turns && !has("prompt"))
            }
            Format::TrlPreference => has("prompt") && preference,
            Format::TrlImplicitPreference => {
                preference && !has("prompt") && !has("instruction") && !has("conversations")
            }
            Format::OpenInstructRlvr => has("messages") && has("ground_truth"),
            Format::TrlPromptOnly => {
                has("prompt") && !has("completion") && !has("chosen") && !has("rejected")
            }
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown format `{name}` (expected one of: auto, {})",
                    names.join(", ")
                )
            })
    }
}

/// The format setting (`temper data --format`, a run's `data_format`): a format, or `auto`
/// to detect each file's format from its first record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FormatChoice {
    #[default]
    Auto,
    Given(Format),
}

impl FormatChoice {
    /// `auto`, then every format.
    pub const ALL: [FormatChoice; Format::ALL.len() + 1] = {
        let mut all = [FormatChoice::Auto; Format::ALL.len() + 1];
        let mut i = 0;
        while i < Format::ALL.len() {
            all[i + 1] = FormatChoice::Given(Format::ALL[i]);
            i += 1;
        }
        all
    };

    pub fn name(self) -> &'static str {
        match self {
            FormatChoice::Auto => "auto",
            FormatChoice::Given(format) => format.name(),
        }
    }

    /// The format to read with; `None`: detect it.
    pub fn format(self) -> Option<Format> {
        match self {
            FormatChoice::Auto => None,
            FormatChoice::Given(format) => Some(format),
        }
    }
}

impl fmt::Display for FormatChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FormatChoice {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "auto" => Ok(FormatChoice::Auto),
            other => other.parse().map(FormatChoice::Given),
        }
    }
}

impl serde::Serialize for FormatChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for FormatChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "clap")]
impl clap::ValueEnum for FormatChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Why a record's format could not be told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("the first record is not a JSON object")]
    NotAnObject,
    #[error("no known format has the fields [{}]; pass --format", fields.join(", "))]
    NoMatch { fields: Vec<String> },
    #[error(
        "fields [{}] fit several formats: {}; pass --format to choose",
        fields.join(", "),
        candidates.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        fields: Vec<String>,
        candidates: Vec<Format>,
    },
}

/// Picks the one format whose fields the record has.
pub fn detect(record: &Value) -> Result<Format, DetectError> {
    let object = record.as_object().ok_or(DetectError::NotAnObject)?;
    let candidates: Vec<Format> = Format::ALL.into_iter().filter(|f| f.fits(object)).collect();
    let fields = || object.keys().cloned().collect::<Vec<_>>();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(DetectError::NoMatch { fields: fields() }),
        _ => Err(DetectError::Ambiguous {
            fields: fields(),
            candidates,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
        }
        assert!(
            "nope"
                .parse::<Format>()
                .unwrap_err()
                .contains("trl-preference")
        );
    }

    /// Unpaired preference data (a boolean `label` or `kto_tag`) is detected as such, never as
    /// SFT, and read with its completion split from its prompt.
    #[test]
    fn unpaired_preference_records_are_detected_as_unpaired_not_sft() {
        let user = json!({"role": "user", "content": "a"});
        let assistant = json!({"role": "assistant", "content": "b"});
        for record in [
            json!({"messages": [user, assistant], "label": true}),
            json!({"prompt": "a", "completion": "b", "label": false}),
            json!({"prompt": [user], "completion": [assistant], "label": true}),
            json!({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "kto_tag": false}),
        ] {
            assert_eq!(detect(&record), Ok(Format::TrlUnpaired), "{record}");
            let examples = Format::TrlUnpaired.parse(&record).unwrap();
            let [Example::Unpaired(unpaired)] = examples.as_slice() else {
                panic!("{record}: {examples:?}")
            };
            assert_eq!(
                unpaired.desirable(),
                record.get("label").or(record.get("kto_tag")) == Some(&json!(true))
            );
            if let crate::Unpaired::Chat {
                prompt, completion, ..
            } = unpaired
            {
                assert_eq!((prompt.len(), completion.len()), (1, 1), "{record}");
            }
        }
        let not_a_bool = json!({"prompt": "a", "completion": "b", "label": 1});
        let error = Format::TrlUnpaired.parse(&not_a_bool).unwrap_err();
        assert!(error.to_string().contains("expected a boolean"), "{error}");
        let named = Format::TrlPromptCompletion
            .parse(&json!({"prompt": "a", "completion": "b", "label": false}));
        assert!(named.is_ok(), "a named format reads the record");
    }

    #[test]
    fn ambiguous_records_name_their_candidates() {
        let record = json!({"instruction": "a", "output": "b", "conversations": [{"from": "human", "value": "x"}]});
        let error = detect(&record).unwrap_err();
        assert_eq!(
            error,
            DetectError::Ambiguous {
                fields: vec![
                    "instruction".into(),
                    "output".into(),
                    "conversations".into()
                ],
                candidates: vec![Format::Alpaca, Format::ShareGpt],
            }
        );
        assert!(error.to_string().contains("alpaca, sharegpt"));
    }
}
