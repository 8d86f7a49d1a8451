//! One writer per data directory: `run`, `demo`, `outbox deliver` and a delivering `replay`.
//!
//! The incident outbox and the engine checkpoints belong to one process: a
//! second `run` on the same `incidents.data_dir` or `state.dir` would keep
//! its own open incidents beside the first one's and overwrite its
//! checkpoints, and two senders on one outbox would send the same
//! notifications at the same time (out of order per incident). Each
//! directory gets an advisory lock file (`crisiswatch.lock`, holding the
//! owner's pid and command) for the life of the process, taken by `run`,
//! `demo` and `outbox deliver`; a second process is refused with a message
//! naming the holder. The operator commands that only read or mark rows
//! (`state inspect`, `incident list`, `outbox list`, `outbox retry`, …) do
//! not take it: they work beside a running service.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Errors taking a directory lock.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another crisiswatch process ({holder}): each `run` needs its own \
         incidents.data_dir and state.dir (its incidents and checkpoints are its own), and \
         `demo` and `outbox deliver` send from an outbox only while no other process does"
    )]
    InUse {
        /// The directory.
        dir: String,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}; check the directory's permissions")]
    Io {
        /// The lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// `None` on a directory that cannot be written (whatever needs to write
    /// there fails at once with its own error).
    _file: Option<File>,
    /// The directory itself, locked too: a lock file removed beside a
    /// running process (a cleanup script, an operator) let a second
    /// process take a new one. `None` where the file system cannot lock it.
    _dir: Option<File>,
    path: PathBuf,
}

/// Who holds the lock, as the lock file says.
fn holder_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        "unknown process (its lock file was removed)".to_string()
    } else {
        text.to_string()
    }
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process.
    pub fn acquire(dir: &Path) -> Result<DirLock, DirLockError> {
        let path = dir.join("crisiswatch.lock");
        let io = |source| DirLockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let dir_lock = match File::open(dir) {
            Ok(d) => match d.try_lock() {
                Ok(()) => Some(d),
                Err(TryLockError::WouldBlock) => {
                    return Err(DirLockError::InUse {
                        dir: dir.display().to_string(),
                        holder: holder_of(&path),
                    })
                }
                Err(TryLockError::Error(_)) => None,
            },
            Err(_) => None,
        };
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if read_only(&e) => {
                // A read-only directory: lock an existing file read-only if
                // there is one; the outbox then reports the directory.
                let Ok(f) = File::open(&path) else {
                    return Ok(DirLock {
                        _file: None,
                        _dir: dir_lock,
                        path,
                    });
                };
                match f.try_lock_shared() {
                    Ok(()) => {
                        return Ok(DirLock {
                            _file: Some(f),
                            _dir: dir_lock,
                            path,
                        })
                    }
                    Err(TryLockError::WouldBlock) => {
                        return Err(DirLockError::InUse {
                            dir: dir.display().to_string(),
                            holder: "another process".into(),
                        })
                    }
                    Err(TryLockError::Error(_)) => {
                        return Ok(DirLock {
                            _file: None,
                            _dir: dir_lock,
                            path,
                        })
                    }
                }
            }
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DirLockError::InUse {
                    dir: dir.display().to_string(),
                    holder: if holder.is_empty() {
                        "unknown process".to_string()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let command = std::env::args().nth(1).unwrap_or_default();
        write!(file, "pid {}, crisiswatch {command}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DirLock {
            _file: Some(file),
            _dir: dir_lock,
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("in use by another")
                && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let again = DirLock::acquire(dir.path()).unwrap();
        assert!(again.path().ends_with("crisiswatch.lock"));
    }

    /// A lock file removed beside the running process does not let a
    /// second one in: the directory itself is locked.
    #[test]
    fn a_removed_lock_file_does_not_let_a_second_process_in() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(first.path()).unwrap();
        let msg = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("in use by another") && msg.contains("its lock file was removed"),
            "{msg}"
        );
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
