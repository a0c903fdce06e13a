//! Running the `temper` binary from the repository root and reading its JSON output.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn temper(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_temper"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("temper runs")
}

/// stdout as one JSON value per line.
pub fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// `temper args` with its stdout closed before it writes: what `temper ... | head -c0` does
/// to it.
pub fn temper_into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_temper"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("temper runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("temper ends")
}
