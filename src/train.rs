//! Training both stages: an AdamW loop with seeded shuffling and masking, per-epoch
//! metrics to `metrics.jsonl`, atomic checkpoints and `resume`.
//!
//! A hand-written loop rather than burn-train's `Learner`: stage 1 mutates the codebook
//! between steps (data seeding and dead-code restarts), which a `TrainStep(&self)` cannot
//! do, and resuming mid-epoch needs the step position in the checkpoint.
//! Checkpoints are burnpack records (they keep parameter ids, so the AdamW state matches
//! on resume) plus `state.json`, written last: a checkpoint exists once its state does.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{IMAGE_SIZE, MxqConfig};
use crate::cross_quantizer::CodebookUsage;
use crate::data::Pair;
use crate::data::batch::push_image;
use crate::error::{Error, write_atomic};
use crate::masking::{mask_image_patches, mask_tokens};
use crate::mxq_vae::MxqVae;
use crate::prior::Prior;
use crate::rng::Rng;
use crate::tokenizer::CaptionTokenizer;

/// How to train one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate over this many steps.
    pub warmup_steps: usize,
    pub seed: u64,
    /// Stop after this many steps in all (for quick runs); the checkpoint still resumes.
    pub max_steps: Option<usize>,
    /// Write a checkpoint every this many steps (and at each epoch end).
    pub checkpoint_every: usize,
    /// Append the mean metrics of every this many steps to `steps.jsonl` (loss curves, and
    /// progress where no terminal shows the bar).
    #[serde(default = "fifty")]
    pub log_every: usize,
    /// Stage 1: seed the codebook with encoder outputs at the first step.
    pub codebook_from_data: bool,
    /// Stage 1: every this many steps, codes unused since the last check are restarted
    /// from encoder outputs of the current batch (0 = never).
    pub restart_dead_every: usize,
    /// Stage 1: decay of the EMA codebook update (VQ-VAE-2); 0 trains the codebook by
    /// gradient with the codebook loss instead (the original VQ-VAE).
    #[serde(default)]
    pub codebook_decay: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 5e-4,
            weight_decay: 1e-4,
            warmup_steps: 100,
            seed: 0,
            max_steps: None,
            checkpoint_every: 500,
            log_every: 50,
            codebook_from_data: true,
            restart_dead_every: 100,
            codebook_decay: 0.99,
        }
    }
}

fn fifty() -> usize {
    50
}

/// Pairs ready for batching: RGB bytes and token ids, back to back.
pub struct PairSet {
    pub images: Vec<u8>,
    pub tokens: Vec<u32>,
    pub length: usize,
}

impl PairSet {
    pub fn new(pairs: &[Pair], tokenizer: &CaptionTokenizer) -> Self {
        Self {
            images: pairs.iter().flat_map(|p| p.image.iter().copied()).collect(),
            tokens: pairs.iter().flat_map(|p| tokenizer.encode(&p.caption)).collect(),
            length: tokenizer.length(),
        }
    }
    pub fn len(&self) -> usize {
        self.tokens.len() / self.length
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Images `[B, 3, 64, 64]` and tokens `[B, L]` of the pairs `ids`, optionally masked.
    pub fn batch(
        &self,
        ids: &[usize],
        mask: Option<(&crate::config::Stage1Config, &mut Rng)>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<2, Int>) {
        let px = IMAGE_SIZE * IMAGE_SIZE * 3;
        let mut images = Vec::with_capacity(ids.len() * px);
        let mut tokens = Vec::with_capacity(ids.len() * self.length);
        for &i in ids {
            push_image(&self.images[i * px..(i + 1) * px], &mut images);
            tokens.extend_from_slice(&self.tokens[i * self.length..(i + 1) * self.length]);
        }
        if let Some((c, rng)) = mask {
            mask_image_patches(&mut images, IMAGE_SIZE, c.mask_patch, c.image_mask_ratio, rng);
            mask_tokens(&mut tokens, self.length, c.text_mask_ratio, rng);
        }
        let b = ids.len();
        let tokens: Vec<i64> = tokens.into_iter().map(i64::from).collect();
        (
            Tensor::from_data(TensorData::new(images, [b, 3, IMAGE_SIZE, IMAGE_SIZE]), device),
            Tensor::from_data(TensorData::new(tokens, [b, self.length]), device),
        )
    }
}

/// Progress after one optimizer step.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub epoch: usize,
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
}

/// One line of `metrics.jsonl` (means over the epoch's steps, plus codebook usage) or of
/// `steps.jsonl` (means over the last `log_every` steps).
#[derive(Debug, Clone, Serialize)]
pub struct EpochMetrics {
    pub stage: String,
    pub epoch: usize,
    pub step: usize,
    pub seconds: f64,
    pub items_per_second: f64,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Sums of step metrics since `start`, turned into one mean line of `metrics.jsonl` or
/// `steps.jsonl`.
struct Window {
    sums: std::collections::BTreeMap<String, f64>,
    steps: usize,
    start: Instant,
}

impl Window {
    fn new() -> Self {
        Self { sums: Default::default(), steps: 0, start: Instant::now() }
    }
    fn add(&mut self, metrics: &[(&'static str, f64)]) {
        for (k, v) in metrics {
            *self.sums.entry(k.to_string()).or_default() += v;
        }
        self.steps += 1;
    }
    /// The means since the start, as a line; the window starts again.
    fn take(&mut self, stage: &str, epoch: usize, step: usize, batch_size: usize) -> EpochMetrics {
        let window = std::mem::replace(self, Self::new());
        let seconds = window.start.elapsed().as_secs_f64();
        EpochMetrics {
            stage: stage.into(),
            epoch,
            step,
            seconds,
            items_per_second: (window.steps * batch_size) as f64 / seconds.max(1e-9),
            metrics: window.sums.into_iter().map(|(k, v)| (k, v / window.steps.max(1) as f64)).collect(),
        }
    }
}

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
}

/// A stage's checkpoint folder: `model.bpk`, `optim.bpk`, `state.json`.
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
    fn bad(&self, why: impl std::fmt::Display) -> Error {
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
        let state: TrainState = serde_json::from_str(&text).map_err(|e| self.bad(format!("state.json: {e}")))?;
        state.config.check()?;
        Ok(state)
    }

    /// Loads the weights into `model` (built from the state's config).
    pub fn load_model<M: Module>(&self, model: M) -> Result<M, Error> {
        let path = self.dir.join("model.bpk");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| self.bad(format!("model.bpk: {e}")))?;
        model.try_load_record(record).map_err(|e| self.bad(format!("model.bpk does not fit the config: {e}")))
    }

    fn load_optim(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer, Error> {
        let path = self.dir.join("optim.bpk");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| self.bad(format!("optim.bpk: {e}")))
    }
}

/// One stage's step: forward, backward, optimizer step; returns named metrics.
trait Stage<M: Module>: Send {
    const NAME: &'static str;
    fn step(
        &mut self,
        model: M,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        step: usize,
    ) -> (M, Vec<(&'static str, f64)>);
    /// Extra metrics at the end of an epoch (resets per-epoch counters).
    fn epoch_end(&mut self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    fn items(&self) -> usize;
}

/// The shared loop: epochs of shuffled batches, checkpoints, metrics.
fn fit<M: Module, S: Stage<M>>(
    mut model: M,
    stage: &mut S,
    mut state: TrainState,
    ckpt: &Checkpoint,
    resume: bool,
    on_step: &mut dyn FnMut(&StepReport),
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<M, Error> {
    let opts = state.options.clone();
    let adamw = AdamWConfig::new().with_weight_decay(opts.weight_decay as f32);
    let mut optim: ModuleOptimizer = adamw.init();
    if resume {
        model = ckpt.load_model(model)?;
        optim = ckpt.load_optim(optim)?;
    }
    let n = stage.items();
    if n < opts.batch_size || opts.batch_size == 0 {
        return Err(ckpt.bad(format!("{n} training items for batches of {}", opts.batch_size)));
    }
    let per_epoch = n / opts.batch_size;
    let total = opts.max_steps.unwrap_or(usize::MAX).min(per_epoch * opts.epochs);
    // the loss lines can come before the first checkpoint writes the folder
    std::fs::create_dir_all(&ckpt.dir).map_err(|e| Error::io(&ckpt.dir, e))?;
    let metrics_path = ckpt.dir.join("metrics.jsonl");
    let steps_path = ckpt.dir.join("steps.jsonl");
    let mut window = Window::new();
    while state.epoch < opts.epochs && state.step < total {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(opts.seed, 1_000_000 + state.epoch as u64).shuffle(&mut order);
        let mut epoch = Window::new();
        for b in state.batch_in_epoch..per_epoch {
            if state.step >= total {
                break;
            }
            let lr = opts.learning_rate * ((state.step + 1) as f64 / opts.warmup_steps.max(1) as f64).min(1.0);
            let batch = &order[b * opts.batch_size..(b + 1) * opts.batch_size];
            let (m, metrics) = crate::on_cpu_pool(|| stage.step(model, &mut optim, lr, batch, state.step));
            model = m;
            epoch.add(&metrics);
            window.add(&metrics);
            state.step += 1;
            state.batch_in_epoch = b + 1;
            if state.step.is_multiple_of(opts.log_every.max(1)) {
                let line = window.take(S::NAME, state.epoch, state.step, opts.batch_size);
                append_line(&steps_path, &serde_json::to_string(&line).expect("metrics serialize"))?;
            }
            on_step(&StepReport { epoch: state.epoch, step: state.step, total_steps: total, loss: metrics[0].1 });
            if state.step.is_multiple_of(opts.checkpoint_every.max(1)) {
                ckpt.save(&model, &optim, &state)?;
            }
        }
        let count = epoch.steps;
        let mut line = epoch.take(S::NAME, state.epoch, state.step, opts.batch_size);
        line.metrics.extend(stage.epoch_end().into_iter().map(|(k, v)| (k.to_string(), v)));
        if state.batch_in_epoch >= per_epoch {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
        state.finished = state.epoch >= opts.epochs || state.step >= total;
        ckpt.save(&model, &optim, &state)?;
        if count > 0 {
            append_line(&metrics_path, &serde_json::to_string(&line).expect("metrics serialize"))?;
            on_epoch(&line);
        }
    }
    Ok(model)
}

fn append_line(path: &Path, line: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

struct Stage1<'a> {
    data: &'a PairSet,
    config: &'a MxqConfig,
    opts: &'a TrainOptions,
    device: Device,
    /// Code counts since the last dead-code check, and over the epoch.
    recent: Vec<u64>,
    epoch_counts: Vec<u64>,
    restarted: usize,
}

impl Stage<MxqVae> for Stage1<'_> {
    const NAME: &'static str = "stage1";

    fn items(&self) -> usize {
        self.data.len()
    }

    fn step(
        &mut self,
        mut model: MxqVae,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        step: usize,
    ) -> (MxqVae, Vec<(&'static str, f64)>) {
        let c = &self.config.stage1;
        let q = &mut model.decoder.quantizer;
        if self.opts.codebook_decay > 0.0 && q.codebook.val().is_require_grad() {
            // the EMA update alone moves the codes: the optimizer must leave them alone
            // (checked each step, so a run resumed from a checkpoint keeps it too)
            q.codebook = q.codebook.clone().set_require_grad(false);
        }
        let mut rng = Rng::new(self.opts.seed, step as u64);
        let masked = self.data.batch(batch, Some((c, &mut rng)), &self.device);
        let targets = self.data.batch(batch, None, &self.device);
        if step == 0 && self.opts.codebook_from_data {
            // Seed the codebook with encoder outputs, so every code starts where data lives.
            // Each code group from its own positions (image codes from image features…).
            let z = model.encoder.forward(masked.0.clone(), masked.1.clone()).detach();
            for (positions, codes) in c.code_groups() {
                let z = z.clone().narrow(1, positions.start, positions.len());
                let vectors = far_rows(z, &[], codes.len(), &mut rng);
                let ids: Vec<usize> = codes.collect();
                model.decoder.quantizer = model.decoder.quantizer.replace_codes(&ids, &vectors);
            }
        }
        let out = model.forward(masked, targets.clone(), c.commitment);
        let codes = out.quantized.codes.clone().into_data().try_into_vec_as::<i64>().expect("int codes");
        for &k in &codes {
            self.recent[k as usize] += 1;
            self.epoch_counts[k as usize] += 1;
        }
        let l = &out.loss;
        let metrics = vec![
            ("loss", scalar(&l.total)),
            ("image_mse", scalar(&l.image_mse)),
            ("text_ce", scalar(&l.text_ce)),
            ("codebook", scalar(&l.codebook)),
            ("commitment", scalar(&l.commitment)),
        ];
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        model = optim.step(lr, model, grads);
        if self.opts.codebook_decay > 0.0 {
            let q = &out.quantized;
            model.decoder.quantizer =
                model.decoder.quantizer.ema_update(q.inputs.clone(), q.codes.clone(), self.opts.codebook_decay);
        }
        let every = self.opts.restart_dead_every;
        if every > 0 && (step + 1).is_multiple_of(every) {
            if self.recent.contains(&0) {
                // replacements: this batch's encoder outputs (at the group's positions) far
                // from every live code of the group
                let z = model.encoder.forward(targets.0, targets.1).detach();
                let all =
                    model.decoder.quantizer.codebook.val().into_data().try_into_vec_as::<f32>().expect("f32 codebook");
                let d = c.code_dim;
                for (positions, codes) in c.code_groups() {
                    let dead: Vec<usize> = codes.clone().filter(|&k| self.recent[k] == 0).collect();
                    if dead.is_empty() {
                        continue;
                    }
                    let live: Vec<f32> =
                        codes.filter(|k| self.recent[*k] > 0).flat_map(|k| all[k * d..(k + 1) * d].to_vec()).collect();
                    let z = z.clone().narrow(1, positions.start, positions.len());
                    let vectors = far_rows(z, &live, dead.len(), &mut rng);
                    model.decoder.quantizer = model.decoder.quantizer.replace_codes(&dead, &vectors);
                    self.restarted += dead.len();
                }
            }
            self.recent.iter_mut().for_each(|c| *c = 0);
        }
        (model, metrics)
    }

    fn epoch_end(&mut self) -> Vec<(&'static str, f64)> {
        let usage = CodebookUsage::from_counts(&self.epoch_counts);
        self.epoch_counts.iter_mut().for_each(|c| *c = 0);
        let restarted = std::mem::take(&mut self.restarted);
        vec![
            ("perplexity", usage.perplexity),
            ("live_codes", usage.live_codes as f64),
            ("restarted_codes", restarted as f64),
        ]
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

/// `n` rows of `z: [B, T, D]` picked k-means++ style: each with probability ∝ its squared
/// distance to the nearest of `codes` (`[K, D]` values) and of the rows already picked.
/// Uniform picks land mostly on the black background, which most grid cells show; these
/// land where the codebook describes the data worst (strokes, colours, words).
fn far_rows(z: Tensor<3>, codes: &[f32], n: usize, rng: &mut Rng) -> Vec<f32> {
    let [b, t, d] = z.dims();
    let values = z.into_data().try_into_vec_as::<f32>().expect("f32 features");
    let dist2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let rows: Vec<&[f32]> = values.chunks(d).collect();
    let mut nearest: Vec<f32> =
        rows.iter().map(|r| codes.chunks(d).map(|c| dist2(r, c)).fold(f32::INFINITY, f32::min)).collect();
    let mut picked = Vec::with_capacity(n * d);
    for _ in 0..n {
        let total: f64 = nearest.iter().map(|&v| v as f64).sum();
        let i = if total > 0.0 && total.is_finite() {
            let mut target = rng.unit_f32() as f64 * total;
            nearest
                .iter()
                .position(|&v| {
                    target -= v as f64;
                    target < 0.0
                })
                .unwrap_or(b * t - 1)
        } else {
            rng.below(b * t)
        };
        picked.extend_from_slice(rows[i]);
        for (k, r) in rows.iter().enumerate() {
            nearest[k] = nearest[k].min(dist2(r, rows[i]));
        }
    }
    picked
}

/// Trains (or resumes) stage 1 in `dir` on `data`. `device` must be an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train_stage1(
    dir: &Path,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    data: &PairSet,
    options: &TrainOptions,
    device: &Device,
    on_step: &mut dyn FnMut(&StepReport),
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<MxqVae, Error> {
    let ckpt = Checkpoint::new(dir);
    let (state, resume) = start_state(&ckpt, "stage1", config, tokenizer, options)?;
    device.seed(state.options.seed);
    let model = MxqVae::new(&state.config.stage1, device);
    let k = state.config.stage1.codes();
    let cfg = state.config.clone();
    let opts = state.options.clone();
    let mut stage = Stage1 {
        data,
        config: &cfg,
        opts: &opts,
        device: device.clone(),
        recent: vec![0; k],
        epoch_counts: vec![0; k],
        restarted: 0,
    };
    fit(model, &mut stage, state, &ckpt, resume, on_step, on_epoch)
}

/// A fresh state, or the checkpoint's when one exists in `dir` (then the run resumes
/// with the checkpoint's config, tokenizer and options, except `epochs` and `max_steps`).
fn start_state(
    ckpt: &Checkpoint,
    stage: &str,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    options: &TrainOptions,
) -> Result<(TrainState, bool), Error> {
    if ckpt.exists() {
        let mut state = ckpt.state()?;
        if state.stage != stage {
            return Err(ckpt.bad(format!("holds a {} checkpoint, not {stage}", state.stage)));
        }
        state.options.epochs = options.epochs;
        state.options.max_steps = options.max_steps;
        return Ok((state, true));
    }
    let state = TrainState {
        stage: stage.into(),
        config: config.clone(),
        tokenizer: tokenizer.to_json(),
        options: options.clone(),
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        finished: false,
    };
    Ok((state, false))
}

/// Loads a trained stage-1 model (inference mode) from its checkpoint folder.
pub fn load_stage1(dir: &Path, device: &Device) -> Result<(MxqVae, TrainState), Error> {
    let ckpt = Checkpoint::new(dir);
    let state = ckpt.state()?;
    let model = ckpt.load_model(MxqVae::new(&state.config.stage1, device))?;
    Ok((model.valid(), state))
}

/// Encodes every pair into its 72 codes with a frozen stage 1: `[n × 72]` row-major.
pub fn encode_codes(vae: &MxqVae, data: &PairSet, batch: usize, device: &Device) -> Vec<u32> {
    let ids: Vec<usize> = (0..data.len()).collect();
    crate::on_cpu_pool(|| {
        ids.chunks(batch.max(1))
            .flat_map(|chunk| {
                let (images, tokens) = data.batch(chunk, None, device);
                vae.encode(images, tokens)
                    .into_data()
                    .try_into_vec_as::<i64>()
                    .expect("int codes")
                    .into_iter()
                    .map(|c| c as u32)
            })
            .collect()
    })
}

struct PriorStage<'a> {
    codes: &'a [u32],
    positions: usize,
    device: Device,
}

impl Stage<Prior> for PriorStage<'_> {
    const NAME: &'static str = "prior";

    fn items(&self) -> usize {
        self.codes.len() / self.positions
    }

    fn step(
        &mut self,
        model: Prior,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        _step: usize,
    ) -> (Prior, Vec<(&'static str, f64)>) {
        let p = self.positions;
        let flat: Vec<i64> =
            batch.iter().flat_map(|&i| self.codes[i * p..(i + 1) * p].iter().map(|&c| c as i64)).collect();
        let codes = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch.len(), p]), &self.device);
        let loss = model.loss(codes);
        let value = scalar(&loss);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (optim.step(lr, model, grads), vec![("loss", value)])
    }
}

/// Trains (or resumes) the prior in `dir` on code sequences (`positions` codes each).
#[allow(clippy::too_many_arguments)]
pub fn train_prior(
    dir: &Path,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    codes: &[u32],
    options: &TrainOptions,
    device: &Device,
    on_step: &mut dyn FnMut(&StepReport),
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<Prior, Error> {
    let ckpt = Checkpoint::new(dir);
    let (state, resume) = start_state(&ckpt, "prior", config, tokenizer, options)?;
    device.seed(state.options.seed);
    let s = &state.config.stage1;
    let model = Prior::new(&state.config.prior, s.codes(), s.positions(), device);
    let mut stage = PriorStage { codes, positions: s.positions(), device: device.clone() };
    fit(model, &mut stage, state, &ckpt, resume, on_step, on_epoch)
}

/// Loads a trained prior (inference mode) from its checkpoint folder.
pub fn load_prior(dir: &Path, device: &Device) -> Result<(Prior, TrainState), Error> {
    let ckpt = Checkpoint::new(dir);
    let state = ckpt.state()?;
    let s = &state.config.stage1;
    let model = ckpt.load_model(Prior::new(&state.config.prior, s.codes(), s.positions(), device))?;
    Ok((model.valid(), state))
}
