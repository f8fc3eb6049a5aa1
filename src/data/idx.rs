//! The IDX format (LeCun's MNIST files): a 4-byte magic `0 0 type ndims`,
//! `ndims` big-endian u32 dimensions, then the values. Only unsigned bytes
//! (type 0x08) occur in MNIST and only they are accepted.
//!
//! A header is checked against the data that follows before anything large
//! is allocated: a file that claims 2^31 images but holds 10 is an error
//! naming both counts, not a 1.6 TB allocation. Gzipped files are detected by
//! their magic bytes and decompressed while reading (all members, as `cat
//! a.gz b.gz` makes), stopping one byte past what the header declares; raw
//! files are mapped. Only a regular file is opened, and no file or header may
//! ask for more than [`MAX_DATA_BYTES`].

use super::DataError;
use byteorder::{BigEndian, ReadBytesExt};
use std::io::Read;
use std::path::Path;

/// An n-d array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// The length of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The bytes, row-major.
    pub data: Vec<u8>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UNSIGNED_BYTE: u8 = 0x08;

/// The most data (after the header) an IDX file may declare: five times
/// MNIST's 47 MB of training images, which as f32 pixels take 1 GiB.
pub const MAX_DATA_BYTES: usize = 256 << 20;
/// The largest IDX file opened, gzipped or raw: the data, the longest header
/// (255 dimensions) and room for gzip's framing of incompressible data.
pub const MAX_FILE_BYTES: u64 = MAX_DATA_BYTES as u64 + (1 << 20);

/// Read an IDX file (gzipped or raw).
pub fn read(path: &Path) -> Result<IdxArray, DataError> {
    let (file, _) = crate::files::open_regular(path, MAX_FILE_BYTES).map_err(|e| e.at(path, "the IDX file"))?;
    // Safety: the map is read-only and dropped before this function returns;
    // a file truncated meanwhile by another process could fault, which is the
    // usual, accepted caveat of reading through a map.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
    parse_file(path, &map)
}

/// Parse the bytes of an IDX file, gzipped or raw; `path` names them in errors.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<IdxArray, DataError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse(path, flate2::read::MultiGzDecoder::new(bytes))
    } else {
        parse(path, bytes)
    }
}

/// Parse IDX bytes from any reader; `path` only names the source in errors.
pub fn parse(path: &Path, mut r: impl Read) -> Result<IdxArray, DataError> {
    let bad = |m: String| DataError::format(path, m);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|_| bad("too short for an IDX header (4-byte magic)".into()))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!("not an IDX file: magic bytes {:02x} {:02x} should be 00 00", magic[0], magic[1])));
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(bad(format!("IDX value type 0x{:02x} is not supported (only 0x08, unsigned bytes)", magic[2])));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(bad("IDX header declares 0 dimensions".into()));
    }
    let mut dims = Vec::with_capacity(ndims);
    for d in 0..ndims {
        let n = r.read_u32::<BigEndian>().map_err(|_| bad(format!("header ends before dimension {d} of {ndims}")))?;
        dims.push(n as usize);
    }
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = expected.ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    // Read at most one byte more than the header promises (and never more
    // than the ceiling allows), growing the buffer only as data arrives: a
    // lying header costs no more than the bytes actually there.
    let limit = expected.min(MAX_DATA_BYTES) + 1;
    let mut data = Vec::new();
    r.take(limit as u64)
        .read_to_end(&mut data)
        .map_err(|e| bad(format!("cannot read the data after the header: {e}")))?;
    if expected > MAX_DATA_BYTES && data.len() > MAX_DATA_BYTES {
        return Err(bad(format!(
            "dimensions {dims:?} need {expected} bytes of data, more than the {MAX_DATA_BYTES} an IDX file may hold"
        )));
    }
    if data.len() != expected {
        let what = if data.len() < expected { "truncated" } else { "longer than its header says" };
        let found = if data.len() > expected { format!("more than {expected}") } else { data.len().to_string() };
        return Err(bad(format!("{what}: dimensions {dims:?} need {expected} bytes of data, found {found}")));
    }
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn parse_bytes(bytes: &[u8]) -> Result<IdxArray, DataError> {
        parse(Path::new("x.idx"), bytes)
    }

    #[test]
    fn reads_a_small_file() {
        let a = parse_bytes(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn lying_and_broken_headers_are_clear_errors() {
        let msg = |b: &[u8]| parse_bytes(b).unwrap_err().to_string();
        assert!(msg(&idx(&[1 << 31, 28, 28], &[0; 10])).contains("truncated: dimensions [2147483648, 28, 28] need"));
        assert!(msg(&idx(&[2], &[1, 2, 3])).contains("longer than its header says"));
        assert!(msg(&[0, 0, 9, 1]).contains("type 0x09 is not supported"));
        assert!(msg(&[0x50, 0x4b, 3, 4]).contains("not an IDX file"));
        assert!(msg(&[0, 0]).contains("too short"));
        assert!(msg(&[0, 0, 8, 3, 0, 0]).contains("header ends before dimension 0 of 3"));
        assert!(msg(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[])).contains("overflow"));
        assert!(msg(&idx(&[2, 2], &[])).starts_with("x.idx: "));
    }

    #[test]
    fn gzipped_and_raw_files_read_the_same() {
        let dir = std::env::temp_dir().join(format!("nabla-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = idx(&[3], &[7, 8, 9]);
        std::fs::write(dir.join("a.idx"), &raw).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        std::fs::write(dir.join("a.idx.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(read(&dir.join("a.idx")).unwrap(), read(&dir.join("a.idx.gz")).unwrap());
        let err = read(&dir.join("missing.idx")).unwrap_err().to_string();
        assert!(err.contains("missing.idx"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_multi_member_gzip_file_reads_whole() {
        // `cat a.gz b.gz`: one stream cut anywhere, in two members.
        let raw = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        for cut in 1..raw.len() {
            let two = [gzip(&raw[..cut]), gzip(&raw[cut..])].concat();
            assert_eq!(parse_file(Path::new("x.idx.gz"), &two).unwrap().data, vec![1, 2, 3, 4, 5, 6], "cut {cut}");
        }
    }

    #[test]
    fn a_gzip_stream_is_read_no_further_than_its_header_allows() {
        /// A reader that counts what is taken from it.
        struct Counted<R>(R, std::rc::Rc<std::cell::Cell<usize>>);
        impl<R: Read> Read for Counted<R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.set(self.1.get() + n);
                Ok(n)
            }
        }
        // 64 MiB of zeros behind a header that declares 10 bytes, and one
        // that declares 1.6 TB: read to 11 bytes, and to the ceiling + 1.
        let lying = gzip(&[idx(&[10], &[]), vec![0; 64 << 20]].concat());
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let err = parse(Path::new("x"), Counted(flate2::read::MultiGzDecoder::new(&lying[..]), taken.clone()));
        assert!(err.unwrap_err().to_string().contains("longer than its header says"));
        assert!(taken.get() < 1 << 20, "read {} bytes", taken.get());
        let huge = idx(&[1 << 31, 28, 28], &[0; 64]);
        taken.set(0);
        let endless = std::io::Read::chain(&huge[..], std::io::repeat(0));
        let err = parse(Path::new("x"), Counted(endless, taken.clone())).unwrap_err().to_string();
        assert!(err.contains("more than the 268435456 an IDX file may hold"), "{err}");
        assert!(taken.get() <= MAX_DATA_BYTES + 2 * 4096, "read {} bytes", taken.get());
        // Short data behind a huge claim is still "truncated", with the count.
        let err = parse_bytes(&huge).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("found 64"), "{err}");
    }

    #[test]
    fn only_regular_files_within_the_ceiling_are_opened() {
        let dir = std::env::temp_dir().join(format!("nabla-idx-special-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.idx");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = read(&fifo).unwrap_err().to_string();
        assert!(err.contains("fifo.idx: the IDX file is a FIFO, not a regular file"), "{err}");
        let err = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("is a device"), "{err}");
        // A sparse file: refused by its size, before a byte is read.
        let sparse = dir.join("sparse.idx");
        std::fs::File::create(&sparse).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = read(&sparse).unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
