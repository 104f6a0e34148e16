//! A run folder: `tokenizer.json`, `stage1/` and `prior/` (each a checkpoint with its
//! metrics; `decoders/` too where stage 1's decoder half was fine-tuned), and what starts or continues a stage in it — the tokenizer trained on the
//! captions, the config from a preset or file with its variant and the tokenizer's
//! vocabulary, the checks that a run is new or resumed as asked.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::Error;
use crate::bundle::{Bundle, Generator};
use crate::config::{MxqConfig, SequenceOrder};
use crate::data::pairs::Pair;
use crate::data::tokenizer::CaptionTokenizer;
use crate::error::write_atomic;
use crate::model::mxq_vae::MxqVae;
use crate::model::prior::Prior;
use crate::train::checkpoint::{Checkpoint, TrainState};
use crate::train::{decoders, prior, stage1};

/// Where a run's config comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    /// `paper`, `demo` or `tiny`.
    Preset(String),
    /// A JSON file with a whole config.
    File(PathBuf),
}

/// How to start stage 1 of a new run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Setup {
    pub config: ConfigSource,
    /// One of [`MxqConfig::VARIANTS`].
    pub variant: String,
    /// Largest tokenizer vocabulary (specials included).
    pub vocab_size: usize,
    /// Tokens per caption.
    pub token_length: usize,
}

/// Changes to the config's prior for a new prior run; `None` keeps what the config has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriorSetup {
    pub order: Option<SequenceOrder>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    /// The prior's model width.
    pub width: Option<usize>,
    /// `prior.unconditional`: the share of sequences trained without their first part.
    pub unconditional: Option<f64>,
    /// `prior.conditional`: the second part alone is learned, given the first.
    pub conditional: Option<bool>,
}

impl PriorSetup {
    /// `config` with these changes to its prior, checked.
    pub fn apply(&self, mut config: MxqConfig) -> Result<MxqConfig, Error> {
        let p = &mut config.prior;
        p.order = self.order.unwrap_or(p.order);
        p.layers = self.layers.unwrap_or(p.layers);
        p.heads = self.heads.unwrap_or(p.heads);
        p.d_model = self.width.unwrap_or(p.d_model);
        p.unconditional = self.unconditional.unwrap_or(p.unconditional);
        p.conditional = self.conditional.unwrap_or(p.conditional);
        config.check()?;
        Ok(config)
    }
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
}

impl Run {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn stage1_dir(&self) -> PathBuf {
        self.dir.join("stage1")
    }
    pub fn prior_dir(&self) -> PathBuf {
        self.dir.join("prior")
    }
    /// Stage 1's decoder half fine-tuned on frozen codes (`mxq train decoders`).
    pub fn decoders_dir(&self) -> PathBuf {
        self.dir.join("decoders")
    }
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    /// A stage folder holds a checkpoint exactly when the run is resumed.
    pub fn check_resume(stage_dir: &Path, resume: bool) -> Result<(), Error> {
        let exists = Checkpoint::new(stage_dir).exists();
        let bad = |why: String| Err(Error::Checkpoint { path: stage_dir.display().to_string(), why });
        if exists && !resume {
            return bad("already holds a checkpoint: pass --resume to continue it, or choose another --run".into());
        }
        if resume && !exists {
            return bad("--resume: no checkpoint here".into());
        }
        Ok(())
    }

    /// The config and tokenizer stage 1 trains with. A new run trains the tokenizer on
    /// `pairs`' captions, writes it to `tokenizer.json`, and sets the config's vocabulary
    /// and caption length from it; a resumed run reads `tokenizer.json` back (its config
    /// comes from the checkpoint).
    pub fn prepare_stage1(
        &self,
        pairs: &[Pair],
        setup: &Stage1Setup,
        resume: bool,
    ) -> Result<(MxqConfig, CaptionTokenizer), Error> {
        Self::check_resume(&self.stage1_dir(), resume)?;
        let path = self.tokenizer_path();
        let tokenizer = if resume {
            // the checkpoint's record is the run's tokenizer; tokenizer.json must be that one
            let state = Checkpoint::new(self.stage1_dir()).state()?;
            let tokenizer = Self::tokenizer(&state)?;
            let on_disk = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            if on_disk != state.tokenizer {
                return Err(Error::Checkpoint {
                    path: path.display().to_string(),
                    why: "is not the tokenizer stage 1's checkpoint recorded (a file from another run?)".into(),
                });
            }
            tokenizer
        } else {
            let t = CaptionTokenizer::train(
                pairs.iter().map(|p| p.caption.as_str()),
                setup.vocab_size,
                setup.token_length,
            )?;
            write_atomic(&path, t.to_json().as_bytes())?;
            t
        };
        let mut config = match &setup.config {
            ConfigSource::File(p) => MxqConfig::from_json(&std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?)?,
            ConfigSource::Preset(name) => MxqConfig::preset(name)?,
        }
        .variant(&setup.variant)?;
        config.stage1.text.vocab_size = tokenizer.vocab_size();
        config.stage1.text.token_length = tokenizer.length();
        config.check()?;
        Ok((config, tokenizer))
    }

    /// The config a prior run trains with: stage 1's with `setup`'s changes to the prior.
    /// The prior folder holds a checkpoint exactly when `resume`; a resumed prior keeps its
    /// checkpoint's config (returned), so changes asked for then are an error, not ignored.
    pub fn prepare_prior(&self, stage1: &MxqConfig, setup: &PriorSetup, resume: bool) -> Result<MxqConfig, Error> {
        Self::check_resume(&self.prior_dir(), resume)?;
        if resume && *setup != PriorSetup::default() {
            return Err(Error::Checkpoint {
                path: self.prior_dir().display().to_string(),
                why: "--resume keeps the prior's recorded order and size; --order/--layers/--heads/--width/\
                      --unconditional/--conditional apply to a new prior run only"
                    .into(),
            });
        }
        if resume {
            return Ok(Checkpoint::new(self.prior_dir()).state()?.config);
        }
        setup.apply(stage1.clone())
    }

    /// What a new prior run continues when it starts from `bundle`'s prior (fine-tuning):
    /// the config to train with — stage 1's, with the bundle's prior (its order, size,
    /// `unconditional` share and `conditional` flag) where `setup` does not set the last two —
    /// and the prior itself. `setup.layers` may deepen it ([`Prior::grown`]: the training
    /// stacks blocks that start as the identity on the bundle's). Refused where the bundle's
    /// stage 1 is not the run's (the prior's codes would mean other things) or `setup` changes
    /// the prior's order, heads or width, or asks for fewer layers (its weights would not fit).
    pub fn prior_from(
        &self,
        bundle: Bundle,
        stage1: &MxqVae,
        state: &TrainState,
        setup: &PriorSetup,
    ) -> Result<(MxqConfig, Prior), Error> {
        let refuse = |why: String| Error::Checkpoint { path: self.prior_dir().display().to_string(), why };
        let codebook: Vec<f32> = stage1.decoder.quantizer.codebook.val().into_data().iter::<f32>().collect();
        if let Err(differs) = bundle.check_stage1(&state.config.stage1, &Self::tokenizer(state)?.to_json(), &codebook) {
            return Err(refuse(format!(
                "the bundle's prior was trained on another stage 1 than this run's ({differs} differs)"
            )));
        }
        if (setup.order, setup.heads, setup.width) != (None, None, None) {
            return Err(refuse(
                "a prior started from a bundle's keeps its order, heads and width: --order/--heads/--width do not apply"
                    .into(),
            ));
        }
        let layers = bundle.config.prior.layers;
        if setup.layers.is_some_and(|l| l < layers) {
            return Err(refuse(format!(
                "a prior started from a bundle's can grow deeper, not shallower: the bundle's has {layers} layers"
            )));
        }
        let config = PriorSetup {
            layers: setup.layers,
            unconditional: setup.unconditional,
            conditional: setup.conditional,
            ..PriorSetup::default()
        }
        .apply(MxqConfig { prior: bundle.config.prior.clone(), ..state.config.clone() })?;
        Ok((config, bundle.generator.prior))
    }

    /// The run's stage 1 (inference mode) and its checkpoint state: `stage1/`, its decoder
    /// half from `decoders/` where one was fine-tuned there (the encoders and codebook are
    /// `stage1/`'s either way, so the codes are the same; the state's config then has the
    /// decoders' text map rank).
    pub fn stage1(&self, device: &Device) -> Result<(MxqVae, TrainState), Error> {
        let (mut vae, mut state) = self.trained_stage1(device)?;
        if Checkpoint::new(self.decoders_dir()).exists() {
            let (decoder, map_rank) = decoders::load_decoders(&self.decoders_dir(), &state, device)?;
            vae.decoder = decoder;
            state.config.stage1.text.map_rank = map_rank;
        }
        Ok((vae, state))
    }

    /// Stage 1 as `stage1/` holds it, without fine-tuned decoders: what `mxq train decoders`
    /// starts from and encodes with.
    pub fn trained_stage1(&self, device: &Device) -> Result<(MxqVae, TrainState), Error> {
        stage1::load_stage1(&self.stage1_dir(), device)
    }

    /// The trained prior (inference mode) and its checkpoint state.
    pub fn prior(&self, device: &Device) -> Result<(Prior, TrainState), Error> {
        prior::load_prior(&self.prior_dir(), device)
    }

    /// The run's tokenizer, as stage 1 recorded it.
    pub fn tokenizer(state: &TrainState) -> Result<CaptionTokenizer, Error> {
        let tokenizer = CaptionTokenizer::from_json(&state.tokenizer)?;
        tokenizer.check_fits(&state.config.stage1.text)?;
        Ok(tokenizer)
    }

    /// Stage 1 as a stage-1 file ([`crate::bundle::export_stage1`]): both halves, the config,
    /// the tokenizer and the training record.
    pub fn export_stage1(&self, precision: crate::bundle::Precision, device: &Device) -> Result<Vec<u8>, Error> {
        let (vae, state) = self.stage1(device)?;
        let tokenizer = Self::tokenizer(&state)?;
        let trained = serde_json::json!({
            "options": state.options,
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "finished": state.finished,
        });
        crate::bundle::export_stage1(&vae, &state.config, &tokenizer, trained.to_string(), precision)
    }

    /// Stage 1's encode half as an encoder file ([`crate::bundle::export_encoder`]).
    pub fn export_encoder(&self, precision: crate::bundle::Precision, device: &Device) -> Result<Vec<u8>, Error> {
        let (vae, state) = self.stage1(device)?;
        let tokenizer = Self::tokenizer(&state)?;
        crate::bundle::export_encoder(&vae.into_coder(), &state.config, &tokenizer, precision)
    }

    /// Starts this (new) run from a stage-1 file: writes `tokenizer.json` and a finished
    /// stage-1 checkpoint without optimizer state (a prior trains on it; it cannot be
    /// resumed). Refused where the run already has a stage 1.
    pub fn import_stage1(&self, bytes: &[u8], device: &Device) -> Result<TrainState, Error> {
        let ckpt = Checkpoint::new(self.stage1_dir());
        if ckpt.exists() || self.tokenizer_path().exists() {
            return Err(Error::Checkpoint {
                path: self.dir.display().to_string(),
                why: "already holds a stage 1 (or its tokenizer): import into a new run folder".into(),
            });
        }
        let file = crate::bundle::load_stage1(bytes, device)?;
        let trained: serde_json::Value = serde_json::from_str(&file.trained).unwrap_or_default();
        let number = |k: &str| trained.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        let mut state = TrainState {
            stage: "stage1".into(),
            config: file.config,
            tokenizer: file.tokenizer.to_json(),
            options: serde_json::from_value(trained.get("options").cloned().unwrap_or_default()).unwrap_or_default(),
            step: number("step"),
            epoch: number("epoch"),
            batch_in_epoch: number("batch_in_epoch"),
            finished: true,
            stage_state: serde_json::Value::Null,
            files: Vec::new(),
        };
        write_atomic(&self.tokenizer_path(), state.tokenizer.as_bytes())?;
        ckpt.save(&file.vae, None, &mut state)?;
        Ok(state)
    }

    /// What a bundle ships from this run: stage 1's decoder half and the prior, with the
    /// config (stage 1's, with the prior's as it was trained) and tokenizer.
    pub fn generator(&self, device: &Device) -> Result<(Generator, MxqConfig, CaptionTokenizer), Error> {
        let (vae, state) = self.stage1(device)?;
        let (prior, prior_state) = self.prior(device)?;
        if !prior_state.config.stage1.same_codes(&state.config.stage1) {
            return Err(Error::Checkpoint {
                path: self.prior_dir().display().to_string(),
                why: "this prior was trained on the codes of another stage 1 than the run's".into(),
            });
        }
        let tokenizer = Self::tokenizer(&state)?;
        let config = MxqConfig { stage1: state.config.stage1, ..prior_state.config };
        Ok((Generator { decoder: vae.decoder, prior }, config, tokenizer))
    }

    /// [`Run::generator`] with `bundle`'s prior instead of the run's `prior/`: a bundle
    /// exported again with this run's decoders (fine-tuned ones, say). Refused where the
    /// bundle's prior was trained on another stage 1 ([`Run::prior_from`]).
    pub fn generator_with(
        &self,
        bundle: Bundle,
        device: &Device,
    ) -> Result<(Generator, MxqConfig, CaptionTokenizer), Error> {
        let (vae, state) = self.stage1(device)?;
        let (config, prior) = self.prior_from(bundle, &vae, &state, &PriorSetup::default())?;
        let tokenizer = Self::tokenizer(&state)?;
        Ok((Generator { decoder: vae.decoder, prior }, config, tokenizer))
    }
}
