//! MNIST, split as in the report: the 60000 training images for training;
//! the 10000 test images split into validation (odd indices) and test (even
//! indices), 5000 each. Pixels are scaled to [0, 1].

pub use super::Split;
use super::{idx, DataError, Dataset};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Digits 0-9.
pub const CLASSES: usize = 10;
/// Images are `SIDE x SIDE` pixels.
pub const SIDE: usize = 28;
/// Pixels per image: the width of a row of [`Split::images`].
pub const PIXELS: usize = SIDE * SIDE;

/// MNIST in the report's three splits (see the [module docs](self)); rows
/// of [`PIXELS`] values in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The 60000 training images.
    pub train: Split,
    /// The test file's odd-indexed images (5000).
    pub validation: Split,
    /// The test file's even-indexed images (5000).
    pub test: Split,
}

/// `root/name.gz` or `root/name`, whichever exists. Anything by that name
/// counts (a FIFO, a folder, a dangling link): reading it then says what is
/// wrong with it, rather than "not found".
fn find(root: &Path, name: &str) -> Result<PathBuf, DataError> {
    for candidate in [root.join(format!("{name}.gz")), root.join(name)] {
        if candidate.symlink_metadata().is_ok() {
            return Ok(candidate);
        }
    }
    Err(DataError::format(
        root.join(format!("{name}.gz")),
        format!("MNIST file not found (looked for {name}.gz and {name} in this folder)"),
    ))
}

/// Read one images + labels pair and check that they agree.
fn read_pair(root: &Path, images: &str, labels: &str) -> Result<Split, DataError> {
    let (ipath, lpath) = (find(root, images)?, find(root, labels)?);
    let img = idx::read(&ipath)?;
    let lab = idx::read(&lpath)?;
    if img.dims.len() != 3 || img.dims[1] != SIDE || img.dims[2] != SIDE {
        return Err(DataError::format(&ipath, format!("expected dimensions [n, 28, 28], found {:?}", img.dims)));
    }
    if lab.dims.len() != 1 {
        return Err(DataError::format(&lpath, format!("expected dimensions [n], found {:?}", lab.dims)));
    }
    if img.dims[0] == 0 {
        return Err(DataError::format(&ipath, "holds no images (dimensions [0, 28, 28])"));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::format(
            &lpath,
            format!("{} labels for {} images in {}", lab.dims[0], img.dims[0], ipath.display()),
        ));
    }
    if let Some(pos) = lab.data.iter().position(|&l| l as usize >= CLASSES) {
        return Err(DataError::format(&lpath, format!("label {} at index {pos} is not a digit 0-9", lab.data[pos])));
    }
    let pixels: Vec<f32> = img.data.iter().map(|&p| p as f32 / 255.0).collect();
    let images = Tensor::from_vec(pixels, &[img.dims[0], PIXELS]).expect("checked dimensions");
    Ok(Split { images, labels: lab.data.iter().map(|&l| l as usize).collect() })
}

impl Mnist {
    /// As a [`Dataset`] with class names "0" to "9".
    pub fn into_dataset(self) -> Dataset {
        Dataset {
            train: self.train,
            validation: self.validation,
            test: self.test,
            class_names: (0..CLASSES).map(|d| d.to_string()).collect(),
            channels: 1,
            side: SIDE,
            skipped: 0,
        }
    }
}

/// Load MNIST from `root` (holding the four IDX files, gzipped or not).
pub fn load(root: &Path) -> Result<Mnist, DataError> {
    if !root.is_dir() {
        return Err(DataError::format(root, "MNIST folder not found"));
    }
    let train = read_pair(root, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let t10k = read_pair(root, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if t10k.len() < 2 {
        // Validation takes the odd indices and test the even ones: both need one.
        let path = find(root, "t10k-images-idx3-ubyte")?;
        return Err(DataError::format(path, "holds 1 image; validation and test need at least 2"));
    }
    let odd: Vec<usize> = (1..t10k.len()).step_by(2).collect();
    let even: Vec<usize> = (0..t10k.len()).step_by(2).collect();
    Ok(Mnist { validation: t10k.select(&odd), test: t10k.select(&even), train })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_committed_files_with_the_reports_split() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
        let m = load(&root).unwrap();
        assert_eq!((m.train.len(), m.validation.len(), m.test.len()), (60000, 5000, 5000));
        assert_eq!(m.train.images.shape(), &[60000, 784]);
        // The well-known first labels: train 5 0 4 1, t10k 7 2 1 0 (so test
        // starts 7 1, validation 2 0).
        assert_eq!(&m.train.labels[..4], &[5, 0, 4, 1]);
        assert_eq!(&m.test.labels[..2], &[7, 1]);
        assert_eq!(&m.validation.labels[..2], &[2, 0]);
        let px = m.train.images.data();
        assert!(px.iter().all(|&p| (0.0..=1.0).contains(&p)) && px.contains(&1.0));
    }

    #[test]
    fn a_missing_folder_or_file_is_named() {
        let err = load(Path::new("no/such/dir")).unwrap_err().to_string();
        assert_eq!(err, "no/such/dir: MNIST folder not found");
        let dir = std::env::temp_dir().join(format!("nabla-mnist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte.gz: MNIST file not found"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
