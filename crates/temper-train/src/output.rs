//! How Temper writes a directory that holds someone's work (a run's output, an exported model):
//! one writer at a time, never over its own inputs, and every file or directory either whole or
//! absent, whatever kills the process.
//!
//! - [`OutputLock`]: an exclusive OS lock on `OUTPUT/.temper.lock` for the whole run; a second
//!   run into the same directory is refused, naming the first's pid. The OS releases the lock
//!   when the process ends, killed or not.
//! - [`refuse_overlap`]: an output that is, contains or lies inside an input is refused before
//!   anything is written (copying a file onto itself truncates it).
//! - [`publish_dir`], [`publish_files`]: what is written goes into a hidden staging directory
//!   first, is synced to disk, and is renamed into place (then the parent is synced), so a
//!   reader sees the old state or the new one, never a file cut short.
//! - [`remove_dir`]: a directory is renamed out of the way before it is deleted, so a deletion
//!   cut short never leaves half a checkpoint under its real name.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// The lock file inside a locked directory.
pub const LOCK_FILE: &str = ".temper.lock";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: another temper process (pid {owner}) is writing this directory; wait for it to finish or pick another output directory",
        dir.display()
    )]
    Busy { dir: PathBuf, owner: String },
    #[error(
        "the output {} {relation} the {role} {}; pick another output directory",
        output.display(),
        input.display()
    )]
    Overlap {
        output: PathBuf,
        relation: &'static str,
        role: &'static str,
        input: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// Creates `dir` if needed and locks it for this process, or says which process holds it.
pub fn lock(dir: &Path) -> Result<OutputLock, OutputError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            let owner = match owner.trim() {
                "" => "unknown".to_string(),
                pid => pid.to_string(),
            };
            return Err(OutputError::Busy {
                dir: dir.to_path_buf(),
                owner,
            });
        }
        Err(TryLockError::Error(source)) => return Err(OutputError::Io { path, source }),
    }
    file.set_len(0).map_err(io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
    Ok(OutputLock { _file: file })
}

/// How an output directory lies relative to an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// The same directory.
    Same,
    /// The output holds the input.
    Contains,
    /// The output lies inside the input.
    Inside,
}

impl Overlap {
    fn describe(self) -> &'static str {
        match self {
            Overlap::Same => "is",
            Overlap::Contains => "contains",
            Overlap::Inside => "lies inside",
        }
    }
}

/// How `output` lies relative to `input`, both resolved as the filesystem would (symlinks, `..`),
/// whether or not they exist yet.
pub fn overlap(input: &Path, output: &Path) -> Option<Overlap> {
    let (input, output) = (resolved(input), resolved(output));
    if input == output {
        Some(Overlap::Same)
    } else if input.starts_with(&output) {
        Some(Overlap::Contains)
    } else if output.starts_with(&input) {
        Some(Overlap::Inside)
    } else {
        None
    }
}

/// Refuses an `output` that lies relative to `input` in one of the `refused` ways; `role` names
/// the input in the message ("checkpoint", "base model").
pub fn refuse_overlap(
    input: &Path,
    output: &Path,
    role: &'static str,
    refused: &[Overlap],
) -> Result<(), OutputError> {
    match overlap(input, output) {
        Some(relation) if refused.contains(&relation) => Err(OutputError::Overlap {
            output: output.to_path_buf(),
            relation: relation.describe(),
            role,
            input: input.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// `path` made absolute, each existing prefix resolved by the filesystem (so symlinks and `..`
/// mean what they mean to it) and the part that does not exist yet taken as written.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut resolved = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => {
                resolved.push(other);
                if let Ok(real) = std::fs::canonicalize(&resolved) {
                    resolved = real;
                }
            }
        }
    }
    resolved
}

/// Syncs every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<(), OutputError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    sync_dir(dir)
}

/// Syncs a directory's entries (the renames into it) to disk. Only Unix can open a directory
/// to sync it.
fn sync_dir(dir: &Path) -> Result<(), OutputError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Publishes the complete directory `staged` as `target`: synced, then renamed into place
/// (an earlier `target` is moved away and deleted first).
pub fn publish_dir(staged: &Path, target: &Path) -> Result<(), OutputError> {
    sync_tree(staged)?;
    if target.exists() {
        remove_dir(target)?;
    }
    std::fs::rename(staged, target).map_err(io(target))?;
    sync_dir(parent(target))
}

/// Moves every file of the complete directory `staged` into `target` (replacing files of the
/// same names), each synced before its rename, then deletes `staged`. Each file appears whole or
/// not at all; a process killed half-way leaves some files new and the rest as they were.
pub fn publish_files(staged: &Path, target: &Path) -> Result<(), OutputError> {
    sync_tree(staged)?;
    std::fs::create_dir_all(target).map_err(io(target))?;
    for entry in std::fs::read_dir(staged).map_err(io(staged))? {
        let from = entry.map_err(io(staged))?.path();
        let Some(name) = from.file_name() else {
            continue;
        };
        let to = target.join(name);
        std::fs::rename(&from, &to).map_err(io(&to))?;
    }
    sync_dir(target)?;
    std::fs::remove_dir(staged).map_err(io(staged))
}

/// Deletes the directory `path` after renaming it to a hidden `.NAME.deleting` beside it, so
/// that nothing half-deleted keeps its real name.
pub fn remove_dir(path: &Path) -> Result<(), OutputError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = parent(path).join(format!(".{name}.deleting"));
    if doomed.exists() {
        std::fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
    }
    std::fs::rename(path, &doomed).map_err(io(path))?;
    sync_dir(parent(path))?;
    std::fs::remove_dir_all(&doomed).map_err(io(&doomed))
}

/// An empty directory at `path` to stage files in (what a killed process left there is
/// deleted first).
pub fn fresh_dir(path: &Path) -> Result<(), OutputError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    std::fs::create_dir_all(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn overlaps_are_seen_through_dot_dot_symlinks_and_paths_not_made_yet() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let checkpoint = run.join("checkpoint-3");
        std::fs::create_dir_all(&checkpoint).unwrap();
        assert_eq!(overlap(&checkpoint, &checkpoint), Some(Overlap::Same));
        assert_eq!(
            overlap(&checkpoint, &checkpoint.join("../checkpoint-3")),
            Some(Overlap::Same)
        );
        assert_eq!(overlap(&checkpoint, &run), Some(Overlap::Contains));
        assert_eq!(
            overlap(&checkpoint, &checkpoint.join("new/deeper")),
            Some(Overlap::Inside)
        );
        assert_eq!(
            overlap(&checkpoint, &dir.path().join("new/../run/checkpoint-3")),
            Some(Overlap::Same)
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&run, &link).unwrap();
            assert_eq!(overlap(&checkpoint, &link), Some(Overlap::Contains));
        }
        assert_eq!(overlap(&checkpoint, &dir.path().join("elsewhere")), None);
        let refused = refuse_overlap(&checkpoint, &run, "checkpoint", &[Overlap::Contains]);
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("contains the checkpoint"), "{message}");
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let refused = lock(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(held);
        lock(dir.path()).unwrap();
    }

    #[test]
    fn published_files_replace_the_old_ones_whole_and_leave_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        write(&target.join("model.safetensors"), "old");
        write(&target.join("metrics.jsonl"), "kept");
        let staged = target.join(".final-model.partial");
        fresh_dir(&staged).unwrap();
        write(&staged.join("model.safetensors"), "new");
        write(&staged.join("config.json"), "{}");
        publish_files(&staged, &target).unwrap();
        let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
        assert_eq!(read("model.safetensors"), "new");
        assert_eq!(read("config.json"), "{}");
        assert_eq!(read("metrics.jsonl"), "kept");
        assert!(!staged.exists());
    }

    /// A process killed while staging leaves its partial files under the staging name only;
    /// the next save starts the staging afresh.
    #[test]
    fn a_killed_save_leaves_nothing_under_the_real_names() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let staged = target.join(".final-model.partial");
        write(&staged.join("model.safetensors"), "");
        assert!(!target.join("model.safetensors").exists());
        fresh_dir(&staged).unwrap();
        assert_eq!(std::fs::read_dir(&staged).unwrap().count(), 0);
    }

    #[test]
    fn a_published_directory_replaces_the_old_one_and_removal_renames_first() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("checkpoint-2");
        write(&done.join("model.safetensors"), "old");
        let partial = dir.path().join(".checkpoint-2.partial");
        write(&partial.join("model.safetensors"), "new");
        write(&partial.join("value_model/model.safetensors"), "value");
        publish_dir(&partial, &done).unwrap();
        assert_eq!(
            std::fs::read_to_string(done.join("model.safetensors")).unwrap(),
            "new"
        );
        assert!(done.join("value_model/model.safetensors").is_file());
        assert!(!partial.exists());
        // A deletion cut short leaves only the hidden `.NAME.deleting`, which the next
        // removal of that name clears.
        write(&dir.path().join(".checkpoint-2.deleting/stale"), "");
        remove_dir(&done).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
