//! `nabla fetch facescrub`: the report's download step (`get_data.py`).
//!
//! Reads a FaceScrub list (tab-separated: name, image id, face id, URL,
//! bounding box `x1,y1,x2,y2`, SHA-256), and for each entry of the chosen
//! actors downloads the image with a timeout, checks its SHA-256, crops the
//! box, converts to grayscale or RGB, resizes to `size x size` and saves
//! `<surname><n>.png`, n counting that actor's entries in list order, so a
//! second run finds the same names and skips what is already there. Failures
//! are logged with their reason and counted; a few workers fetch at once.
//!
//! Everything in the list is untrusted: the surname that names the files is
//! reduced to letters (so `./../` cannot climb out of `--out`), the list is
//! read with a ceiling, downloads are capped and decoded with the same image
//! size limits as `data/faces.rs`, and files are written only as new files.

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Images larger than this are refused (no unbounded downloads).
const MAX_BYTES: u64 = 32 << 20;

/// The largest list we read (FaceScrub's two lists are a few MB each).
pub const LIST_LIMIT: u64 = 64 << 20;

/// The longest surname (it names files).
const MAX_SURNAME: usize = 64;

/// The most a decoded image may allocate (a 8192 x 8192 RGBA is 256 MiB).
const MAX_DECODED: u64 = 256 << 20;

/// What `nabla fetch facescrub` does: which list, which actors, where to,
/// how large.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The FaceScrub list file (actors or actresses).
    pub list: PathBuf,
    /// Surnames, lower case (e.g. "baldwin"); empty = every actor in the list.
    pub actors: Vec<String>,
    /// The folder the crops are saved in.
    pub out: PathBuf,
    /// Side of the square crops, in pixels.
    pub size: u32,
    /// Save grayscale (else RGB).
    pub gray: bool,
    /// The longest one download may take.
    pub timeout: Duration,
    /// Downloads at once (clamped to 1..=32).
    pub jobs: usize,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
}

/// One line of the list.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The actor's surname, lower case.
    pub surname: String,
    /// Where the image was.
    pub url: String,
    /// The face box, `x1, y1, x2, y2`.
    pub bbox: [u32; 4],
    /// The image file's SHA-256, hex.
    pub sha256: String,
    /// The file this entry is saved as.
    pub file: String,
}

/// What a fetch did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Images downloaded and saved.
    pub fetched: usize,
    /// Entries skipped because their file was there.
    pub already_present: usize,
    /// (file, url, reason)
    pub failed: Vec<(String, String, String)>,
}

/// Parse the list, keeping the actors asked for, naming each entry's file.
/// A bad line is an [`Error::File`] naming the list, around an
/// [`Error::Format`] whose key is the line (`l.txt: line 3: bad bounding box`).
pub fn parse_list(path: &Path, text: &str, actors: &[String]) -> crate::Result<Vec<Entry>> {
    let mut counters: BTreeMap<String, usize> = BTreeMap::new();
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with("name\t") {
            continue;
        }
        let at = |message: String| Error::file(path, Error::Format { key: Some(format!("line {}", n + 1)), message });
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 6 {
            return Err(at(format!("expected 6 tab-separated fields, found {}", fields.len())));
        }
        let surname = surname(fields[0]).map_err(at)?;
        if !actors.is_empty() && !actors.contains(&surname) {
            continue;
        }
        let bbox: Vec<u32> = fields[4]
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| at(format!("bad bounding box '{}'", fields[4])))?;
        let bbox: [u32; 4] =
            bbox.try_into().map_err(|_| at(format!("bounding box '{}' needs 4 numbers", fields[4])))?;
        if bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
            return Err(at(format!("empty bounding box '{}'", fields[4])));
        }
        let sha = fields[5].trim().to_ascii_lowercase();
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(at(format!("'{}' is not a SHA-256 (64 hex digits)", fields[5].trim())));
        }
        let count = counters.entry(surname.clone()).or_default();
        let file = format!("{surname}{count}.png");
        *count += 1;
        entries.push(Entry { surname, url: fields[3].trim().to_string(), bbox, sha256: sha, file });
    }
    Ok(entries)
}

/// The file-name prefix of an actor: the last word of the name field, lower
/// case, keeping letters, `-` and `'` only (no `.`, `/`, digits, controls:
/// the name stays in the folder, and `data/faces.rs` reads the digits after
/// it as the image's number).
fn surname(field: &str) -> Result<String, String> {
    let last = field.split_whitespace().last().unwrap_or("");
    let kept: String = last.chars().filter(|c| c.is_alphabetic() || *c == '-' || *c == '\'').collect();
    let kept = kept.trim_start_matches('-').to_ascii_lowercase();
    if kept.is_empty() {
        return Err(format!("name '{}' has no letters to name its files by", field.escape_debug()));
    }
    if kept.chars().count() > MAX_SURNAME {
        return Err(format!("surname '{kept}' is longer than {MAX_SURNAME} characters"));
    }
    Ok(kept)
}

/// Decode downloaded bytes, refusing sizes `data/faces.rs` refuses, before
/// the decoder allocates the pixels.
fn decode(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let bad = |e: image::ImageError| format!("cannot decode the image: {e}");
    let mut reader =
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.into()))?;
    let mut limits = image::io::Limits::default();
    limits.max_image_width = Some(crate::data::faces::MAX_IMAGE_SIDE);
    limits.max_image_height = Some(crate::data::faces::MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODED);
    reader.limits(limits);
    reader.decode().map_err(bad)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Download, check, crop, convert, resize and save one entry.
fn fetch_one(agent: &ureq::Agent, e: &Entry, opts: &FetchOptions) -> Result<(), String> {
    let mut response = agent.get(&e.url).call().map_err(|err| format!("download failed: {err}"))?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("download interrupted: {err}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {} MiB", MAX_BYTES >> 20));
    }
    let got = hex(&Sha256::digest(&bytes));
    if got != e.sha256 {
        return Err(format!("SHA-256 mismatch: got {got}"));
    }
    let img = decode(&bytes)?;
    let [x1, y1, x2, y2] = e.bbox;
    if x2 > img.width() || y2 > img.height() {
        return Err(format!(
            "bounding box {x1},{y1},{x2},{y2} lies outside the {}x{} image",
            img.width(),
            img.height()
        ));
    }
    let face = img.crop_imm(x1, y1, x2 - x1, y2 - y1).resize_exact(
        opts.size,
        opts.size,
        image::imageops::FilterType::Triangle,
    );
    let face = if opts.gray {
        image::DynamicImage::ImageLuma8(face.to_luma8())
    } else {
        image::DynamicImage::ImageRgb8(face.to_rgb8())
    };
    let mut png = std::io::Cursor::new(Vec::new());
    face.write_to(&mut png, image::ImageOutputFormat::Png).map_err(|err| format!("cannot encode the PNG: {err}"))?;
    // Write beside the target and rename, so a killed run leaves no half file;
    // as a new file, so never through a symlink someone left at that name.
    let target = opts.out.join(&e.file);
    let temp = opts.out.join(format!(".{}.partial", e.file));
    if std::fs::symlink_metadata(&temp).is_ok_and(|m| !m.is_dir()) {
        let _ = std::fs::remove_file(&temp);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|err| format!("cannot write {}: {err}", temp.display()))?;
    let written = std::io::Write::write_all(&mut file, png.get_ref()).and_then(|()| std::fs::rename(&temp, &target));
    written.map_err(|err| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {err}", target.display())
    })
}

/// Fetch every listed entry of the chosen actors into `opts.out`. An entry
/// that fails is skipped and listed in the summary; the error is for the
/// list or the folder.
pub fn fetch(opts: &FetchOptions) -> crate::Result<Summary> {
    let text = crate::files::read_text_capped(&opts.list, LIST_LIMIT)
        .map_err(|e| e.at(&opts.list, "cannot read the list: it"))?;
    let entries = parse_list(&opts.list, &text, &opts.actors)?;
    if entries.is_empty() {
        return Err(Error::file(&opts.list, format!("no entries for actors {:?}", opts.actors)));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::file(&opts.out, format!("cannot create the folder: {e}")))?;
    let todo: Vec<&Entry> = entries.iter().filter(|e| !opts.out.join(&e.file).is_file()).collect();
    let summary = Mutex::new(Summary { already_present: entries.len() - todo.len(), ..Summary::default() });
    let config = ureq::Agent::config_builder().timeout_global(Some(opts.timeout)).http_status_as_error(true).build();
    let agent: ureq::Agent = config.into();
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(todo.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 32).min(todo.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = todo.get(i) else { break };
                let result = fetch_one(&agent, e, opts);
                let mut sum = summary.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(()) => sum.fetched += 1,
                    Err(reason) => {
                        bar.suspend(|| crate::say!("skipped {} ({}): {reason}", e.file, e.url));
                        sum.failed.push((e.file.clone(), e.url.clone(), reason));
                    }
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.failed.sort();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_name_files_and_reject_bad_fields() {
        let sha = "a".repeat(64);
        let text = format!("Alec Baldwin\t1\t2\thttp://x/a.jpg\t1,2,30,40\t{sha}\nLorraine Bracco\t1\t2\thttp://x/b.jpg\t0,0,9,9\t{sha}\nAlec Baldwin\t3\t4\thttp://x/c.jpg\t1,2,30,40\t{sha}\n");
        let p = Path::new("l.txt");
        let all = parse_list(p, &text, &[]).unwrap();
        assert_eq!(
            all.iter().map(|e| e.file.as_str()).collect::<Vec<_>>(),
            ["baldwin0.png", "bracco0.png", "baldwin1.png"]
        );
        let some = parse_list(p, &text, &["bracco".into()]).unwrap();
        assert_eq!(some.len(), 1);
        let err = parse_list(p, "Alec Baldwin\t1\t2\thttp://x\t1,2,3\tabc\n", &[]).unwrap_err().to_string();
        assert_eq!(err, "l.txt: line 1: bounding box '1,2,3' needs 4 numbers");
        let err = parse_list(p, &format!("A B\t1\t2\thttp://x\t5,5,1,1\t{sha}\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("empty bounding box"), "{err}");
        assert!(parse_list(p, "A B\t1\t2\thttp://x\t1,1,5,5\tnothex\n", &[])
            .unwrap_err()
            .to_string()
            .contains("not a SHA-256"));
        assert!(parse_list(p, "just one field\n", &[])
            .unwrap_err()
            .to_string()
            .contains("expected 6 tab-separated fields"));
    }

    #[test]
    fn surnames_from_the_list_stay_inside_the_folder() {
        let sha = "a".repeat(64);
        let line = |name: &str| format!("{name}\t1\t2\thttp://x/a.jpg\t1,2,30,40\t{sha}\n");
        let p = Path::new("l.txt");
        for (name, file) in [
            ("Alec ../../etc/Baldwin", "etcbaldwin0.png"),
            ("Rosie O'Donnell", "o'donnell0.png"),
            ("Catherine Zeta-Jones", "zeta-jones0.png"),
            ("Agent Smith2", "smith0.png"),
            ("X -.-rm", "rm0.png"),
        ] {
            assert_eq!(parse_list(p, &line(name), &[]).unwrap()[0].file, file, "{name}");
        }
        for name in ["./../", "..", "A /", "A 12", ""] {
            let e = parse_list(p, &line(name), &[]).unwrap_err().to_string();
            assert!(e.starts_with("l.txt: line 1: name '") && e.contains("no letters"), "{name:?}: {e}");
        }
        let e = parse_list(p, &line(&"a".repeat(65)), &[]).unwrap_err().to_string();
        assert!(e.contains("longer than 64"), "{e}");
    }

    #[test]
    fn decoding_refuses_what_data_faces_refuses() {
        // A PNG whose header claims 9000 x 9000 (checksum fixed): within the
        // decoder's default budget, beyond the face loader's side limit.
        let img = image::GrayImage::from_pixel(4, 4, image::Luma([9]));
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(img).write_to(&mut png, image::ImageOutputFormat::Png).unwrap();
        let mut png = png.into_inner();
        assert!(decode(&png).is_ok());
        png[16..20].copy_from_slice(&9000u32.to_be_bytes());
        png[20..24].copy_from_slice(&9000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let e = decode(&png).unwrap_err();
        assert!(e.contains("cannot decode the image") && e.to_lowercase().contains("limit"), "{e}");
    }
}
