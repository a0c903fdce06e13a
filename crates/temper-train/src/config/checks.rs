//! The checks a key's given value passes (`check:` in keys.rs). Each says what is wrong in
//! words that follow the key's name: `warmup_ratio: must be in [0, 1], not 1.5`.

// A check takes `&GivenType` (`&Vec<_>` for list keys) so that one signature fits every key.
#![allow(clippy::ptr_arg)]

use super::TrainerKind;
use super::loss_type::LossType;
use super::resolve::Take;

pub type Checked = Result<(), String>;

pub fn any<T>(_: &T, _: TrainerKind) -> Checked {
    Ok(())
}

pub fn at_least_one(value: &usize, _: TrainerKind) -> Checked {
    if *value == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(())
}

pub fn at_least_two(value: &usize, _: TrainerKind) -> Checked {
    if *value < 2 {
        return Err("must be at least 2".to_string());
    }
    Ok(())
}

pub fn finite(value: &f64, _: TrainerKind) -> Checked {
    if !value.is_finite() {
        return Err(format!("must be a finite number, not {value}"));
    }
    Ok(())
}

pub fn non_negative(value: &f64, _: TrainerKind) -> Checked {
    if !(value.is_finite() && *value >= 0.0) {
        return Err(format!("must be a finite number ≥ 0, not {value}"));
    }
    Ok(())
}

/// In [0, 1].
pub fn fraction(value: &f64, _: TrainerKind) -> Checked {
    if !(0.0..=1.0).contains(value) {
        return Err(format!("must be in [0, 1], not {value}"));
    }
    Ok(())
}

/// In [0, 1).
pub fn below_one(value: &f64, _: TrainerKind) -> Checked {
    if !(0.0..1.0).contains(value) {
        return Err(format!("must be in [0, 1), not {value}"));
    }
    Ok(())
}

pub fn not_empty<T>(values: &Vec<T>, _: TrainerKind) -> Checked {
    if values.is_empty() {
        return Err("is empty".to_string());
    }
    Ok(())
}

/// Names of verifiers the registry has.
pub fn verifier_names(values: &Vec<String>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    let registry = temper_verifiers::registry::Registry::default();
    match values.iter().find(|name| registry.get(name).is_err()) {
        Some(unknown) => Err(format!(
            "no verifier is called `{unknown}` (known: {})",
            registry.names().collect::<Vec<_>>().join(", ")
        )),
        None => Ok(()),
    }
}

pub fn all_finite(values: &Vec<f64>, _: TrainerKind) -> Checked {
    match values.iter().find(|value| !value.is_finite()) {
        Some(value) => Err(format!("{value} is not finite")),
        None => Ok(()),
    }
}

/// `-1` (train for `num_train_epochs`) or a step count.
pub fn steps_or_epochs(value: &i64, _: TrainerKind) -> Checked {
    if *value < -1 {
        return Err("must be ≥ 0 (or -1: use epochs)".to_string());
    }
    Ok(())
}

/// β: GRPO's is a KL weight that may be 0; the preference losses divide by it.
pub fn beta(value: &f64, kind: TrainerKind) -> Checked {
    match kind {
        TrainerKind::Grpo => non_negative(value, kind),
        _ if !(value.is_finite() && *value > 0.0) => {
            Err(format!("must be a finite number > 0, not {value}"))
        }
        _ => Ok(()),
    }
}

/// Sampling values as transformers validates them.
pub fn temperature(value: &f64, _: TrainerKind) -> Checked {
    sampling(Some(*value), None, None)
}

pub fn top_p(value: &f64, _: TrainerKind) -> Checked {
    sampling(None, Some(*value), None)
}

pub fn repetition_penalty(value: &f64, _: TrainerKind) -> Checked {
    sampling(None, None, Some(*value))
}

fn sampling(temperature: Option<f64>, top_p: Option<f64>, penalty: Option<f64>) -> Checked {
    temper_model::check_sampling(temperature, top_p, penalty).map_err(|e| e.reason)
}

/// Loss types of the trainer: one or more of the DPO family, or one GRPO aggregation.
pub fn loss_types(values: &Vec<LossType>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    if let Some(foreign) = values.iter().find(|loss| !loss.of_trainer(kind)) {
        return Err(format!(
            "`{foreign}` is not a loss type of `temper {}` (one of {})",
            kind.command(),
            LossType::names_for(kind).join(", ")
        ));
    }
    if kind != TrainerKind::Dpo && values.len() > 1 {
        return Err(format!("`temper {}` takes one loss type", kind.command()));
    }
    Ok(())
}

/// LoRA targets: projection names, or `all-linear` alone.
pub fn lora_targets(values: &Vec<String>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    if values == &["all-linear"] {
        return Ok(());
    }
    let targets = temper_model::lora::TARGETS;
    match values.iter().find(|m| !targets.contains(&m.as_str())) {
        Some(unknown) => Err(format!(
            "`{unknown}` is not one of {} (or all-linear)",
            targets.join(", ")
        )),
        None => Ok(()),
    }
}

/// open-instruct's `dataset_mixer_list`: pairs of a file and an amount.
pub fn mixer_list(values: &Vec<String>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    if !values.len().is_multiple_of(2) {
        return Err(format!(
            "{} items: pairs of a file and an amount (a fraction or a count)",
            values.len()
        ));
    }
    for pair in values.chunks(2) {
        Take::parse(&pair[1]).map_err(|reason| format!("{}: {reason}", pair[0]))?;
    }
    Ok(())
}

/// `field=column` pairs, each field once.
pub fn column_pairs(values: &Vec<String>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    temper_data::columns::Columns::parse(values).map(|_| ())
}

/// LLaMA-Factory's `dataset`: names, comma-separated or listed, none empty.
pub fn dataset_names(values: &Vec<String>, kind: TrainerKind) -> Checked {
    not_empty(values, kind)?;
    temper_data::dataset_info::split_names(values).map(|_| ())
}
