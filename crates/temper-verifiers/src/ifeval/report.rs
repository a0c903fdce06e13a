//! IFEval's report (`evaluation_lib.print_report`): prompt-level accuracy (all instructions of a
//! prompt followed) and instruction-level accuracy, strict and loose, plus per instruction id.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Following;

/// Counts over many prompts; [`Report::summary`] gives the accuracies.
#[derive(Clone, Debug, Default)]
pub struct Report {
    prompts: usize,
    prompts_followed: [usize; 2],
    instructions: usize,
    instructions_followed: [usize; 2],
    /// id → (total, followed strict, followed loose)
    per_instruction: BTreeMap<String, (usize, usize, usize)>,
}

/// The official report's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub prompts: usize,
    pub instructions: usize,
    pub prompt_level_strict: f64,
    pub instruction_level_strict: f64,
    pub prompt_level_loose: f64,
    pub instruction_level_loose: f64,
    /// id → [strict, loose] accuracy (the report's second table, by full id).
    pub per_instruction: BTreeMap<String, [f64; 2]>,
}

impl Report {
    /// Count one prompt's verdicts.
    pub fn add(&mut self, ids: &[String], following: &Following) {
        self.prompts += 1;
        self.instructions += ids.len();
        for (mode, verdicts) in [&following.strict, &following.loose]
            .into_iter()
            .enumerate()
        {
            self.prompts_followed[mode] += usize::from(verdicts.iter().all(|&f| f));
            self.instructions_followed[mode] += verdicts.iter().filter(|&&f| f).count();
        }
        for (i, id) in ids.iter().enumerate() {
            let entry = self.per_instruction.entry(id.clone()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(following.strict.get(i).copied().unwrap_or(false));
            entry.2 += usize::from(following.loose.get(i).copied().unwrap_or(false));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.prompts == 0
    }

    pub fn summary(&self) -> Summary {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Summary {
            prompts: self.prompts,
            instructions: self.instructions,
            prompt_level_strict: ratio(self.prompts_followed[0], self.prompts),
            instruction_level_strict: ratio(self.instructions_followed[0], self.instructions),
            prompt_level_loose: ratio(self.prompts_followed[1], self.prompts),
            instruction_level_loose: ratio(self.instructions_followed[1], self.instructions),
            per_instruction: self
                .per_instruction
                .iter()
                .map(|(id, &(total, strict, loose))| {
                    (id.clone(), [ratio(strict, total), ratio(loose, total)])
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_and_instruction_levels() {
        let mut report = Report::default();
        let ids = vec!["a".to_string(), "b".to_string()];
        report.add(
            &ids,
            &Following {
                strict: vec![true, false],
                loose: vec![true, true],
            },
        );
        report.add(
            &ids[..1],
            &Following {
                strict: vec![true],
                loose: vec![true],
            },
        );
        let summary = report.summary();
        assert_eq!(summary.prompt_level_strict, 0.5);
        assert_eq!(summary.instruction_level_strict, 2.0 / 3.0);
        assert_eq!(summary.prompt_level_loose, 1.0);
        assert_eq!(summary.per_instruction["b"], [0.0, 1.0]);
    }
}
