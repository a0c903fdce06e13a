//! The `loss_type` key, which TRL shares between two trainers: DPO's losses (one or a weighted
//! list) and GRPO's ways of averaging the token losses.

use std::fmt;
use std::str::FromStr;

use clap::builder::PossibleValue;
use temper_objectives::kto::KtoLoss;
use temper_objectives::preference::PreferenceLoss;

use super::TrainerKind;

/// GRPO's `loss_type`: how token losses become the step's loss (TRL's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpoLoss {
    /// Mean per sequence, then over sequences.
    Grpo,
    /// Mean over the micro-batch's tokens.
    Bnpo,
    /// Sum / (rows × `max_completion_length`).
    DrGrpo,
    /// Sum / the step's completion tokens (TRL's default).
    Dapo,
}

impl GrpoLoss {
    pub const ALL: [GrpoLoss; 4] = [
        GrpoLoss::Grpo,
        GrpoLoss::Bnpo,
        GrpoLoss::DrGrpo,
        GrpoLoss::Dapo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GrpoLoss::Grpo => "grpo",
            GrpoLoss::Bnpo => "bnpo",
            GrpoLoss::DrGrpo => "dr_grpo",
            GrpoLoss::Dapo => "dapo",
        }
    }
}

/// One `loss_type` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossType {
    Preference(PreferenceLoss),
    Kto(KtoLoss),
    Grpo(GrpoLoss),
}

impl LossType {
    /// The DPO family, then KTO's, then GRPO's.
    pub const ALL: [LossType; Self::COUNT] = {
        let mut all = [LossType::Grpo(GrpoLoss::Dapo); Self::COUNT];
        let mut i = 0;
        while i < PreferenceLoss::ALL.len() {
            all[i] = LossType::Preference(PreferenceLoss::ALL[i]);
            i += 1;
        }
        let mut j = 0;
        while j < KtoLoss::ALL.len() {
            all[i + j] = LossType::Kto(KtoLoss::ALL[j]);
            j += 1;
        }
        let mut k = 0;
        while k < GrpoLoss::ALL.len() {
            all[i + j + k] = LossType::Grpo(GrpoLoss::ALL[k]);
            k += 1;
        }
        all
    };
    const COUNT: usize = PreferenceLoss::ALL.len() + KtoLoss::ALL.len() + GrpoLoss::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            LossType::Preference(loss) => loss.name(),
            LossType::Kto(loss) => loss.name(),
            LossType::Grpo(loss) => loss.name(),
        }
    }

    /// Whether `kind` takes this loss type.
    pub fn of_trainer(self, kind: TrainerKind) -> bool {
        match self {
            LossType::Preference(_) => kind == TrainerKind::Dpo,
            LossType::Kto(_) => kind == TrainerKind::Kto,
            LossType::Grpo(_) => kind == TrainerKind::Grpo,
        }
    }

    /// The names `kind` takes.
    pub fn names_for(kind: TrainerKind) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|loss| loss.of_trainer(kind))
            .map(|loss| loss.name())
            .collect()
    }
}

impl fmt::Display for LossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossType {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        if let Some(loss) = GrpoLoss::ALL.into_iter().find(|l| l.name() == name) {
            return Ok(LossType::Grpo(loss));
        }
        if let Some(loss) = KtoLoss::ALL.into_iter().find(|l| l.name() == name) {
            return Ok(LossType::Kto(loss));
        }
        name.parse().map(LossType::Preference).map_err(|_| {
            let names: Vec<&str> = Self::ALL.iter().map(|loss| loss.name()).collect();
            format!("`{name}` is not a loss type (one of {})", names.join(", "))
        })
    }
}

impl serde::Serialize for LossType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for LossType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl clap::ValueEnum for LossType {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let value = PossibleValue::new(self.name());
        Some(match self {
            LossType::Preference(loss) => value.aliases(loss.aliases().iter().copied()),
            LossType::Kto(_) | LossType::Grpo(_) => value,
        })
    }
}
