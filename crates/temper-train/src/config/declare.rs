//! How a key is declared. [`declare_keys!`] turns each entry of `keys.rs` into
//! - a field of [`TrainConfig`]: the value as given, with its flag (clap), its file key
//!   (serde) and its doc comment, which is both the `--help` text and the meaning column of
//!   docs/training.md's key table;
//! - a field of [`KeyValues`]: the value for one trainer, given or defaulted, checked;
//! - a row of [`TrainConfig::KEYS`]: which trainers take it, its default, how TRL's differs.
//!
//! [`TrainConfig`]: super::TrainConfig
//! [`KeyValues`]: super::KeyValues
//! [`TrainConfig::KEYS`]: super::TrainConfig::KEYS

use serde::Serialize;

use super::{ConfigError, TrainerKind, bad};

/// What the key tables know of a key besides its type and doc.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// The file key; the flag is its kebab-case form.
    pub name: &'static str,
    /// The trainers that take it; any other refuses it.
    pub trainers: &'static [TrainerKind],
    /// The default for a trainer, written as docs/training.md writes it.
    pub default: fn(TrainerKind) -> String,
    /// How TRL's (or transformers') key differs from Temper's; empty where it does not.
    pub trl: &'static str,
}

/// A key's value when it is not given.
pub enum Fallback<V> {
    /// The same for every trainer.
    Value(V),
    /// TRL's default differs by trainer.
    PerTrainer(fn(TrainerKind) -> V),
    /// An empty value (none, an empty list); the text says what that means.
    Absent(V, &'static str),
    /// The run cannot start without it; the value is the empty one [`KeyValues::defaults`]
    /// holds.
    ///
    /// [`KeyValues::defaults`]: super::KeyValues::defaults
    Required(V),
}

impl<V: Serialize> Fallback<V> {
    /// The value of a key not given: its default, or an error when it is required.
    fn value(self, kind: TrainerKind) -> Result<V, String> {
        match self {
            Fallback::Required(_) => Err("required".to_string()),
            other => Ok(other.default_value(kind)),
        }
    }

    /// The default for `kind`; a required key's empty value.
    pub fn default_value(self, kind: TrainerKind) -> V {
        match self {
            Fallback::Value(value) | Fallback::Absent(value, _) | Fallback::Required(value) => {
                value
            }
            Fallback::PerTrainer(of) => of(kind),
        }
    }

    /// The default as the docs write it: a value in backticks, or what its absence means.
    pub fn describe(&self, kind: TrainerKind) -> String {
        let shown = |value: &V| match serde_json::to_value(value) {
            Ok(serde_json::Value::String(text)) => format!("`{text}`"),
            Ok(serde_json::Value::Array(items)) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map_or_else(|| item.to_string(), str::to_string)
                    })
                    .collect();
                format!("`{}`", items.join(", "))
            }
            // Small rates as written in configs (`2e-5`), not `0.00002`.
            Ok(serde_json::Value::Number(n))
                if n.as_f64().is_some_and(|f| f != 0.0 && f.abs() < 1e-3) =>
            {
                format!("`{:e}`", n.as_f64().unwrap_or_default())
            }
            Ok(other) => format!("`{other}`"),
            Err(_) => String::new(),
        };
        match self {
            Fallback::Value(value) => shown(value),
            Fallback::PerTrainer(of) => shown(&of(kind)),
            Fallback::Absent(_, meaning) => meaning.to_string(),
            Fallback::Required(_) => "required".to_string(),
        }
    }
}

/// A key's value: checked if given, else its fallback for `kind`.
pub fn resolve_key<T, V>(
    key: &str,
    given: Option<T>,
    kind: TrainerKind,
    fallback: Fallback<V>,
    check: fn(&T, TrainerKind) -> Result<(), String>,
) -> Result<V, ConfigError>
where
    V: From<T> + Serialize,
{
    match given {
        Some(value) => {
            check(&value, kind).map_err(|reason| bad(key, reason))?;
            Ok(V::from(value))
        }
        None => fallback.value(kind).map_err(|reason| bad(key, reason)),
    }
}

/// A key given to a trainer that does not take it.
pub fn foreign_key(key: &str, kind: TrainerKind) -> ConfigError {
    bad(key, format!("not an option of `temper {}`", kind.command()))
}

/// Declares every key once; see the module doc for what each entry becomes. An entry is
///
/// ```text
/// /// doc (the --help text and the docs' meaning)
/// #[arg(...)] #[serde(...)]
/// name: GivenType => ValueType {
///     trainers: &[...], default: Fallback::..., check: fn(&GivenType, TrainerKind), trl: "...",
/// }
/// ```
///
/// `ValueType` is `GivenType`, or `Option<GivenType>` for a key whose absence means none.
macro_rules! declare_keys {
    ($(
        $(#[$attr:meta])*
        $name:ident: $given:ty => $value:ty {
            trainers: $trainers:expr,
            default: $default:expr,
            check: $check:expr,
            trl: $trl:literal $(,)?
        }
    )*) => {
        /// Every key of a training run as given: a config file's table, the command's flags
        /// (flags over the file), and what `training_config.json` records. `None`: not given.
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields, default)]
        #[command(next_help_heading = "Training options (config-file keys in snake_case)")]
        pub struct TrainConfig {
            $( $(#[$attr])* pub $name: Option<$given>, )*
        }

        /// Every key's value for one trainer: as given, else the default; each checked.
        #[derive(Clone, Debug)]
        pub struct KeyValues {
            $( pub $name: $value, )*
        }

        impl KeyValues {
            /// Every key's default for `kind` (a required key: its empty value): what a
            /// library caller's [`crate::TrainingArgs`] start from.
            pub fn defaults(kind: TrainerKind) -> KeyValues {
                KeyValues {$(
                    $name: {
                        let fallback: Fallback<$value> = $default;
                        fallback.default_value(kind)
                    },
                )*}
            }
        }

        impl TrainConfig {
            /// Every key, in declaration order.
            pub const KEYS: &'static [KeySpec] = &[$(
                KeySpec {
                    name: stringify!($name),
                    trainers: $trainers,
                    default: |kind| {
                        let fallback: Fallback<$value> = $default;
                        fallback.describe(kind)
                    },
                    trl: $trl,
                },
            )*];

            /// `self` with every key that `overrides` gives replaced (flags over a file).
            pub fn overridden_by(self, overrides: &TrainConfig) -> TrainConfig {
                TrainConfig {
                    $( $name: overrides.$name.clone().or(self.$name), )*
                }
            }

            /// Every key's value for `kind`. A key the trainer does not take is refused before
            /// any value is checked; then the first key that is wrong is the error.
            pub fn values(&self, kind: TrainerKind) -> Result<KeyValues, ConfigError> {
                $(
                    if self.$name.is_some() && !$trainers.contains(&kind) {
                        return Err(foreign_key(stringify!($name), kind));
                    }
                )*
                Ok(KeyValues {$(
                    $name: resolve_key(
                        stringify!($name),
                        self.$name.clone(),
                        kind,
                        $default,
                        $check,
                    )?,
                )*})
            }
        }
    };
}

pub(crate) use declare_keys;
