//! The `temper` command. Parses arguments, calls the libraries, prints results; exit codes
//! are 0 for success, 1 for invalid input or a failed check, 2 for usage, I/O or model errors.

mod backend;
mod data;
mod eval;
mod init;
mod model;
mod stdout;
mod train;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use temper_train::config::TrainerKind;

/// Tokenisation allocates many small strings; mimalloc makes `temper data` about 1.5× faster
/// than the system allocator (measured with examples/bench_data.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "temper",
    version,
    about = "Post-train large language models: SFT, preference optimisation, RLVR."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and validate datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Per-example completion log-prob sums and token counts under a model (JSONL with --json).
    Score(model::ScoreArgs),
    /// Generate a continuation of one prompt.
    Generate(model::GenerateArgs),
    /// Chat with a model in the terminal, streaming its replies.
    Chat(model::ChatArgs),
    /// Score responses with the RLVR verifiers (GSM8K, MATH, IFEval) and summarise.
    Verify(verify::VerifyArgs),
    /// Generate a completion of each prompt and score it with the verifiers its row names:
    /// accuracy per verifier, IFEval's four accuracies (the trainers' held-out evaluation).
    Eval(eval::EvalArgs),
    /// Supervised fine-tuning (TRL's SFTTrainer).
    Sft(train::TrainArgs),
    /// Direct preference optimisation and its family (TRL's DPOTrainer loss types).
    Dpo(train::TrainArgs),
    /// KTO on unpaired completions labelled desirable or not, against a reference model (TRL's
    /// KTOTrainer; preference pairs are split into two).
    Kto(train::TrainArgs),
    /// Odds-ratio preference optimisation, reference-free (TRL's ORPOTrainer).
    Orpo(train::TrainArgs),
    /// SimPO, reference-free, plus cpo_alpha times the chosen NLL (TRL's CPOTrainer).
    Simpo(train::TrainArgs),
    /// A model with random weights for a config.json, with a tokenizer: the start of
    /// pre-training from scratch.
    Init(init::InitArgs),
    /// A reward model: a score head on a causal LM, Bradley–Terry loss (TRL's RewardTrainer).
    Rm(train::TrainArgs),
    /// GRPO: reinforcement learning from verifiable rewards (or a reward model) on prompts,
    /// with group-relative advantages (TRL's GRPOTrainer).
    Grpo(train::TrainArgs),
    /// PPO with a value model and GAE, rewarded by verifiers or a reward model (TRL's
    /// PPOTrainer).
    Ppo(train::TrainArgs),
    /// Loss, reward, margin and other metric curves of a run, as PNG files.
    Plot(train::PlotArgs),
    /// A checkpoint's weights or adapter without the training state, LoRA merged or not.
    Export(train::ExportArgs),
}

/// How a command ended, as an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success = 0,
    Invalid = 1,
    Failure = 2,
}

/// The arguments; each trainer's `--help` shows only its keys, with their defaults.
fn parse_arguments() -> Cli {
    let mut command = Cli::command();
    for kind in TrainerKind::ALL {
        command = command.mut_subcommand(kind.command(), |sub| train::document_keys(kind, sub));
    }
    let matches = command.get_matches_mut();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.format(&mut command).exit())
}

fn main() -> ExitCode {
    let cli = parse_arguments();
    let outcome = match cli.command {
        Command::Data(command) => data::run(command),
        Command::Score(args) => model::score(args),
        Command::Generate(args) => model::generate_text(args),
        Command::Chat(args) => model::chat(args),
        Command::Verify(args) => verify::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Sft(args) => train::run(TrainerKind::Sft, args),
        Command::Dpo(args) => train::run(TrainerKind::Dpo, args),
        Command::Kto(args) => train::run(TrainerKind::Kto, args),
        Command::Orpo(args) => train::run(TrainerKind::Orpo, args),
        Command::Simpo(args) => train::run(TrainerKind::Simpo, args),
        Command::Rm(args) => train::run(TrainerKind::Reward, args),
        Command::Grpo(args) => train::run(TrainerKind::Grpo, args),
        Command::Ppo(args) => train::run(TrainerKind::Ppo, args),
        Command::Plot(args) => train::plot(args),
        Command::Export(args) => train::export(args),
        Command::Init(args) => init::run(args),
    };
    ExitCode::from(outcome as u8)
}
