//! Reading the files a config points at — the config file itself, secret files, CA files —
//! through one function that cannot block or grow without bound.
//!
//! A path in a config may name anything: `/dev/zero` (endless), a FIFO (blocks the reader
//! until a writer comes), a directory, a 10 GB log. Every such file is opened with
//! `O_NONBLOCK` (so that opening a FIFO returns at once), checked with `fstat` on the open
//! handle (no race with a rename between check and read) and refused unless it is a regular
//! file; then at most `limit` bytes are read, and a larger file is refused rather than cut.
//! Kept apart from `config` because `net` reads CA files through it too.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Most bytes of a config file or a CA file.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most bytes of a secret file (a token, a password, a DSN).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Why a file the config points at was not read. The messages never name the file (the
/// caller does) and never hold any of its content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Occurs when the file cannot be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Occurs when the path names something else than a regular file (a FIFO, a device, a
    /// directory, a socket).
    #[error("not a regular file but a {0}")]
    NotRegular(&'static str),
    /// Occurs when the file holds more than the limit.
    #[error("larger than the {0} limit")]
    TooLarge(&'static str),
}

/// Reads the regular file `path` whole, refusing anything else and anything over `limit`
/// bytes; never blocks on a FIFO or a device.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(FileError::NotRegular(what));
    }
    let too_large = || FileError::TooLarge(limit_text(limit));
    if file.metadata()?.len() > limit {
        return Err(too_large());
    }
    // The size may grow between fstat and read: read one byte past the limit to tell.
    let mut bytes = Vec::new();
    read_at_most(file, limit, &mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn read_at_most(file: File, limit: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    file.take(limit.saturating_add(1)).read_to_end(out)?;
    Ok(())
}

/// The limits as people write them.
fn limit_text(limit: u64) -> &'static str {
    match limit {
        MAX_FILE_BYTES => "1 MiB",
        MAX_SECRET_BYTES => "64 KiB",
        _ => "size",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(read_bounded(&path, MAX_SECRET_BYTES).unwrap(), b"abc\n");
    }

    #[test]
    fn refuses_a_file_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'a'; 64 * 1024 + 1]).unwrap();
        let err = read_bounded(&path, MAX_SECRET_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "larger than the 64 KiB limit");
    }

    #[test]
    fn refuses_a_device_without_reading_it() {
        let err = read_bounded(Path::new("/dev/zero"), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file but a character device");
    }

    #[test]
    fn refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file but a directory");
    }

    /// Regression: a FIFO blocked `--check-config` forever (issue #12). Opening it must
    /// return at once, with no writer anywhere.
    #[test]
    fn refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_bounded(&path, MAX_SECRET_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file but a FIFO");
    }
}
