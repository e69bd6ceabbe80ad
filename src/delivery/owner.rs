//! A deliverer's mark on disk beside the database: a lock held for the life of its process and
//! a journal of the messages it handed to the transport. When a process dies, the next one
//! knows at once (the lock is free), and knows which of the dead one's messages may have gone
//! out (those in the journal) and which cannot have (the rest go back to the queue).
//!
//! The journal is written with a plain `write` before each hand-over, without `fsync`: a killed
//! process loses nothing it wrote (the kernel has it), but a machine that went down may have.
//! So the journal is trusted only when it was written since the current boot (Linux's
//! `boot_id`); otherwise every message the dead process was sending stays in doubt.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// This process's lock and journal; removed when it is dropped (a clean stop).
#[derive(Debug)]
pub struct OwnerFiles {
    lock_path: PathBuf,
    journal_path: PathBuf,
    /// Held (locked) until the process ends.
    _lock: File,
    journal: Mutex<File>,
    /// The leader's lock (`dir/leader.lock`), once this process leads.
    leader: Mutex<Option<File>>,
}

/// What the files of another deliverer say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Previous {
    /// Its process is gone. `handed`: the messages it handed to the transport, when its
    /// journal can be trusted (`None`: it cannot, so all its messages being sent are in doubt).
    Dead { handed: Option<HashSet<i64>> },
    /// Its process still holds the lock.
    Alive,
    /// No lock file (another version, another machine, files removed): wait for its lease.
    Unknown,
}

impl OwnerFiles {
    /// Creates and locks `dir/<owner>.lock` and starts `dir/<owner>.journal`.
    pub fn create(dir: &Path, owner: &str) -> std::io::Result<Self> {
        // Private: only this account's processes keep their locks and journals here.
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let lock_path = dir.join(format!("{owner}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&lock_path)?;
        lock.try_lock().map_err(std::io::Error::other)?;
        let journal_path = dir.join(format!("{owner}.journal"));
        let journal = File::create(&journal_path)?;
        let files = Self {
            lock_path,
            journal_path,
            _lock: lock,
            journal: Mutex::new(journal),
            leader: Mutex::new(None),
        };
        files.reset()?;
        Ok(files)
    }

    /// Notes that message `id` is being handed to the transport; call before the hand-over.
    pub fn handed(&self, id: i64) -> std::io::Result<()> {
        let mut journal = self.journal.lock().expect("not poisoned");
        journal.write_all(format!("{id}\n").as_bytes())
    }

    /// Whether this process leads the workers on this database: it takes the leader's lock
    /// (`leader.lock` in the folder) when no live process holds it, and keeps it for its life.
    /// The file is never removed: a process that opened it would otherwise lock a file nobody
    /// else sees.
    pub fn lead(&self) -> bool {
        let mut leader = self.leader.lock().expect("not poisoned");
        if leader.is_some() {
            return true;
        }
        let Some(dir) = self.lock_path.parent() else {
            return false;
        };
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("leader.lock"))
        else {
            return false;
        };
        if file.try_lock().is_err() {
            return false;
        }
        *leader = Some(file);
        true
    }

    /// Empties the journal (nothing of this process is being sent any more).
    pub fn reset(&self) -> std::io::Result<()> {
        let mut journal = self.journal.lock().expect("not poisoned");
        journal.set_len(0)?;
        use std::io::Seek;
        journal.seek(std::io::SeekFrom::Start(0))?;
        journal.write_all(format!("boot {}\n", boot_id().unwrap_or_default()).as_bytes())
    }
}

impl Drop for OwnerFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.journal_path);
        let _ = std::fs::remove_file(&self.lock_path);
        // The folder goes too once no other sender uses it.
        if let Some(dir) = self.lock_path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether `owner` (a lease owner found in the outbox) is alive, and what it handed over. An
/// owner that does not look like one of ours is `Unknown`.
pub fn probe(dir: &Path, owner: &str) -> Previous {
    if owner.is_empty() || !owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Previous::Unknown;
    }
    let Ok(lock) = OpenOptions::new()
        .write(true)
        .open(dir.join(format!("{owner}.lock")))
    else {
        return Previous::Unknown;
    };
    if lock.try_lock().is_err() {
        return Previous::Alive;
    }
    Previous::Dead {
        handed: read_journal(&dir.join(format!("{owner}.journal"))),
    }
}

/// Removes a dead owner's files once its messages are dealt with.
pub fn forget(dir: &Path, owner: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{owner}.journal")));
    let _ = std::fs::remove_file(dir.join(format!("{owner}.lock")));
}

/// The ids in a journal written since this boot; `None` when it is missing, from an earlier
/// boot, or unreadable.
fn read_journal(path: &Path) -> Option<HashSet<i64>> {
    let file = File::open(path).ok()?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next()?.ok()?;
    let booted = boot_id()?;
    if header.strip_prefix("boot ")? != booted {
        return None;
    }
    let mut ids = HashSet::new();
    for line in lines {
        let line = line.ok()?;
        // A line cut short by the kill is a hand-over that may have begun: the id is still
        // whole in every case but one (digits lost), where the row stays in doubt anyway
        // because its id is not found.
        if let Ok(id) = line.trim().parse() {
            ids.insert(id);
        }
    }
    Some(ids)
}

/// This boot's identity, where the system says it (Linux).
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_owner_is_alive_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = OwnerFiles::create(dir.path(), "1-2").unwrap();
        files.handed(7).unwrap();
        assert_eq!(probe(dir.path(), "1-2"), Previous::Alive);
        drop(files);
        assert_eq!(probe(dir.path(), "1-2"), Previous::Unknown);
        assert_eq!(probe(dir.path(), "../etc/passwd"), Previous::Unknown);
    }

    #[test]
    fn one_process_leads_at_a_time_and_another_takes_over_when_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = OwnerFiles::create(dir.path(), "1-2").unwrap();
        let second = OwnerFiles::create(dir.path(), "3-4").unwrap();
        assert!(first.lead());
        assert!(first.lead(), "a leader stays the leader");
        assert!(!second.lead(), "the lock is held");
        drop(first);
        assert!(second.lead(), "the lock is free once its holder is gone");
    }

    #[test]
    fn a_dead_owners_journal_says_what_it_handed_over_since_its_last_reset() {
        let dir = tempfile::tempdir().unwrap();
        let files = OwnerFiles::create(dir.path(), "3-4").unwrap();
        files.handed(1).unwrap();
        files.reset().unwrap();
        files.handed(5).unwrap();
        files.handed(6).unwrap();
        let journal = std::fs::read_to_string(&files.journal_path).unwrap();
        drop(files);
        // What a killed process leaves: its files, and no lock held.
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path().join("3-4.lock"), "").unwrap();
        std::fs::write(dir.path().join("3-4.journal"), &journal).unwrap();
        if boot_id().is_some() {
            assert_eq!(
                probe(dir.path(), "3-4"),
                Previous::Dead {
                    handed: Some([5, 6].into())
                }
            );
            // A journal from another boot is not trusted.
            let other = journal.replacen("boot ", "boot x", 1);
            std::fs::write(dir.path().join("3-4.journal"), other).unwrap();
        }
        assert_eq!(probe(dir.path(), "3-4"), Previous::Dead { handed: None });
        forget(dir.path(), "3-4");
        assert_eq!(probe(dir.path(), "3-4"), Previous::Unknown);
    }
}
