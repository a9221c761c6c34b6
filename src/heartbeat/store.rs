//! The state file: what each heartbeat has seen, kept across restarts.
//!
//! A ping is answered 2xx only after the file holding it is durable: the new content goes to
//! a temporary file in the same folder, which is fsynced, renamed over the old file, and
//! then the folder is fsynced, so that a crash at any point leaves either the old or the
//! new file, never a torn one. Times are whole Unix milliseconds, so that what is read back
//! after a restart is exactly what was shown before it.
//!
//! A missing file starts fresh. A file that is not valid state is renamed aside
//! (`<file>.corrupt-<unix time>`) with a warning, and the exporter starts fresh.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
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

/// What reading the state file found.
#[derive(Debug)]
pub enum Loaded {
    /// The file holds valid state.
    Found(States),
    /// There is no file yet.
    Missing,
    /// The file could not be read (permissions, not a file, …); it was left in place.
    Unreadable(io::Error),
    /// The file is not valid state; it was renamed to `moved_to` (when that worked).
    Corrupt {
        /// What was wrong with it.
        error: String,
        /// Where it went.
        moved_to: Result<PathBuf, io::Error>,
    },
}

/// Reads the state file; a corrupt one is renamed to `<path>.corrupt-<now as Unix seconds>`.
pub fn load(path: &Path, now: SystemTime) -> Loaded {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Unreadable(e),
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(file) if file.version == VERSION => Loaded::Found(file.heartbeats),
        Ok(file) => corrupt(path, now, format!("unknown version {}", file.version)),
        Err(e) => corrupt(path, now, e.to_string()),
    }
}

fn corrupt(path: &Path, now: SystemTime, error: String) -> Loaded {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    let moved_to = fs::rename(path, &aside).map(|()| aside);
    Loaded::Corrupt { error, moved_to }
}

/// Writes `states` to `path` atomically and durably (see the module docs). Blocking: call
/// it from `spawn_blocking`.
pub fn write(path: &Path, states: &States) -> io::Result<()> {
    let file = StateFile {
        version: VERSION,
        heartbeats: states.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    bytes.push(b'\n');

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);

    let result = (|| {
        // 0600: the last messages may hold whatever a job printed.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the folder is.
    File::open(dir)?.sync_all()
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
            Loaded::Corrupt { moved_to, .. } => {
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
            Loaded::Corrupt { .. }
        ));
    }

    #[test]
    fn write_fails_when_the_folder_is_a_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().join("state.json");
        assert!(write(&path, &sample()).is_err());
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_800_000_000_123, -5_000] {
            assert_eq!(millis(from_millis(ms)), ms);
        }
    }
}
