//! Checkpoints of long training loops, so `nabla FILE --resume` continues an
//! interrupted run where it stopped and ends at the same weights, bit for bit.
//!
//! One file per training run (a sweep or a cross-validation trains several),
//! in a hidden folder beside the output folder (`.<out>.checkpoints/`): a
//! safetensors file holding the parameters (`param/<name>`), the optimiser's
//! state (`optim/<kind>/<name>`) and, in its metadata, the loop's own state
//! (iteration, random stream, data order, learning curve) as JSON with a
//! fingerprint of the settings. Each file is written to a temporary name and
//! renamed, so a kill leaves the previous checkpoint or the new one. The
//! folder is removed when the whole run has succeeded.

use crate::files;
use crate::nn::Params;
use crate::optim::State;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a run's checkpoints live and whether to resume from them.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub dir: PathBuf,
    pub resume: bool,
    /// Fingerprint of the whole pipeline's settings, once [`Checkpoints::open`] knows them.
    run: Option<String>,
}

/// A training loop's saved state: parameters, optimiser, and `L`, the loop's
/// own serialisable state.
pub struct Saved<L> {
    pub params: Params,
    pub optim: State,
    pub looped: L,
}

const META_KEY: &str = "nabla_checkpoint";
const FORMAT: u32 = 1;
/// The file in the folder that says which settings wrote it.
const MANIFEST: &str = "run.json";
/// The largest checkpoint read without a model to measure it by (AlexNet with
/// Adam's two moments is about 750 MB).
const CHECKPOINT_LIMIT: u64 = 2 << 30;
/// Room for the header and the loop's state beside the tensors (a data order
/// of 60000 indices is under 1 MB).
const META_ROOM: u64 = 64 << 20;

#[derive(Serialize, serde::Deserialize)]
struct Meta<L> {
    format: u32,
    fingerprint: String,
    optim_steps: u64,
    looped: L,
}

#[derive(Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    fingerprint: String,
}

impl Checkpoints {
    /// The checkpoint folder for the output folder `out`.
    pub fn beside(out: &Path, resume: bool) -> Checkpoints {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        Checkpoints { dir: parent.join(format!(".{name}.checkpoints")), resume, run: None }
    }

    /// Bind the folder to the run whose whole settings are `settings`. When
    /// resuming, checkpoints written with other settings are refused (the
    /// per-run files are named by their own settings, so a changed setting
    /// would otherwise find no file and silently start from zero). A fresh
    /// run starts over: it discards what an earlier run left.
    pub fn open(&mut self, settings: &impl Serialize) -> Result<(), String> {
        let fingerprint = fingerprint(settings);
        let manifest = self.dir.join(MANIFEST);
        let kind = std::fs::symlink_metadata(&self.dir).ok().map(|m| m.file_type());
        let present = kind.is_some();
        // Only a real folder can be ours to read back or write into: a planted
        // symlink would lead the checkpoints elsewhere.
        if self.resume && kind.is_some_and(|k| !k.is_dir()) {
            return Err(format!(
                "{}: is not a folder of checkpoints ({}); remove it, or run without --resume to start over",
                self.dir.display(),
                if kind.is_some_and(|k| k.is_symlink()) { "a symbolic link" } else { "not a folder" }
            ));
        }
        if !self.resume {
            if kind.is_some_and(|k| !k.is_dir()) {
                std::fs::remove_file(&self.dir).map_err(|e| {
                    format!("{}: cannot remove what is in the checkpoints' place: {e}", self.dir.display())
                })?;
            } else if present {
                std::fs::remove_dir_all(&self.dir).map_err(|e| {
                    format!("{}: cannot remove the checkpoints of an earlier run: {e}", self.dir.display())
                })?;
            }
        } else if !present {
            crate::say!("--resume: no checkpoints in {}; starting from the beginning", self.dir.display());
        } else if let Ok(m) = std::fs::symlink_metadata(&manifest) {
            if !m.is_file() {
                return Err(format!("{}: is not a regular file; remove it to start over", manifest.display()));
            }
            let text =
                files::read_text_capped(&manifest, 64 << 10).map_err(|e| format!("{}: {e}", manifest.display()))?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a checkpoint manifest: {e}", manifest.display()))?;
            if m.format != FORMAT || m.fingerprint != fingerprint {
                return Err(format!(
                    "{}: these checkpoints were written with other settings of the pipeline, so --resume cannot \
                     continue that run; restore the settings, or run without --resume to start over",
                    manifest.display()
                ));
            }
        } else if self.has_checkpoints() {
            return Err(format!(
                "{}: checkpoints without a {MANIFEST} saying which settings wrote them; run without --resume to start over",
                self.dir.display()
            ));
        }
        self.run = Some(fingerprint);
        Ok(())
    }

    fn has_checkpoints(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "safetensors"))))
            .unwrap_or(false)
    }

    /// The file of the run called `label` with these settings (both hashed
    /// into the name: runs of a pipeline differ in label or in settings).
    pub fn path(&self, label: &str, settings: &impl Serialize) -> PathBuf {
        let slug: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
        self.dir.join(format!("{slug}-{}.safetensors", &fingerprint(&(label, fingerprint(settings)))[..16]))
    }

    /// Save `state` for the run `label`; `settings` fingerprints what the run
    /// was asked to do, so a resume with other settings is refused.
    pub fn save<L: Serialize>(&self, label: &str, settings: &impl Serialize, state: &Saved<L>) -> Result<(), String> {
        let path = self.path(label, settings);
        let meta = Meta {
            format: FORMAT,
            fingerprint: fingerprint(settings),
            optim_steps: state.optim.steps,
            looped: &state.looped,
        };
        let meta = serde_json::to_string(&meta).map_err(|e| e.to_string())?;
        let mut all = Params::new();
        for (n, t) in state.params.iter() {
            all.insert(&format!("param/{n}"), t.clone());
        }
        for (n, t) in state.optim.tensors.iter() {
            all.insert(&format!("optim/{n}"), t.clone());
        }
        let bytes = all.to_safetensors_with(Some(HashMap::from([(META_KEY.to_string(), meta)])));
        if std::fs::symlink_metadata(&self.dir).is_ok_and(|m| !m.is_dir()) {
            return Err(format!("{}: is not a folder of checkpoints; not written through", self.dir.display()));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("{}: cannot create the checkpoint folder: {e}", self.dir.display()))?;
        if let Some(run) = &self.run {
            let manifest = self.dir.join(MANIFEST);
            if !manifest.is_file() {
                let m = serde_json::to_vec(&Manifest { format: FORMAT, fingerprint: run.clone() }).expect("serialises");
                write_staged(&manifest, |f| f.write_all(&m))?;
            }
        }
        write_staged(&path, |f| f.write_all(&bytes))
    }

    /// The saved state of the run `label`, when resuming and one exists,
    /// checked only for what the file itself must hold; prefer
    /// [`Checkpoints::load_checked`], which also checks it fits the run.
    /// (The tests' shorthand: runs load checked.)
    #[cfg(test)]
    pub fn load<L: DeserializeOwned>(
        &self,
        label: &str,
        settings: &impl Serialize,
    ) -> Result<Option<Saved<L>>, String> {
        self.load_checked(label, settings, None, |_: &L| Ok(()))
    }

    /// The saved state of the run `label`, when resuming and one exists. The
    /// file is untrusted: besides its format and settings, its tensors must be
    /// finite and, given the run's `fresh` parameters, have their names and
    /// shapes (the optimiser's too); `check` says what the loop's own state
    /// may hold (steps within the run, an order that is a permutation of the
    /// training set). Every error names the file.
    pub fn load_checked<L: DeserializeOwned>(
        &self,
        label: &str,
        settings: &impl Serialize,
        fresh: Option<&Params>,
        check: impl FnOnce(&L) -> Result<(), String>,
    ) -> Result<Option<Saved<L>>, String> {
        let path = self.path(label, settings);
        // Anything at the path (a folder, a FIFO) is an error, not "no checkpoint".
        let Some(kind) = std::fs::symlink_metadata(&path).ok().map(|m| m.file_type()).filter(|_| self.resume) else {
            return Ok(None);
        };
        let named = |e: String| format!("{}: {e}", path.display());
        if kind.is_symlink() {
            return Err(named("the checkpoint is a symbolic link, not a file a run wrote".into()));
        }
        // A checkpoint is the tensors and a little state: no larger.
        let limit = fresh.map_or(CHECKPOINT_LIMIT, |p| (p.numel() as u64).saturating_mul(12).saturating_add(META_ROOM));
        let bytes = files::read_capped(&path, limit).map_err(|e| named(format!("the checkpoint {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| named(format!("not a checkpoint (safetensors: {e})")))?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| named("not a nabla checkpoint".into()))?;
        let meta: Meta<L> =
            serde_json::from_str(meta).map_err(|e| named(format!("unreadable checkpoint state: {e}")))?;
        if meta.format != FORMAT {
            return Err(named(format!("checkpoint format {} is not {FORMAT}", meta.format)));
        }
        if meta.fingerprint != fingerprint(settings) {
            return Err(named("this checkpoint was written with other settings".into()));
        }
        // Adam raises its betas to the step count as an i32.
        if meta.optim_steps > i32::MAX as u64 {
            return Err(named(format!("optim_steps {} is out of range", meta.optim_steps)));
        }
        let tensors = crate::weights::parse(&bytes).map_err(|e| named(e.to_string()))?;
        let (mut params, mut optim) = (Params::new(), Params::new());
        for (n, t) in tensors.iter() {
            if let Some(bad) = t.data().iter().find(|v| !v.is_finite()) {
                return Err(named(format!("tensor '{n}' holds {bad}")));
            }
            if let Some(p) = n.strip_prefix("param/") {
                params.insert(p, t.clone());
            } else if let Some(o) = n.strip_prefix("optim/") {
                optim.insert(o, t.clone());
            } else {
                return Err(named(format!("unexpected tensor '{n}' (neither param/ nor optim/)")));
            }
        }
        if let Some(fresh) = fresh {
            fits(&params, &optim, fresh).map_err(named)?;
        }
        check(&meta.looped).map_err(|e| named(format!("loop state: {e}")))?;
        Ok(Some(Saved { params, optim: State { tensors: optim, steps: meta.optim_steps }, looped: meta.looped }))
    }
}

#[cfg(test)]
impl Checkpoints {
    /// Throw the checkpoints away (runs remove them with their outputs).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether saved parameters and optimiser tensors (`<kind>/<param>`) have the
/// names and shapes of the run's `fresh` parameters.
fn fits(params: &Params, optim: &Params, fresh: &Params) -> Result<(), String> {
    let mut problems = Vec::new();
    for (name, t) in fresh.iter() {
        match params.get(name) {
            Err(_) => problems.push(format!("missing tensor 'param/{name}'")),
            Ok(s) if s.shape() != t.shape() => {
                problems.push(format!("tensor 'param/{name}' has shape {:?}, expected {:?}", s.shape(), t.shape()))
            }
            Ok(_) => {}
        }
    }
    for (name, _) in params.iter().filter(|(n, _)| fresh.get(n).is_err()) {
        problems.push(format!("unexpected tensor 'param/{name}'"));
    }
    for (name, t) in optim.iter() {
        let of = name.split_once('/').map(|(_, p)| p).and_then(|p| fresh.get(p).ok());
        match of {
            None => problems.push(format!("tensor 'optim/{name}' belongs to no parameter")),
            Some(p) if p.shape() != t.shape() => {
                problems.push(format!("tensor 'optim/{name}' has shape {:?}, expected {:?}", t.shape(), p.shape()))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether `order` is a permutation of `0..n` (a saved data order).
pub fn check_permutation(order: &[usize], n: usize) -> Result<(), String> {
    if order.len() != n {
        return Err(format!("the data order has {} entries for {n} training examples", order.len()));
    }
    let mut seen = vec![false; n];
    for (at, &i) in order.iter().enumerate() {
        match seen.get_mut(i) {
            None => return Err(format!("the data order's entry {at} is {i}, past the {n} training examples")),
            Some(true) => return Err(format!("the data order repeats example {i}")),
            Some(s) => *s = true,
        }
    }
    Ok(())
}

/// Write `path` through a temporary file beside it, renamed into place, so a
/// kill leaves the old file or the new one; a failed write (a full disk)
/// removes the temporary file instead of leaving it to fill the disk.
pub(crate) fn write_staged(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), String> {
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    // A leftover, or a planted symlink, is removed, never written through.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: cannot write: {e}", tmp.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot move into place: {e}", path.display())
    })
}

/// SHA-256 of a value's JSON, in hex.
fn fingerprint(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).expect("settings serialise");
    Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    type Looped = (usize, Vec<u8>);

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nabla-ck-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn state(w: Tensor, m: Tensor) -> Saved<Looped> {
        let mut params = Params::new();
        params.insert("fc1.weight", w);
        let mut tensors = Params::new();
        tensors.insert("m/fc1.weight", m);
        Saved { params, optim: State { tensors, steps: 7 }, looped: (12, vec![3]) }
    }

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape).unwrap()
    }

    #[test]
    fn saves_and_loads_a_loop_state() {
        let dir = folder("roundtrip");
        let ck = Checkpoints::beside(&dir.join("out"), true);
        let state = state(t(&[1.0, -2.5], &[1, 2]), t(&[0.25, 0.5], &[1, 2]));
        ck.save("train, data seed 3", &"settings", &state).unwrap();
        let back: Saved<Looped> =
            ck.load_checked("train, data seed 3", &"settings", Some(&state.params), |_| Ok(())).unwrap().unwrap();
        assert_eq!((back.params, back.optim, back.looped), (state.params.clone(), state.optim.clone(), (12, vec![3])));
        // Another run, or not resuming: nothing to resume.
        assert!(ck.load::<Looped>("other", &"settings").unwrap().is_none());
        let fresh = Checkpoints { resume: false, ..ck.clone() };
        assert!(fresh.load::<Looped>("train, data seed 3", &"settings").unwrap().is_none());
        // A file under another run's name (copied, renamed) is refused by its
        // own fingerprint, not loaded as that run's state.
        std::fs::copy(ck.path("train, data seed 3", &"settings"), ck.path("train, data seed 3", &"changed")).unwrap();
        let err = ck.load::<Looped>("train, data seed 3", &"changed").err().unwrap();
        assert!(err.contains("written with other settings"), "{err}");
        ck.remove();
        assert!(!ck.dir.exists());
    }

    #[test]
    fn a_resume_with_other_settings_is_refused_and_a_fresh_run_starts_over() {
        let dir = folder("settings");
        let mut first = Checkpoints::beside(&dir.join("out"), false);
        first.open(&("pipeline", 1)).unwrap();
        first.save("train", &"run", &state(t(&[1.0], &[1, 1]), t(&[0.0], &[1, 1]))).unwrap();
        let mut resumed = Checkpoints::beside(&dir.join("out"), true);
        let err = resumed.open(&("pipeline", 2)).unwrap_err();
        assert!(err.contains("run.json") && err.contains("other settings"), "{err}");
        resumed.open(&("pipeline", 1)).unwrap();
        assert!(resumed.load::<Looped>("train", &"run").unwrap().is_some());
        // Checkpoints with no manifest cannot be vouched for.
        std::fs::remove_file(first.dir.join(MANIFEST)).unwrap();
        let err = resumed.open(&("pipeline", 1)).unwrap_err();
        assert!(err.contains("without a run.json"), "{err}");
        // A run without --resume discards them.
        let mut again = Checkpoints::beside(&dir.join("out"), false);
        again.open(&("pipeline", 2)).unwrap();
        assert!(!again.dir.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_the_run_is_refused_naming_the_file() {
        let dir = folder("lies");
        let ck = Checkpoints::beside(&dir.join("out"), true);
        let good = state(t(&[1.0, 2.0], &[1, 2]), t(&[0.0, 0.0], &[1, 2]));
        let fresh = good.params.clone();
        let refused = |saved: Saved<Looped>, check: fn(&Looped) -> Result<(), String>, expect: &str| {
            ck.save("train", &"s", &saved).unwrap();
            let err = ck.load_checked::<Looped>("train", &"s", Some(&fresh), check).err().unwrap();
            assert!(err.contains(".safetensors: ") && err.contains(expect), "{expect}: {err}");
        };
        refused(
            state(t(&[1.0, 2.0], &[2, 1]), t(&[0.0; 2], &[1, 2])),
            |_| Ok(()),
            "'param/fc1.weight' has shape [2, 1]",
        );
        refused(state(t(&[1.0, 2.0], &[1, 2]), t(&[0.0; 3], &[3])), |_| Ok(()), "'optim/m/fc1.weight' has shape [3]");
        refused(state(t(&[1.0, f32::NAN], &[1, 2]), t(&[0.0; 2], &[1, 2])), |_| Ok(()), "holds NaN");
        let mut extra = state(t(&[1.0, 2.0], &[1, 2]), t(&[0.0; 2], &[1, 2]));
        extra.params.insert("fc9.bias", t(&[1.0], &[1]));
        refused(extra, |_| Ok(()), "unexpected tensor 'param/fc9.bias'");
        let mut stray = state(t(&[1.0, 2.0], &[1, 2]), t(&[0.0; 2], &[1, 2]));
        stray.optim.tensors.insert("m/fc9.bias", t(&[1.0], &[1]));
        refused(stray, |_| Ok(()), "'optim/m/fc9.bias' belongs to no parameter");
        let mut steps = state(t(&[1.0, 2.0], &[1, 2]), t(&[0.0; 2], &[1, 2]));
        steps.optim.steps = u64::MAX;
        refused(steps, |_| Ok(()), "optim_steps 18446744073709551615 is out of range");
        refused(good, |l| if l.0 > 10 { Err(format!("step {} past the end", l.0)) } else { Ok(()) }, "step 12 past");
        // Not a regular file, or larger than the run's tensors can make it.
        let path = ck.path("train", &"s");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = ck.load::<Looped>("train", &"s").err().unwrap();
        assert!(err.contains("is a folder"), "{err}");
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, vec![0u8; (META_ROOM + 100) as usize]).unwrap();
        let err = ck.load_checked::<Looped>("train", &"s", Some(&fresh), |_| Ok(())).err().unwrap();
        assert!(err.contains("more than the"), "{err}");
        ck.remove();
    }

    #[test]
    fn a_failed_write_leaves_no_partial_file() {
        let dir = folder("full");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        // The disk fills half-way through the file.
        let err = write_staged(&path, |f| {
            f.write_all(&[1u8; 4096])?;
            Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"))
        })
        .unwrap_err();
        assert!(err.contains("no space left"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "left files behind");
        // A rename that fails (a folder in the way) cleans up too.
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(write_staged(&path, |f| f.write_all(b"x")).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        write_staged(&dir.join("ok"), |f| f.write_all(b"x")).unwrap();
        assert_eq!(std::fs::read(dir.join("ok")).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn orders_must_be_permutations_of_the_training_set() {
        check_permutation(&[2, 0, 1], 3).unwrap();
        check_permutation(&[], 0).unwrap();
        assert!(check_permutation(&[0, 1], 3).unwrap_err().contains("2 entries for 3"));
        assert!(check_permutation(&[0, 1, 7], 3).unwrap_err().contains("entry 2 is 7"));
        assert!(check_permutation(&[0, 1, usize::MAX], 3).unwrap_err().contains("past the 3"));
        assert!(check_permutation(&[1, 1, 0], 3).unwrap_err().contains("repeats example 1"));
    }
}
