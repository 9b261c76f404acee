//! The pid file (`[gate] pid`, due's `pid`): one running gate per file.
//!
//! [`PidFile::acquire`] is called once the configuration is valid and before
//! the shards start; dropping the [`PidFile`] at exit removes the file. This
//! module owns the file and nothing else: it never signals the process it
//! finds.
//!
//! A running gate holds an exclusive `flock` on its pid file for its whole
//! life, so "is the gate that wrote this file still running?" is answered by
//! the kernel, not guessed from a pid that may have been reused since. What
//! is found in the file decides the rest ([`judge`], pure):
//!
//! * the lock is held: a gate is running. Refused, naming the file and its pid.
//! * the file names a live process that is a ringgate (same `comm` as this
//!   one) and is not this process: refused too (it runs without the lock,
//!   e.g. a pid file written by a wrapper script).
//! * anything else (no file, a dead pid, a pid reused by another program,
//!   this very pid left by an earlier run in a container, no pid at all): the
//!   file is taken and rewritten; the caller logs the [`Stale`] warning.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another gate holds the file.
    #[error(
        "pid file {path}: ringgate is already running as pid {pid}; stop it first, or give \
         this gate another [gate] pid"
    )]
    Running {
        /// The pid file.
        path: PathBuf,
        /// The pid found in it (0 when the holder wrote none yet).
        pid: u32,
    },
    /// The file (or its directory) could not be created, locked or written.
    #[error("pid file {path}: {source}")]
    Io {
        /// The pid file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// What a replaced pid file held, for the warning the caller logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The pid written in it, if any.
    pub pid: Option<u32>,
    /// Why it was taken as stale, e.g. "no process 1234 is running".
    pub why: String,
}

/// What the process named in a pid file is now, as [`judge`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// No such process.
    Gone,
    /// A live process and its `comm` (`None` if it could not be read).
    Alive(Option<String>),
}

/// [`judge`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write our pid; `Some` when something was replaced.
    Take(Option<Stale>),
    /// Another gate runs with this pid.
    Refuse(u32),
}

/// Decides what to do with a pid file whose lock we hold, from its text,
/// our own pid and name, and what the pid it names is now (`probe`).
pub fn judge(
    text: &str,
    ours: u32,
    our_name: Option<&str>,
    probe: impl Fn(u32) -> Holder,
) -> Verdict {
    let text = text.trim();
    if text.is_empty() {
        return Verdict::Take(None);
    }
    let Ok(pid) = text.parse::<u32>() else {
        let why = format!(
            "it holds no pid ({:?})",
            text.chars().take(20).collect::<String>()
        );
        return Verdict::Take(Some(Stale { pid: None, why }));
    };
    let stale = |why: String| {
        Verdict::Take(Some(Stale {
            pid: Some(pid),
            why,
        }))
    };
    if pid == ours {
        return stale(format!(
            "it names this process ({pid}), left by an earlier run"
        ));
    }
    match probe(pid) {
        Holder::Gone => stale(format!("no process {pid} is running")),
        Holder::Alive(name) if name.is_some() && name.as_deref() == our_name => {
            Verdict::Refuse(pid)
        }
        Holder::Alive(name) => stale(format!(
            "process {pid} is now {}, not a ringgate",
            name.as_deref().unwrap_or("another program")
        )),
    }
}

/// A pid file this process holds; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Open for the process's life: its `flock` is what marks the gate as running.
    file: File,
}

impl PidFile {
    /// Takes the pid file at `path` for this process (creating its directory
    /// if needed) and writes our pid into it. Returns what it replaced.
    pub fn acquire(path: &Path) -> Result<(PidFile, Option<Stale>), PidFileError> {
        let ours = std::process::id();
        let our_name = comm("self");
        Self::acquire_as(path, ours, our_name.as_deref(), probe)
    }

    /// [`PidFile::acquire`] with the pid, name and process probe given (for tests).
    pub fn acquire_as(
        path: &Path,
        ours: u32,
        our_name: Option<&str>,
        probe: impl Fn(u32) -> Holder,
    ) -> Result<(PidFile, Option<Stale>), PidFileError> {
        let io_err = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let mut file = open_locked(path).map_err(|e| match e {
            Locked::Busy(pid) => PidFileError::Running {
                path: path.to_owned(),
                pid,
            },
            Locked::Io(e) => io_err(e),
        })?;
        let mut text = String::new();
        // A file that is not UTF-8 holds no pid: treated as empty-ish below.
        let _ = file.read_to_string(&mut text);
        let stale = match judge(&text, ours, our_name, probe) {
            Verdict::Refuse(pid) => {
                return Err(PidFileError::Running {
                    path: path.to_owned(),
                    pid,
                })
            }
            Verdict::Take(stale) => stale,
        };
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        file.write_all(format!("{ours}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_err)?;
        Ok((
            PidFile {
                path: path.to_owned(),
                file,
            },
            stale,
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    /// Removes the file if it is still ours (the same inode), then closes it,
    /// which releases the lock.
    fn drop(&mut self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why [`open_locked`] failed.
enum Locked {
    /// Another open file holds the lock; the pid it wrote (0 if none yet).
    Busy(u32),
    Io(io::Error),
}

/// Opens (creating) `path` and takes an exclusive lock without waiting. A
/// file unlinked by its exiting holder between our open and our lock is
/// detected (its inode no longer sits at `path`) and opened again.
fn open_locked(path: &Path) -> Result<File, Locked> {
    for _ in 0..10 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(Locked::Io)?;
        // SAFETY: flock on a descriptor we own and keep open; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Locked::Io(err));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(Locked::Busy(text.trim().parse().unwrap_or(0)));
        }
        if same_file(&file, path) {
            return Ok(file);
        }
    }
    Err(Locked::Io(io::Error::other(
        "the file keeps being replaced while it is locked",
    )))
}

/// Whether `file` is the file now at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// What process `pid` is now: `kill(pid, 0)` says whether it exists (EPERM:
/// it does, under another user), `/proc/<pid>/comm` what it runs.
fn probe(pid: u32) -> Holder {
    let Ok(raw) = i32::try_from(pid) else {
        return Holder::Gone;
    };
    // SAFETY: signal 0 sends nothing; kill(2) only checks that the pid exists.
    let rc = unsafe { libc::kill(raw, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return Holder::Gone;
    }
    Holder::Alive(comm(&pid.to_string()))
}

/// `/proc/<which>/comm`, trimmed.
fn comm(which: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{which}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u32 = 4242;
    const NAME: Option<&str> = Some("ringgate");

    fn verdict(text: &str, holder: Holder) -> Verdict {
        judge(text, US, NAME, |_| holder.clone())
    }

    fn stale(v: Verdict) -> Stale {
        match v {
            Verdict::Take(Some(s)) => s,
            other => panic!("expected a stale file, got {other:?}"),
        }
    }

    #[test]
    fn empty_or_new_files_are_taken_silently() {
        assert_eq!(verdict("", Holder::Gone), Verdict::Take(None));
        assert_eq!(verdict(" \n", Holder::Gone), Verdict::Take(None));
    }

    #[test]
    fn a_live_ringgate_refuses() {
        let v = verdict("77\n", Holder::Alive(Some("ringgate".into())));
        assert_eq!(v, Verdict::Refuse(77));
    }

    #[test]
    fn dead_reused_or_own_pids_are_stale() {
        let s = stale(verdict("77\n", Holder::Gone));
        assert_eq!(s.pid, Some(77));
        assert!(s.why.contains("no process 77"), "{}", s.why);
        let s = stale(verdict("77", Holder::Alive(Some("bash".into()))));
        assert!(s.why.contains("now bash"), "{}", s.why);
        let s = stale(verdict("77", Holder::Alive(None)));
        assert!(s.why.contains("another program"), "{}", s.why);
        let s = stale(verdict(
            &US.to_string(),
            Holder::Alive(Some("ringgate".into())),
        ));
        assert!(s.why.contains("this process"), "{}", s.why);
        let s = stale(verdict("garbage", Holder::Gone));
        assert_eq!(s.pid, None);
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringgate-pid-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn acquire_writes_locks_and_removes() {
        let d = dir("cycle");
        let path = d.join("run/gate.pid");
        let (held, stale) = PidFile::acquire(&path).unwrap();
        assert_eq!(stale, None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // A second open file description conflicts with the lock, even in
        // this process: the second gate is refused with the first one's pid.
        match PidFile::acquire_as(&path, 1, NAME, |_| Holder::Gone) {
            Err(e @ PidFileError::Running { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains(&std::process::id().to_string()), "{msg}");
            }
            other => panic!("expected Running, got {other:?}"),
        }
        assert_eq!(held.path(), path);
        drop(held);
        assert!(!path.exists(), "removed at drop");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stale_file_is_replaced() {
        let d = dir("stale");
        let path = d.join("gate.pid");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(&path, "999999\n").unwrap();
        let (held, stale) = PidFile::acquire_as(&path, US, NAME, |_| Holder::Gone).unwrap();
        assert_eq!(stale.unwrap().pid, Some(999_999));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{US}\n"));
        drop(held);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_replaced_by_another_is_not_removed() {
        let d = dir("replaced");
        let path = d.join("gate.pid");
        let (held, _) = PidFile::acquire_as(&path, US, NAME, |_| Holder::Gone).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(held);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unwritable_place_names_the_file() {
        let e = PidFile::acquire(Path::new("/proc/version/gate.pid")).unwrap_err();
        assert!(e.to_string().contains("/proc/version/gate.pid"), "{e}");
    }
}
