//! The state files: what each heartbeat has seen, kept across restarts.
//!
//! Two files: the snapshot `<state_file>` (every heartbeat, JSON) and the journal
//! `<state_file>.journal` (one JSON line per saved ping: the heartbeat's whole new state).
//! A ping is answered 2xx only after its journal line is fsynced, so that a crash at any
//! point loses no answered ping; pings that arrive together share one write and one fsync
//! (see [`super::writer`]). What was read is the snapshot with the journal's lines applied in
//! order; every so often the writer folds the journal into a new snapshot (written to a
//! fresh temporary file in the same folder, created exclusively, fsynced, renamed over the
//! old one, folder fsynced) and only then empties the journal. A line is a whole state, so
//! applying a line twice changes nothing. Times are whole Unix milliseconds, so that what is
//! read back after a restart is exactly what was shown before it.
//!
//! A missing file starts fresh. A file that exists but cannot be used (not valid state,
//! truncated, a folder, unreadable) is renamed aside to `<file>.corrupt-<unix time>` and
//! never overwritten; a torn last journal line (a crash during a write that was never
//! answered) is dropped.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Version of the file layout, written into the file.
const VERSION: u32 = 1;

/// What one heartbeat has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatState {
    /// When the heartbeat first appeared in the config (Unix milliseconds).
    pub first_configured_ms: i64,
    /// The last success ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// A `start` not yet followed by success or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// A `fail` (or non-zero exit status) came after the last success.
    #[serde(default)]
    pub failed: bool,
    /// The last `fail` ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fail_ms: Option<i64>,
    /// From `start` to the success that completed it, for the last run that sent both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<i64>,
    /// The body of the last ping that had one, truncated. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
}

/// Every heartbeat's state, by name.
pub type States = BTreeMap<String, HeartbeatState>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    heartbeats: States,
}

/// Unix milliseconds of `t` (negative before 1970).
pub fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` Unix milliseconds stand for.
pub fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// What reading a state file (snapshot or journal) found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// The file holds valid state.
    Found(T),
    /// There is no file yet.
    Missing,
    /// The file exists and cannot be used; it was renamed to `moved_to` (when that worked)
    /// and is never overwritten.
    Bad {
        /// What was wrong with it.
        problem: Problem,
        /// Where it went.
        moved_to: Result<PathBuf, io::Error>,
    },
}

/// Why a state file could not be used.
#[derive(Debug)]
pub enum Problem {
    /// Reading failed (a folder, permissions, an I/O error).
    Unreadable(io::Error),
    /// The content is not valid state (truncated, not JSON, an unknown version).
    Corrupt(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Problem::Corrupt(e) => write!(f, "not valid state: {e}"),
        }
    }
}

/// Reads the snapshot.
pub fn load(path: &Path, now: SystemTime) -> Loaded<States> {
    let bytes = match read(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Loaded::Missing,
        Err(e) => return bad(path, now, Problem::Unreadable(e)),
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(file) if file.version == VERSION => Loaded::Found(file.heartbeats),
        Ok(file) => bad(
            path,
            now,
            Problem::Corrupt(format!("unknown version {}", file.version)),
        ),
        Err(e) => bad(path, now, Problem::Corrupt(e.to_string())),
    }
}

/// The journal beside the snapshot `path`.
pub fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

/// One journal line as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    state: HeartbeatState,
}

/// One journal line as written.
#[derive(Serialize)]
struct EntryRef<'a> {
    name: &'a str,
    state: &'a HeartbeatState,
}

/// The lines of a journal, in order.
pub type Entries = Vec<(String, HeartbeatState)>;

/// Reads the journal: its lines in order. A line cut short (the last one without its
/// newline, or one that ends early) is a write a crash interrupted, never answered 2xx,
/// and is dropped. Any other bad line makes the journal bad: it is moved aside, and the
/// lines before it (answered pings) are still returned, beside the problem.
pub fn load_journal(path: &Path, now: SystemTime) -> (Entries, Loaded<()>) {
    let bytes = match read(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return (Vec::new(), Loaded::Missing),
        Err(e) => return (Vec::new(), bad(path, now, Problem::Unreadable(e))),
    };
    let mut entries = Vec::new();
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for (number, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => entries.push((entry.name, entry.state)),
            // A write a crash cut short, never answered 2xx; the next write began a new line.
            Err(e) if e.is_eof() => {}
            Err(e) => {
                let problem = Problem::Corrupt(format!("line {}: {e}", number + 1));
                return (entries, bad(path, now, problem));
            }
        }
    }
    (entries, Loaded::Found(()))
}

/// The whole file, `None` when there is none. (A state file that is a symbolic link, to
/// a persistent volume say, is read through it; it is only ever replaced, never written
/// through.)
fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        // A path below something that is not a folder holds no file either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames a bad file to `<path>.corrupt-<now as Unix seconds>` (`-2`, `-3`, … when taken).
fn bad<T>(path: &Path, now: SystemTime, problem: Problem) -> Loaded<T> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = format!(".corrupt-{secs}");
    let aside = (1..100)
        .map(|n| match n {
            1 => with_suffix(path, &base),
            n => with_suffix(path, &format!("{base}-{n}")),
        })
        .find(|p| fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| with_suffix(path, &base));
    let moved_to = fs::rename(path, &aside).map(|()| aside);
    Loaded::Bad { problem, moved_to }
}

fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes the snapshot `states` to `path` atomically and durably (see the module docs).
/// The temporary file has a random name and is created exclusively (`O_EXCL`), so that
/// nothing planted beside the state file (a symbolic link) is followed. Blocking.
pub fn write(path: &Path, states: &States) -> io::Result<()> {
    let file = StateFile {
        version: VERSION,
        heartbeats: states.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let dir = folder(path);
    // 0600 (tempfile's default): the last messages may hold whatever a job printed.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the folder is.
    File::open(dir)?.sync_all()
}

/// The open journal, appended to by the writer alone.
#[derive(Debug)]
pub struct Journal {
    file: File,
    /// Lines since it was last emptied.
    lines: usize,
    /// Bytes since it was last emptied.
    bytes: u64,
    /// The file may end in a cut line (a failed write): the next write starts a new line.
    needs_newline: bool,
}

impl Journal {
    /// Opens (or creates) the journal beside the snapshot `path` for appending, without
    /// following a symbolic link, keeping what is in it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = journal_path(path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let len = file.metadata()?.len();
        let mut needs_newline = false;
        if len > 0 {
            let mut last = [0u8];
            file.seek(io::SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            needs_newline = last[0] != b'\n';
        }
        File::open(folder(&path))?.sync_all()?;
        Ok(Self {
            file,
            lines: 0,
            bytes: len,
            needs_newline,
        })
    }

    /// Appends one line per `(name, state)` and fsyncs: one write, one fsync for the batch.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, &'a HeartbeatState)>,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(256);
        if self.needs_newline {
            buf.push(b'\n');
        }
        let mut lines = 0;
        for (name, state) in entries {
            serde_json::to_writer(&mut buf, &EntryRef { name, state }).map_err(io::Error::other)?;
            buf.push(b'\n');
            lines += 1;
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.needs_newline = false;
                self.lines += lines;
                self.bytes += buf.len() as u64;
            }
            Err(_) => self.needs_newline = true,
        }
        written
    }

    /// Lines and bytes since the journal was last emptied.
    pub fn size(&self) -> (usize, u64) {
        (self.lines, self.bytes)
    }

    /// Empties the journal, once a snapshot holding all of it is durable.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.lines = 0;
        self.bytes = 0;
        self.needs_newline = false;
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> States {
        let mut states = States::new();
        states.insert(
            "worker".to_owned(),
            HeartbeatState {
                first_configured_ms: 1_800_000_000_000,
                last_success_ms: Some(1_800_000_060_123),
                last_message: Some("done\n".to_owned()),
                ..HeartbeatState::default()
            },
        );
        states
    }

    #[test]
    fn written_state_reads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &sample()).unwrap();
        match load(&path, SystemTime::now()) {
            Loaded::Found(states) => assert_eq!(states, sample()),
            other => panic!("{other:?}"),
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn missing_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&dir.path().join("nope.json"), SystemTime::now()),
            Loaded::Missing
        ));
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"version\": 1, \"heartbeats\": {\"w\": ").unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        match load(&path, now) {
            Loaded::Bad {
                problem: Problem::Corrupt(_),
                moved_to,
            } => {
                let aside = moved_to.unwrap();
                assert_eq!(aside, dir.path().join("state.json.corrupt-1800000000"));
                assert!(aside.exists());
                assert!(!path.exists());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_version_counts_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"version\": 2, \"heartbeats\": {}}").unwrap();
        assert!(matches!(
            load(&path, SystemTime::now()),
            Loaded::Bad {
                problem: Problem::Corrupt(_),
                ..
            }
        ));
    }

    #[test]
    fn write_fails_when_the_folder_is_a_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().join("state.json");
        assert!(write(&path, &sample()).is_err());
    }

    #[test]
    fn a_folder_in_place_of_the_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::create_dir(&path).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        match load(&path, now) {
            Loaded::Bad {
                problem: Problem::Unreadable(_),
                moved_to,
            } => assert!(moved_to.unwrap().is_dir()),
            other => panic!("{other:?}"),
        }
        // A second bad file in the same second does not replace the first one aside.
        fs::write(&path, "x").unwrap();
        match load(&path, now) {
            Loaded::Bad { moved_to, .. } => assert_eq!(
                moved_to.unwrap(),
                dir.path().join("state.json.corrupt-1800000000-2")
            ),
            other => panic!("{other:?}"),
        }
        write(&path, &sample()).unwrap();
        assert!(matches!(load(&path, now), Loaded::Found(_)));
    }

    /// Regression (issue #12): a symbolic link planted at `<state_file>.tmp` had its target
    /// overwritten.
    #[test]
    fn a_planted_link_beside_the_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        for name in [
            "state.json.tmp",
            ".state.json.tmp",
            "state.json.journal.tmp",
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write(&path, &sample()).unwrap();
        write(&path, &sample()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(matches!(load(&path, SystemTime::now()), Loaded::Found(_)));
        // The journal itself is not followed either.
        let journal = journal_path(&path);
        std::os::unix::fs::symlink(&victim, &journal).unwrap();
        assert!(Journal::open(&path).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn journal_lines_apply_in_order_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut journal = Journal::open(&path).unwrap();
        let mut state = sample()["worker"].clone();
        journal.append([("worker", &state)]).unwrap();
        state.last_success_ms = Some(1_800_000_120_000);
        journal
            .append([("worker", &state), ("other", &state)])
            .unwrap();
        assert_eq!(journal.size().0, 3);
        drop(journal);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        f.write_all(b"{\"name\":\"worker\",\"sta").unwrap();
        drop(f);
        let (entries, loaded) = load_journal(&journal_path(&path), SystemTime::now());
        assert!(matches!(loaded, Loaded::Found(())), "{loaded:?}");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1], ("worker".to_owned(), state.clone()));
        // The next write starts on a line of its own, so nothing is glued to the torn one.
        let mut journal = Journal::open(&path).unwrap();
        state.last_success_ms = Some(1_800_000_180_000);
        journal.append([("worker", &state)]).unwrap();
        let (entries, loaded) = load_journal(&journal_path(&path), SystemTime::now());
        assert!(matches!(loaded, Loaded::Found(())), "{loaded:?}");
        assert_eq!(entries.last().unwrap().1, state);
        journal.clear().unwrap();
        assert_eq!(fs::read(journal_path(&path)).unwrap(), b"");
    }

    #[test]
    fn a_bad_line_in_the_middle_makes_the_journal_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json.journal");
        fs::write(
            &path,
            "{\"name\":\"w\",\"state\":{\"first_configured_ms\":1}}\nnot json\n{}\n",
        )
        .unwrap();
        let (entries, loaded) = load_journal(&path, UNIX_EPOCH);
        assert_eq!(
            entries.len(),
            1,
            "the answered ping before the bad line is kept"
        );
        match loaded {
            Loaded::Bad {
                problem: Problem::Corrupt(e),
                moved_to,
            } => {
                assert!(e.starts_with("line 2: "), "{e}");
                assert_eq!(
                    moved_to.unwrap(),
                    dir.path().join("state.json.journal.corrupt-0")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_800_000_000_123, -5_000] {
            assert_eq!(millis(from_millis(ms)), ms);
        }
    }
}
