//! The step loop every trainer runs under: metrics rows, evaluations, checkpoints with
//! rotation, the non-finite stop with its last good state saved, and the final model.

use temper_kernels::AutodiffKernelBackend;

use super::output_dir::{save_final, write_run_config};
use super::{RunError, RunReport, io};
use crate::checkpoint::{RunOrigin, TrainerState, Weights, rotate_checkpoints, save_checkpoint};
use crate::config::RunSettings;
use crate::metrics::{MetricsLog, eval_row, train_row};
use crate::progress::{Display, Progress};
use crate::trainer::{StepLog, TrainError, Trainer};

/// The step loop shared by every trainer: a metrics row every `logging_steps`, evaluations,
/// checkpoints with rotation, the NaN guard, and the final model. `unlogged`: the steps a
/// resumed checkpoint had not logged yet.
pub(super) fn drive<B: AutodiffKernelBackend, T: Trainer<B>>(
    trainer: &mut T,
    settings: &RunSettings,
    display: Display,
    origins: &[String],
    mut unlogged: Vec<StepLog>,
    evaluate: impl Fn(&T) -> Result<Option<Vec<(String, f64)>>, TrainError>,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let resumed_step = settings
        .resume_from_checkpoint
        .as_ref()
        .map(|_| trainer.steps_done());
    let mut metrics =
        MetricsLog::open(&settings.output_dir, resumed_step).map_err(io(&settings.output_dir))?;
    let config = write_run_config(settings)?;

    let origin = RunOrigin::new(settings.kind.command(), &settings.model);
    let total = trainer.total_steps();
    let progress = Progress::new(display, total, trainer.steps_done());
    let weights = match &settings.peft {
        Some(peft) => Weights::Adapter {
            base_dir: &settings.model,
            lora: &peft.lora,
        },
        None => Weights::Full {
            base_dir: &settings.model,
        },
    };
    let evaluate = |trainer: &T, metrics: &mut MetricsLog| -> Result<_, RunError> {
        let Some(values) = evaluate(trainer)? else {
            return Ok(None);
        };
        let row = eval_row(trainer.steps_done(), trainer.epochs_done(), &values);
        metrics.write(&row).map_err(io(metrics.path()))?;
        progress.row(&row);
        Ok(Some(values))
    };

    if total == 0 {
        report.eval = evaluate(trainer, &mut metrics)?;
    }
    while trainer.steps_done() < total {
        let log = match trainer.step() {
            Ok(log) => log,
            Err(TrainError::NonFinite {
                step,
                what,
                value,
                records,
            }) => {
                let origins = records
                    .iter()
                    .filter_map(|&i| origins.get(i).cloned())
                    .collect();
                let error = TrainError::NonFinite {
                    step,
                    what,
                    value,
                    records,
                };
                let state = TrainerState {
                    global_step: trainer.steps_done(),
                    unlogged,
                    origin: Some(origin.clone()),
                };
                let saved =
                    save_checkpoint(trainer, weights, &state, &config, &settings.output_dir)?;
                progress.finish();
                return Err(RunError::Stopped {
                    error,
                    saved,
                    origins,
                });
            }
            Err(error) => return Err(error.into()),
        };
        progress.step(log.step, log.loss);
        unlogged.push(log);
        let step = trainer.steps_done();
        if step % settings.logging_steps == 0 || step == total {
            let row = train_row(&unlogged);
            metrics.write(&row).map_err(io(metrics.path()))?;
            progress.row(&row);
            report.last_train_row = Some(row);
            unlogged.clear();
        }
        // The last step is always evaluated, before its checkpoint is saved: a run resumed from
        // its final checkpoint then has nothing left to do.
        if step == total || settings.eval_steps.is_some_and(|every| step % every == 0) {
            report.eval = evaluate(trainer, &mut metrics)?;
        }
        if step % settings.save_steps == 0 || step == total {
            let state = TrainerState {
                global_step: step,
                unlogged: unlogged.clone(),
                origin: Some(origin.clone()),
            };
            let saved = save_checkpoint(trainer, weights, &state, &config, &settings.output_dir)?;
            if let Some(limit) = settings.save_total_limit {
                rotate_checkpoints(&settings.output_dir, limit, &saved)?;
            }
            progress.message(&format!("saved {}", saved.display()));
        }
    }
    progress.finish();
    report.steps = trainer.steps_done();
    report.metrics_file = metrics.path().to_path_buf();
    if total > 0 {
        report.final_model = Some(save_final(trainer.model(), settings)?);
    }
    Ok(())
}
