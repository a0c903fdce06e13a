//! The common types every dataset format is parsed into.
//!
//! A format module turns one record into one or more [`Example`]s; tokenisation and batching
//! only ever see these types, never the format a record came from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who speaks a message. Dataset-specific role names (ShareGPT's `human`/`gpt`/`observation`,
/// ...) are mapped onto these four by the format modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message, shaped as Hugging Face chat templates expect it: absent optional fields
/// are left out when the message is handed to a template, so `message.tool_calls is defined`
/// behaves as it does under transformers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Empty for an assistant message that only calls tools (`null` reads as empty).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// How the record gave `content`, so that the template sees the message as transformers
    /// hands it over: a string, `null`, or no key (a tool-calling message only).
    #[serde(skip)]
    pub content_given: ContentGiven,
    /// OpenAI-style calls: `[{"type": "function", "function": {"name", "arguments"}}]`.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// The model's reasoning before its answer (a `reasoning` content part, or the field
    /// itself), handed to the template as `reasoning_content`, where reasoning templates
    /// (Qwen3's) put it.
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// LLaMA-Factory's per-message weight: 0 leaves an assistant turn untrained, 1 (or
    /// absent) trains it as the loss mask says. Not handed to the template.
    #[serde(default)]
    pub loss_weight: Option<f64>,
}

impl Message {
    /// Whether the message's own weight leaves it untrained (`loss_weight: 0`).
    pub fn untrained(&self) -> bool {
        self.loss_weight == Some(0.0)
    }
}

/// How a message's `content` key appeared in its record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentGiven {
    /// A string, or text parts.
    #[default]
    Text,
    /// `null`.
    Null,
    /// No `content` key.
    Absent,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// Written by hand so that `content` reaches the template as the record gave it (a string, even
/// an empty one, `null`, or no key), as transformers hands dataset messages over; every absent
/// optional field is left out.
impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        match self.content_given {
            ContentGiven::Text => map.serialize_entry("content", &self.content)?,
            ContentGiven::Null => map.serialize_entry("content", &Option::<String>::None)?,
            ContentGiven::Absent => {}
        }
        if let Some(tool_calls) = &self.tool_calls {
            map.serialize_entry("tool_calls", tool_calls)?;
        }
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if let Some(reasoning) = &self.reasoning_content {
            map.serialize_entry("reasoning_content", reasoning)?;
        }
        map.end()
    }
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            content_given: ContentGiven::Text,
            tool_calls: None,
            name: None,
            tool_call_id: None,
            reasoning_content: None,
            loss_weight: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new(Role::Tool, content)
    }
}

/// Tool (function) schemas offered to the model, passed to the chat template as `tools`.
pub type Tools = Vec<Value>;

/// Text as a dataset gives it: a plain string (TRL's "standard" datasets) or chat messages
/// ("conversational" datasets). The two are tokenised differently (see `tokenize`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Turns {
    Text(String),
    Messages(Vec<Message>),
}

/// A supervised fine-tuning example.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SftExample {
    /// Language modelling on raw text (TRL `{text}`): every token is trained, eos appended.
    Text { text: String },
    /// TRL standard prompt-completion: plain strings, the completion is trained.
    Completion { prompt: String, completion: String },
    /// A conversation. `messages[completion_start..]` is the completion: 0 for whole
    /// conversations (every assistant turn is a completion), the prompt's length for TRL
    /// conversational prompt-completion records.
    Chat {
        messages: Vec<Message>,
        completion_start: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        tools: Option<Tools>,
    },
}

/// A preference pair. Chosen and rejected continue the same prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Preference {
    /// Conversational: the answers are assistant message lists that follow `prompt`.
    Chat {
        prompt: Vec<Message>,
        chosen: Vec<Message>,
        rejected: Vec<Message>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tools: Option<Tools>,
    },
    /// TRL standard: plain strings.
    Text {
        prompt: String,
        chosen: String,
        rejected: String,
    },
}

/// One completion judged desirable or not: unpaired preference data (TRL's KTO format,
/// LLaMA-Factory's `kto_tag`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Unpaired {
    /// Conversational: the completion is the assistant messages that follow `prompt`.
    Chat {
        prompt: Vec<Message>,
        completion: Vec<Message>,
        desirable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        tools: Option<Tools>,
    },
    /// TRL standard: plain strings.
    Text {
        prompt: String,
        completion: String,
        desirable: bool,
    },
}

impl Unpaired {
    /// Whether the completion is desirable (TRL's `label`).
    pub fn desirable(&self) -> bool {
        match self {
            Unpaired::Chat { desirable, .. } | Unpaired::Text { desirable, .. } => *desirable,
        }
    }

    /// A pair as TRL's `unpair_preference_dataset` splits it: chosen desirable, rejected not.
    pub fn from_pair(pair: &Preference) -> [Unpaired; 2] {
        match pair {
            Preference::Chat {
                prompt,
                chosen,
                rejected,
                tools,
            } => {
                [(chosen, true), (rejected, false)].map(|(completion, desirable)| Unpaired::Chat {
                    prompt: prompt.clone(),
                    completion: completion.clone(),
                    desirable,
                    tools: tools.clone(),
                })
            }
            Preference::Text {
                prompt,
                chosen,
                rejected,
            } => {
                [(chosen, true), (rejected, false)].map(|(completion, desirable)| Unpaired::Text {
                    prompt: prompt.clone(),
                    completion: completion.clone(),
                    desirable,
                })
            }
        }
    }
}

/// A prompt for reinforcement learning with verifiable rewards.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RlvrPrompt {
    pub prompt: Turns,
    /// open-instruct's `ground_truth` (a string, number or list), when the row has one.
    pub ground_truth: Option<Value>,
    /// open-instruct's `dataset`: the names of the verifiers that score this row.
    pub datasets: Vec<String>,
    /// Every other column of the row (TRL passes them to reward functions as keyword arguments).
    pub extra: serde_json::Map<String, Value>,
}

impl RlvrPrompt {
    /// A row that names no verifier is scored by `verifiers` (the RL trainers' `verifier` key,
    /// `temper eval --verifier`); a row that names some keeps them.
    pub fn or_verifiers(&mut self, verifiers: &[String]) {
        if self.datasets.is_empty() {
            self.datasets = verifiers.to_vec();
        }
    }
}

/// What a training example is for; one dataset holds one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Sft,
    Preference,
    Unpaired,
    Rlvr,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Sft => "sft",
            DataKind::Preference => "preference",
            DataKind::Unpaired => "unpaired",
            DataKind::Rlvr => "rlvr",
        }
    }
}

/// One training example of any kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Example {
    Sft(SftExample),
    Preference(Preference),
    Unpaired(Unpaired),
    Rlvr(RlvrPrompt),
}

impl Example {
    pub fn kind(&self) -> DataKind {
        self.as_example().kind()
    }
}

/// One example, borrowed: what tokenising reads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExampleRef<'a> {
    Sft(&'a SftExample),
    Preference(&'a Preference),
    Unpaired(&'a Unpaired),
    Rlvr(&'a RlvrPrompt),
}

impl ExampleRef<'_> {
    pub fn kind(self) -> DataKind {
        match self {
            ExampleRef::Sft(_) => DataKind::Sft,
            ExampleRef::Preference(_) => DataKind::Preference,
            ExampleRef::Unpaired(_) => DataKind::Unpaired,
            ExampleRef::Rlvr(_) => DataKind::Rlvr,
        }
    }

    /// The example, owned.
    pub fn to_example(self) -> Example {
        match self {
            ExampleRef::Sft(sft) => Example::Sft(sft.clone()),
            ExampleRef::Preference(pair) => Example::Preference(pair.clone()),
            ExampleRef::Unpaired(one) => Example::Unpaired(one.clone()),
            ExampleRef::Rlvr(prompt) => Example::Rlvr(prompt.clone()),
        }
    }
}

/// Anything that is one example: an [`Example`], an example of one kind, or an [`ExampleRef`].
pub trait AsExample: Sync {
    fn as_example(&self) -> ExampleRef<'_>;
}

impl AsExample for Example {
    fn as_example(&self) -> ExampleRef<'_> {
        match self {
            Example::Sft(sft) => ExampleRef::Sft(sft),
            Example::Preference(pair) => ExampleRef::Preference(pair),
            Example::Unpaired(one) => ExampleRef::Unpaired(one),
            Example::Rlvr(prompt) => ExampleRef::Rlvr(prompt),
        }
    }
}

impl AsExample for ExampleRef<'_> {
    fn as_example(&self) -> ExampleRef<'_> {
        *self
    }
}

impl AsExample for SftExample {
    fn as_example(&self) -> ExampleRef<'_> {
        ExampleRef::Sft(self)
    }
}

impl AsExample for Preference {
    fn as_example(&self) -> ExampleRef<'_> {
        ExampleRef::Preference(self)
    }
}

impl AsExample for Unpaired {
    fn as_example(&self) -> ExampleRef<'_> {
        ExampleRef::Unpaired(self)
    }
}

impl AsExample for RlvrPrompt {
    fn as_example(&self) -> ExampleRef<'_> {
        ExampleRef::Rlvr(self)
    }
}

/// Examples all of one kind (a file has one format, a format one kind): SFT examples,
/// preference pairs or RLVR prompts, so that what reads them needs no check per example.
#[derive(Clone, Debug, PartialEq)]
pub enum Examples {
    Sft(Vec<SftExample>),
    Preference(Vec<Preference>),
    Unpaired(Vec<Unpaired>),
    Rlvr(Vec<RlvrPrompt>),
}

/// The order TRL's `unpair_preference_dataset` gives `pairs` pairs' completions, as (pair,
/// chosen?): its `map` works in batches of 1,000 pairs, each batch's chosen completions first.
pub fn unpaired_order(pairs: usize) -> impl Iterator<Item = (usize, bool)> {
    (0..pairs).step_by(1000).flat_map(move |start| {
        let end = (start + 1000).min(pairs);
        (start..end)
            .map(|pair| (pair, true))
            .chain((start..end).map(|pair| (pair, false)))
    })
}

/// Examples of two kinds in one set: the index of the first one unlike the first example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("example {index} is not of the kind of the first example")]
pub struct MixedKinds {
    pub index: usize,
}

impl Examples {
    /// No examples, of `kind`.
    pub fn empty(kind: DataKind) -> Self {
        match kind {
            DataKind::Sft => Examples::Sft(Vec::new()),
            DataKind::Preference => Examples::Preference(Vec::new()),
            DataKind::Unpaired => Examples::Unpaired(Vec::new()),
            DataKind::Rlvr => Examples::Rlvr(Vec::new()),
        }
    }

    /// The examples as one set; an empty list is an empty set of SFT examples.
    pub fn new(examples: Vec<Example>) -> Result<Self, MixedKinds> {
        let kind = examples.first().map_or(DataKind::Sft, Example::kind);
        let mut set = Self::empty(kind);
        set.extend(examples)?;
        Ok(set)
    }

    /// Adds `examples` at the end; the index in the error counts from this set's start.
    pub fn extend(
        &mut self,
        examples: impl IntoIterator<Item = Example>,
    ) -> Result<(), MixedKinds> {
        let start = self.len();
        for (offset, example) in examples.into_iter().enumerate() {
            match (&mut *self, example) {
                (Examples::Sft(all), Example::Sft(one)) => all.push(one),
                (Examples::Preference(all), Example::Preference(one)) => all.push(one),
                (Examples::Unpaired(all), Example::Unpaired(one)) => all.push(one),
                (Examples::Rlvr(all), Example::Rlvr(one)) => all.push(one),
                _ => {
                    return Err(MixedKinds {
                        index: start + offset,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> DataKind {
        match self {
            Examples::Sft(_) => DataKind::Sft,
            Examples::Preference(_) => DataKind::Preference,
            Examples::Unpaired(_) => DataKind::Unpaired,
            Examples::Rlvr(_) => DataKind::Rlvr,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Examples::Sft(all) => all.len(),
            Examples::Preference(all) => all.len(),
            Examples::Unpaired(all) => all.len(),
            Examples::Rlvr(all) => all.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Example `index`, borrowed.
    pub fn get(&self, index: usize) -> Option<ExampleRef<'_>> {
        match self {
            Examples::Sft(all) => all.get(index).map(ExampleRef::Sft),
            Examples::Preference(all) => all.get(index).map(ExampleRef::Preference),
            Examples::Unpaired(all) => all.get(index).map(ExampleRef::Unpaired),
            Examples::Rlvr(all) => all.get(index).map(ExampleRef::Rlvr),
        }
    }

    /// Unpaired data for KTO: unpaired examples as they are, preference pairs split as TRL's
    /// `unpair_preference_dataset` splits them (in batches of 1,000 pairs, as its `map`: each
    /// batch's chosen completions, then its rejected ones). `None` for other kinds.
    pub fn into_unpaired(self) -> Option<Vec<Unpaired>> {
        match self {
            Examples::Unpaired(all) => Some(all),
            Examples::Preference(pairs) => {
                // Each pair split once; its halves are taken in TRL's order.
                let mut halves: Vec<[Option<Unpaired>; 2]> = pairs
                    .iter()
                    .map(|pair| Unpaired::from_pair(pair).map(Some))
                    .collect();
                Some(
                    unpaired_order(pairs.len())
                        .filter_map(|(pair, chosen)| halves[pair][usize::from(!chosen)].take())
                        .collect(),
                )
            }
            Examples::Sft(_) | Examples::Rlvr(_) => None,
        }
    }

    /// Every example, borrowed, in order.
    pub fn iter(&self) -> impl Iterator<Item = ExampleRef<'_>> + '_ {
        (0..self.len()).filter_map(|index| self.get(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs split as TRL's `unpair_preference_dataset`: per batch of 1,000 pairs, the chosen
    /// completions (desirable) in order, then the rejected ones.
    #[test]
    fn pairs_unpair_chosen_first_per_thousand() {
        let pair = |i: usize| Preference::Text {
            prompt: format!("p{i}"),
            chosen: format!("c{i}"),
            rejected: format!("r{i}"),
        };
        let unpaired = Examples::Preference((0..1002).map(pair).collect())
            .into_unpaired()
            .unwrap();
        let name = |u: &Unpaired| match u {
            Unpaired::Text {
                completion,
                desirable,
                ..
            } => (completion.clone(), *desirable),
            Unpaired::Chat { .. } => unreachable!("text pairs"),
        };
        assert_eq!(unpaired.len(), 2004);
        assert_eq!(name(&unpaired[0]), ("c0".into(), true));
        assert_eq!(name(&unpaired[999]), ("c999".into(), true));
        assert_eq!(name(&unpaired[1000]), ("r0".into(), false));
        assert_eq!(name(&unpaired[1999]), ("r999".into(), false));
        assert_eq!(name(&unpaired[2000]), ("c1000".into(), true));
        assert_eq!(name(&unpaired[2003]), ("r1001".into(), false));
    }
}
