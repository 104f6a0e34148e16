//! A stage's checkpoint folder: `model.bpk`, `optim.bpk` and `state.json`. The weights are
//! burnpack records (they keep parameter ids, so the AdamW state matches on resume);
//! `state.json` is written last: a checkpoint exists once its state does.

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

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
}

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

    pub fn save<M: Module>(&self, model: &M, optim: &ModuleOptimizer, state: &TrainState) -> Result<(), Error> {
        let model_bytes = model.clone().into_record().into_bytes().map_err(|e| self.bad(e))?;
        let optim_bytes = optim.into_bytes().map_err(|e| self.bad(e))?;
        write_atomic(&self.dir.join("model.bpk"), &model_bytes)?;
        write_atomic(&self.dir.join("optim.bpk"), &optim_bytes)?;
        write_atomic(
            &self.dir.join("state.json"),
            serde_json::to_string_pretty(state).expect("state serializes").as_bytes(),
        )
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
        let path = self.dir.join("model.bpk");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| self.bad(format!("model.bpk: {e}")))?;
        model.try_load_record(record).map_err(|e| self.bad(format!("model.bpk does not fit the config: {e}")))
    }

    pub(crate) fn load_optim(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer, Error> {
        let path = self.dir.join("optim.bpk");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| self.bad(format!("optim.bpk: {e}")))
    }
}
