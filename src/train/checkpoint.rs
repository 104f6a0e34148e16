//! A stage's checkpoint folder: the weights as burnpack records (`model-STEP.bpk`, and
//! `optim-STEP.bpk` for the AdamW state; records keep parameter ids, so the optimizer state
//! matches on resume) and `state.json`, the manifest, written last. It names the weight files
//! of its step with their sha256, so a checkpoint is whole or absent: a kill before the
//! manifest is renamed into place leaves the previous manifest and the previous step's
//! files, which are removed only after it; a flipped byte is caught on load. Folders from
//! before the manifest (`model.bpk`, `optim.bpk`, no sums) still load.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::MxqConfig;
use crate::error::{Error, write_atomic};
use crate::train::options::TrainOptions;

/// What a checkpoint records besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub stage: String,
    pub config: MxqConfig,
    pub tokenizer: String,
    pub options: TrainOptions,
    /// Optimizer steps done.
    pub step: usize,
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch_in_epoch: usize,
    pub finished: bool,
    /// The stage's own state between steps (stage 1: the code counts of the codebook
    /// upkeep), so a resumed run continues exactly.
    #[serde(default)]
    pub stage_state: serde_json::Value,
    /// The weight files of this checkpoint and their sha256 (empty in folders from before
    /// the manifest). Set by [`Checkpoint::save`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSum>,
}

/// One weight file a manifest names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    /// `model` or `optim`.
    pub role: String,
    /// File name inside the checkpoint folder.
    pub name: String,
    pub sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The largest weight file a checkpoint reads (the paper preset's optimizer state is ~0.3 GB).
const MAX_WEIGHT_BYTES: u64 = 4 << 30;

/// A stage's checkpoint folder.
pub struct Checkpoint {
    pub dir: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn exists(&self) -> bool {
        self.dir.join("state.json").exists()
    }

    pub(crate) fn bad(&self, why: impl std::fmt::Display) -> Error {
        Error::Checkpoint { path: self.dir.display().to_string(), why: why.to_string() }
    }

    /// Writes `model` (and `optim`, when given) for `state.step`, then the manifest, then
    /// removes what no manifest names any more (earlier steps' files, temp files of killed
    /// writes). Files already on record for this step are not written again.
    pub fn save<M: Module>(
        &self,
        model: &M,
        optim: Option<&ModuleOptimizer>,
        state: &mut TrainState,
    ) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let step_files = |role: &str| format!("{role}-{:08}.bpk", state.step);
        let mut files = Vec::new();
        let mut write = |role: &str, bytes: Result<Bytes, String>| -> Result<(), Error> {
            let name = step_files(role);
            let kept = state.files.iter().find(|f| f.role == role && f.name == name && self.dir.join(&name).is_file());
            let entry = match kept {
                Some(f) => f.clone(),
                None => {
                    let bytes = bytes.map_err(|e| self.bad(e))?;
                    write_atomic(&self.dir.join(&name), &bytes)?;
                    FileSum { role: role.into(), name, sha256: sha256_hex(&bytes) }
                }
            };
            files.push(entry);
            Ok(())
        };
        write("model", model.clone().into_record().into_bytes().map_err(|e| e.to_string()))?;
        if let Some(optim) = optim {
            write("optim", optim.into_bytes().map_err(|e| e.to_string()))?;
        }
        state.files = files;
        write_atomic(
            &self.dir.join("state.json"),
            serde_json::to_string_pretty(state).expect("state serializes").as_bytes(),
        )?;
        self.remove_unlisted(&state.files)
    }

    /// Removes weight files the manifest does not name and temp files of killed writes.
    fn remove_unlisted(&self, files: &[FileSum]) -> Result<(), Error> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let weights = name.ends_with(".bpk") && !files.iter().any(|f| f.name == name);
            let temp = name.starts_with('.') && name.ends_with(".tmp");
            if weights || temp {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// The bytes of the manifest's `role` file, checked against its sum (a folder from before
    /// the manifest: `ROLE.bpk`, unchecked).
    fn read_weights(&self, role: &str) -> Result<Vec<u8>, Error> {
        let state = self.state()?;
        let Some(file) = state.files.iter().find(|f| f.role == role) else {
            if state.files.is_empty() {
                let path = self.dir.join(format!("{role}.bpk"));
                return crate::error::read_bounded(&path, MAX_WEIGHT_BYTES);
            }
            return Err(self.bad(format!(
                "state.json names no {role} file{}",
                if role == "optim" {
                    " (an imported stage 1 has no optimizer state: it cannot be resumed)"
                } else {
                    ""
                }
            )));
        };
        let path = self.dir.join(Path::new(&file.name).file_name().unwrap_or_default());
        let bytes = crate::error::read_bounded(&path, MAX_WEIGHT_BYTES)?;
        if sha256_hex(&bytes) != file.sha256 {
            return Err(
                self.bad(format!("{}: its sha256 does not match state.json's (a corrupted checkpoint)", file.name))
            );
        }
        Ok(bytes)
    }

    pub fn state(&self) -> Result<TrainState, Error> {
        let path = self.dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| self.bad(format!("state.json: {e}")))?;
        // the config through its own reader, which also takes the earlier flat layout
        let config = value.get_mut("config").map(serde_json::Value::take).unwrap_or_default();
        let config = MxqConfig::from_json(&config.to_string())?;
        value["config"] = serde_json::to_value(&config).expect("config serializes");
        serde_json::from_value(value).map_err(|e| self.bad(format!("state.json: {e}")))
    }

    /// Loads the weights into `model` (built from the state's config).
    pub fn load_model<M: Module>(&self, model: M) -> Result<M, Error> {
        let bytes = self.read_weights("model")?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| self.bad(format!("model weights: {e}")))?;
        model.try_load_record(record).map_err(|e| self.bad(format!("the model weights do not fit the config: {e}")))
    }

    pub(crate) fn load_optim(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer, Error> {
        let bytes = self.read_weights("optim")?;
        optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| self.bad(format!("optimizer state: {e}")))
    }
}
