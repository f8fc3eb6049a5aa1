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

use crate::nn::Params;
use crate::optim::State;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a run's checkpoints live and whether to resume from them.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub dir: PathBuf,
    pub resume: bool,
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

#[derive(Serialize, serde::Deserialize)]
struct Meta<L> {
    format: u32,
    fingerprint: String,
    optim_steps: u64,
    looped: L,
}

impl Checkpoints {
    /// The checkpoint folder for the output folder `out`.
    pub fn beside(out: &Path, resume: bool) -> Checkpoints {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        Checkpoints { dir: parent.join(format!(".{name}.checkpoints")), resume }
    }

    /// The file of the run called `label` with these settings (both hashed
    /// into the name: the trials of a pipeline share labels, not settings).
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
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("{}: cannot create the checkpoint folder: {e}", self.dir.display()))?;
        let tmp = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| format!("{}: cannot write the checkpoint: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: cannot move the checkpoint: {e}", path.display()))
    }

    /// The saved state of the run `label`, when resuming and one exists.
    pub fn load<L: DeserializeOwned>(
        &self,
        label: &str,
        settings: &impl Serialize,
    ) -> Result<Option<Saved<L>>, String> {
        let path = self.path(label, settings);
        if !self.resume || !path.is_file() {
            return Ok(None);
        }
        let named = |e: String| format!("{}: {e}", path.display());
        let bytes = std::fs::read(&path).map_err(|e| named(format!("cannot read the checkpoint: {e}")))?;
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
        let tensors = crate::weights::parse(&bytes).map_err(named)?;
        let (mut params, mut optim) = (Params::new(), Params::new());
        for (n, t) in tensors.iter() {
            if let Some(p) = n.strip_prefix("param/") {
                params.insert(p, t.clone());
            } else if let Some(o) = n.strip_prefix("optim/") {
                optim.insert(o, t.clone());
            }
        }
        Ok(Some(Saved { params, optim: State { tensors: optim, steps: meta.optim_steps }, looped: meta.looped }))
    }

    /// Throw the checkpoints away (the run they belong to has finished).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

    #[test]
    fn saves_and_loads_a_loop_state() {
        let dir = std::env::temp_dir().join(format!("nabla-ck-{}", std::process::id()));
        let ck = Checkpoints::beside(&dir.join("out"), true);
        let mut params = Params::new();
        params.insert("fc1.weight", Tensor::from_vec(vec![1.0, -2.5], &[1, 2]).unwrap());
        let mut tensors = Params::new();
        tensors.insert("m/fc1.weight", Tensor::from_vec(vec![0.25, 0.5], &[1, 2]).unwrap());
        let state = Saved { params: params.clone(), optim: State { tensors, steps: 7 }, looped: (12usize, vec![3u8]) };
        ck.save("train, data seed 3", &"settings", &state).unwrap();
        let back: Saved<(usize, Vec<u8>)> = ck.load("train, data seed 3", &"settings").unwrap().unwrap();
        assert_eq!((back.params, back.optim, back.looped), (params, state.optim.clone(), (12, vec![3])));
        // Another run, other settings, or not resuming: nothing to resume.
        assert!(ck.load::<(usize, Vec<u8>)>("other", &"settings").unwrap().is_none());
        assert!(ck.load::<(usize, Vec<u8>)>("train, data seed 3", &"changed").unwrap().is_none());
        let fresh = Checkpoints { resume: false, ..ck.clone() };
        assert!(fresh.load::<(usize, Vec<u8>)>("train, data seed 3", &"settings").unwrap().is_none());
        ck.remove();
        assert!(!ck.dir.exists());
    }
}
