//! An image-folder data set of faces (the report's parts 8-10): files named
//! `<actor><n>.<ext>` (JPEG or PNG, grayscale, RGB or RGBA), decoded,
//! converted to grayscale or RGB, resized only if not already the expected
//! size, scaled by a factor (1/255 puts pixels in [0, 1]), and split per
//! actor as the report did: shuffle each actor's files with the data seed,
//! then take `train`, then `test`, then (up to, or exactly) `validation`.

use super::DataError;
use crate::tensor::{Rng, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How pixels are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// One channel: luma.
    Gray,
    /// Three channels, stored channels-first (CHW).
    Rgb,
}

/// What to do with a file that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBadImage {
    /// Stop and name the file.
    Fail,
    /// Leave it out and count it (see [`Faces::skipped`]).
    Skip,
}

/// Images of one split, `[n, channels * side * side]` (CHW for RGB), and
/// the index of each image's actor.
#[derive(Clone, Debug)]
pub struct FaceSplit {
    /// One image per row, `[n, channels * side * side]`.
    pub images: Tensor,
    /// Each image's actor, an index into [`Faces::actors`].
    pub labels: Vec<usize>,
    /// Each image's file.
    pub files: Vec<PathBuf>,
}

impl FaceSplit {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How many files of each actor go to each split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitSpec {
    /// Training files per actor.
    pub train: usize,
    /// Per-actor training counts that differ from `train` (gilpin: 37).
    pub train_for: BTreeMap<String, usize>,
    /// Test files per actor.
    pub test: usize,
    /// Validation files per actor (at most, unless `validation_exact`).
    pub validation: usize,
    /// Validation takes exactly `validation` files (else up to it).
    pub validation_exact: bool,
}

/// The faces data set, split per actor (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Faces {
    /// The actors, in label order.
    pub actors: Vec<String>,
    /// Training images.
    pub train: FaceSplit,
    /// Validation images.
    pub validation: FaceSplit,
    /// Test images.
    pub test: FaceSplit,
    /// Files skipped because they could not be decoded (with `OnBadImage::Skip`).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Faces {
    /// As a [`Dataset`](super::Dataset) whose images are `side x side` in
    /// `color`.
    pub fn into_dataset(self, side: usize, color: Color) -> super::Dataset {
        let split = |s: FaceSplit| super::Split { images: s.images, labels: s.labels };
        super::Dataset {
            train: split(self.train),
            validation: split(self.validation),
            test: split(self.test),
            class_names: self.actors,
            channels: if color == Color::Gray { 1 } else { 3 },
            side,
            skipped: self.skipped.len(),
        }
    }
}

/// `baldwin12.jpg` -> ("baldwin", 12).
fn parse_name(path: &Path) -> Option<(String, u64)> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if !["jpg", "jpeg", "png"].contains(&ext.as_str()) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let digits = stem.trim_start_matches(|c: char| !c.is_ascii_digit());
    let actor = &stem[..stem.len() - digits.len()];
    if actor.is_empty() || digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((actor.to_ascii_lowercase(), digits.parse().ok()?))
}

/// Every actor's image files in `dir`, in numeric order. Entries are only
/// listed here, never opened: one that is not a regular file (a FIFO, a
/// device, a folder) is refused by [`read_image`], with its name.
pub fn list(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut by_actor: BTreeMap<String, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if let Some((actor, n)) = parse_name(&path) {
            by_actor.entry(actor).or_default().push((n, path));
        }
    }
    Ok(by_actor
        .into_iter()
        .map(|(a, mut files)| {
            files.sort();
            (a, files.into_iter().map(|(_, p)| p).collect())
        })
        .collect())
}

/// Decode one image to `side x side` values per channel, scaled by `scale`.
/// Only a regular file of at most [`MAX_IMAGE_FILE_BYTES`] is opened, so a
/// FIFO cannot block the run and `/dev/zero` or a sparse file is not read.
pub fn read_image(path: &Path, side: usize, color: Color, scale: f32) -> Result<Vec<f32>, DataError> {
    let bytes = crate::files::read_capped(path, MAX_IMAGE_FILE_BYTES).map_err(|e| e.at(path, "the image"))?;
    decode_image(path, &bytes, side, color, scale)
}

/// The largest width or height an image file may declare.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// The largest image file read: an 8192 x 8192 RGBA image stored without
/// compression, plus 8 MiB for the container's other chunks. The decoder
/// refuses anything needing more than 256 MiB anyway.
pub const MAX_IMAGE_FILE_BYTES: u64 = (MAX_IMAGE_SIDE as u64 * MAX_IMAGE_SIDE as u64 * 4) + (8 << 20);

/// Decode image bytes (`path` only names them in errors); see [`read_image`].
pub fn decode_image(path: &Path, bytes: &[u8], side: usize, color: Color, scale: f32) -> Result<Vec<f32>, DataError> {
    let bad = |e: image::ImageError| DataError::format(path, format!("cannot decode the image: {e}"));
    let mut reader =
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.into()))?;
    // A header may claim any size; a crop never needs more than this, and the
    // decoder checks the claim before it allocates.
    let mut limits = image::io::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(bad)?;
    let img = if img.width() as usize != side || img.height() as usize != side {
        img.resize_exact(side as u32, side as u32, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    Ok(match color {
        Color::Gray => img.to_luma8().into_raw().into_iter().map(|p| p as f32 * scale).collect(),
        Color::Rgb => {
            // Channels first (CHW), as PyTorch's convolutions expect.
            let rgb = img.to_rgb8().into_raw();
            (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).map(|&p| p as f32 * scale).collect::<Vec<_>>()).collect()
        }
    })
}

/// Load the actors' images from `dir` and split them.
#[allow(clippy::too_many_arguments)]
pub fn load(
    dir: &Path,
    actors: &[String],
    side: usize,
    color: Color,
    scale: f32,
    split: &SplitSpec,
    seed: u64,
    on_bad: OnBadImage,
) -> Result<Faces, DataError> {
    if !dir.is_dir() {
        return Err(DataError::format(dir, "face image folder not found"));
    }
    let all = list(dir)?;
    let channels = if color == Color::Gray { 1 } else { 3 };
    let mut parts: [(Vec<f32>, Vec<usize>, Vec<PathBuf>); 3] = Default::default();
    let mut skipped = Vec::new();
    for (label, actor) in actors.iter().enumerate() {
        let files = all.get(actor).ok_or_else(|| {
            DataError::format(dir, format!("no images of actor '{actor}' (files named {actor}<n>.jpg)"))
        })?;
        // Decode first, so that skipped files do not leave holes in a split.
        let mut good = Vec::new();
        for f in files {
            match read_image(f, side, color, scale) {
                Ok(px) => good.push((f.clone(), px)),
                Err(e) if on_bad == OnBadImage::Skip => skipped.push((f.clone(), e.to_string())),
                Err(e) => return Err(e),
            }
        }
        let mut rng = Rng::new(seed ^ (label as u64).wrapping_mul(0x9E37_79B9));
        rng.shuffle(&mut good);
        let train = *split.train_for.get(actor).unwrap_or(&split.train);
        let need = train + split.test + if split.validation_exact { split.validation } else { 0 };
        if good.len() < need {
            return Err(DataError::format(
                dir,
                format!(
                    "actor '{actor}' has {} usable images, but the split needs {train} train + {} test{}",
                    good.len(),
                    split.test,
                    if split.validation_exact {
                        format!(" + exactly {} validation", split.validation)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        let validation = split.validation.min(good.len() - train - split.test);
        let bounds = [(0, train), (train + split.test, train + split.test + validation), (train, train + split.test)];
        for (part, (lo, hi)) in parts.iter_mut().zip(bounds) {
            for (f, px) in &good[lo..hi] {
                part.0.extend_from_slice(px);
                part.1.push(label);
                part.2.push(f.clone());
            }
        }
    }
    let width = channels * side * side;
    let make = |(px, labels, files): (Vec<f32>, Vec<usize>, Vec<PathBuf>)| FaceSplit {
        images: Tensor::from_vec(px, &[labels.len(), width]).expect("rows of one image each"),
        labels,
        files,
    };
    let [train, validation, test] = parts;
    Ok(Faces { actors: actors.to_vec(), train: make(train), validation: make(validation), test: make(test), skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(train: usize) -> SplitSpec {
        SplitSpec { train, train_for: BTreeMap::new(), test: 2, validation: 3, validation_exact: false }
    }

    /// A folder of generated images: gray JPEG, RGB PNG, RGBA PNG of other sizes.
    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nabla-faces-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..8u8 {
            image::GrayImage::from_pixel(32, 32, image::Luma([i * 30]))
                .save(dir.join(format!("alpha{i}.jpg")))
                .unwrap();
            image::RgbImage::from_pixel(40, 40, image::Rgb([255, i, 0]))
                .save(dir.join(format!("beta{i}.png")))
                .unwrap();
        }
        image::RgbaImage::from_pixel(64, 64, image::Rgba([10, 20, 30, 255])).save(dir.join("beta8.png")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        dir
    }

    #[test]
    fn splits_per_actor_without_overlap() {
        let dir = folder("split");
        let actors = vec!["alpha".to_string(), "beta".to_string()];
        let f = load(&dir, &actors, 32, Color::Gray, 1.0 / 255.0, &spec(4), 1, OnBadImage::Fail).unwrap();
        assert_eq!((f.train.len(), f.test.len()), (8, 4));
        // alpha has 8 files: 4 train, 2 test, 2 validation (up to 3); beta 9: 3.
        assert_eq!(f.validation.len(), 5);
        let mut all: Vec<&PathBuf> = f.train.files.iter().chain(&f.test.files).chain(&f.validation.files).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 17);
        assert!(f.train.images.data().iter().all(|&p| (0.0..=1.0).contains(&p)));
        // Another seed, another split; the same seed, the same split.
        let again = load(&dir, &actors, 32, Color::Gray, 1.0 / 255.0, &spec(4), 1, OnBadImage::Fail).unwrap();
        assert_eq!(again.train.files, f.train.files);
        let other = load(&dir, &actors, 32, Color::Gray, 1.0 / 255.0, &spec(4), 2, OnBadImage::Fail).unwrap();
        assert_ne!(other.train.files, f.train.files);
        // RGB, resized, channels first.
        let rgb = load(&dir, &actors[1..], 16, Color::Rgb, 1.0, &spec(4), 1, OnBadImage::Fail).unwrap();
        assert_eq!(rgb.train.images.shape(), &[4, 3 * 16 * 16]);
    }

    #[test]
    fn impossible_splits_and_bad_files_are_named() {
        let dir = folder("bad");
        let actors = vec!["alpha".to_string()];
        let exact = SplitSpec { validation_exact: true, ..spec(4) };
        let err = load(&dir, &actors, 32, Color::Gray, 1.0, &exact, 1, OnBadImage::Fail).unwrap_err().to_string();
        assert!(
            err.contains(
                "actor 'alpha' has 8 usable images, but the split needs 4 train + 2 test + exactly 3 validation"
            ),
            "{err}"
        );
        let err = load(&dir, &["gamma".to_string()], 32, Color::Gray, 1.0, &spec(1), 1, OnBadImage::Fail)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no images of actor 'gamma'"), "{err}");
        std::fs::write(dir.join("alpha9.jpg"), b"").unwrap();
        let err = load(&dir, &actors, 32, Color::Gray, 1.0, &spec(4), 1, OnBadImage::Fail).unwrap_err().to_string();
        assert!(err.contains("alpha9.jpg: cannot decode the image"), "{err}");
        let f = load(&dir, &actors, 32, Color::Gray, 1.0, &spec(4), 1, OnBadImage::Skip).unwrap();
        assert_eq!(f.skipped.len(), 1);
    }

    #[test]
    fn the_shared_crops_load_with_the_reports_split() {
        let Some(dir) =
            crate::data::shared_data_or_skip("facescrub/cropped32", "the_shared_crops_load_with_the_reports_split")
        else {
            return;
        };
        let actors: Vec<String> =
            ["hader", "carell", "baldwin", "harmon", "bracco", "gilpin"].map(String::from).to_vec();
        let split = SplitSpec {
            train: 70,
            train_for: [("gilpin".to_string(), 37)].into(),
            test: 10,
            validation: 20,
            validation_exact: false,
        };
        let f = load(&dir, &actors, 32, Color::Gray, 1.0 / 255.0, &split, 0, OnBadImage::Fail).unwrap();
        assert_eq!(f.train.len(), 5 * 70 + 37);
        assert_eq!(f.test.len(), 60);
        // Up to 20 each: harmon (97 crops) keeps 17, bracco (91) 11, gilpin (58 - 37 - 10) 11.
        assert_eq!(f.validation.len(), 3 * 20 + 17 + 11 + 11);
        assert_eq!(f.train.images.shape()[1], 1024);
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;

    #[test]
    fn special_files_in_the_folder_are_refused_by_name_without_opening_them() {
        let dir = std::env::temp_dir().join(format!("nabla-faces-special-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut png = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(4, 4).write_to(&mut png, image::ImageOutputFormat::Png).unwrap();
        for i in 0..3 {
            std::fs::write(dir.join(format!("aa{i}.png")), png.get_ref()).unwrap();
        }
        let actors = ["aa".to_string()];
        let spec = SplitSpec { train: 1, train_for: BTreeMap::new(), test: 1, validation: 1, validation_exact: false };
        // Each is tried alone, on a thread with a deadline: a FIFO opened for
        // reading would block forever.
        type Make<'a> = &'a dyn Fn(&Path);
        let special: [(&str, Make); 4] = [
            ("FIFO", &|p| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success())),
            ("device", &|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
            ("folder", &|p| std::fs::create_dir(p).unwrap()),
            ("more than the", &|p| std::fs::File::create(p).unwrap().set_len(MAX_IMAGE_FILE_BYTES + 1).unwrap()),
        ];
        for (what, make) in special {
            let path = dir.join("aa9.png");
            make(&path);
            let (d, a, s) = (dir.clone(), actors.clone(), spec.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(load(&d, &a, 4, Color::Gray, 1.0, &s, 0, OnBadImage::Fail).map(drop));
            });
            let err = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the load returns").unwrap_err();
            assert!(
                err.to_string().contains(&format!("aa9.png: the image is a {what}")) || err.to_string().contains(what),
                "{err}"
            );
            assert!(err.to_string().contains("aa9.png"), "{err}");
            let f = load(&dir, &actors, 4, Color::Gray, 1.0, &spec, 0, OnBadImage::Skip).unwrap();
            assert_eq!(f.skipped.len(), 1, "{what}");
            let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir(&path));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
