//! Reading a user's files with a ceiling: only regular files (a FIFO would
//! block forever, `/dev/zero` never ends), and never more bytes than the
//! format can need, checked before reading and enforced while reading (a file
//! can grow, or lie about its size through a symlink to a device).

use std::io::Read;
use std::path::Path;

/// The largest pipeline file we read (real ones are a few KB).
pub const PIPELINE_LIMIT: u64 = 4 << 20;

/// Why a file could not be read. The message reads on from the file's name
/// ("the pipeline file is a FIFO, not a regular file"); the caller names it.
#[derive(Debug)]
pub enum ReadError {
    /// It does not exist or cannot be opened or read.
    Io(std::io::Error),
    /// A directory, FIFO, socket or device.
    NotRegular(&'static str),
    /// Larger than `limit` bytes.
    TooLarge {
        /// The file's size.
        size: u64,
        /// The most it may hold.
        limit: u64,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
            ReadError::NotRegular(kind) => write!(f, "is a {kind}, not a regular file"),
            ReadError::TooLarge { size, limit } => {
                write!(f, "is {size} bytes, more than the {limit} bytes this file may hold")
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl ReadError {
    /// This reason, for the file `path`, which is `what` to its reader.
    pub fn at(self, path: &Path, what: &'static str) -> FileReadError {
        FileReadError { path: path.to_path_buf(), what, source: self }
    }
}

/// A file that could not be read, named, and what it is to the reader, read
/// before the reason: "w.pth: the weights file is a FIFO, not a regular
/// file". [`crate::Error::Read`] and [`crate::data::DataError::Read`] hold one.
#[derive(Debug, thiserror::Error)]
#[error("{}: {what} {source}", path.display())]
pub struct FileReadError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What the file is to the reader ("the weights file").
    pub what: &'static str,
    /// Why it could not be read.
    pub source: ReadError,
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Open `path` (following symlinks) if it is a regular file of at most
/// `limit` bytes; returns the file and its length.
pub fn open_regular(path: &Path, limit: u64) -> Result<(std::fs::File, u64), ReadError> {
    // Check the kind before opening: opening a FIFO for reading blocks.
    let meta = std::fs::metadata(path)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular(kind_of(&ft)));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { size: meta.len(), limit });
    }
    // Non-blocking, so a FIFO swapped in since the first look cannot hang the
    // open; it has no effect on reading a regular file.
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    // The path may have been swapped between the two looks; ask the open file.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { size: meta.len(), limit });
    }
    Ok((file, meta.len()))
}

/// Read all of a regular file of at most `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path, limit)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the limit tells a file that grew since it was measured.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { size: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_capped(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
    })
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "folder"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_folders_and_fifos_and_large_files() {
        let dir = std::env::temp_dir().join(format!("nabla-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read_capped(Path::new("/dev/zero"), 10), Err(ReadError::NotRegular("device"))));
        assert!(matches!(read_capped(&dir, 10), Err(ReadError::NotRegular("folder"))));
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        assert!(matches!(read_capped(&fifo, 10), Err(ReadError::NotRegular("FIFO"))));
        let big = dir.join("big");
        std::fs::write(&big, [7u8; 11]).unwrap();
        assert!(matches!(read_capped(&big, 10), Err(ReadError::TooLarge { size: 11, limit: 10 })));
        // The I/O error is the source, for a caller that matches its kind.
        let gone = read_capped(&dir.join("gone"), 10).unwrap_err();
        let io = std::error::Error::source(&gone).and_then(|e| e.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound), "{gone}");
        assert_eq!(read_capped(&big, 11).unwrap(), vec![7u8; 11]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
