//! Stage 1's training step, as `mxq train stage1` and `mxq bench` run it: masked inputs,
//! the loss against the full pair, an AdamW step, and the codebook upkeep (seeding at the
//! first step, the EMA update, dead-code restarts; [`crate::model::codebook_upkeep`]).

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::Error;
use crate::config::MxqConfig;
use crate::data::batch::PairSet;
use crate::data::tokenizer::CaptionTokenizer;
use crate::model::codebook_upkeep::{CodeCounts, seed_codebook};
use crate::model::mxq_vae::MxqVae;
use crate::rng::{Rng, Stream};
use crate::train::checkpoint::{Checkpoint, TrainState};
use crate::train::fit::{Progress, Stage, fit, init_model, start_state};
use crate::train::metrics::StepMetrics;
use crate::train::options::TrainOptions;

/// Stage 1's step over a set of pairs.
pub struct Stage1Step<'a> {
    data: &'a PairSet,
    config: MxqConfig,
    opts: TrainOptions,
    device: Device,
    counts: CodeCounts,
}

impl<'a> Stage1Step<'a> {
    /// Steps over `data` with this config and these options; `device` must be an autodiff device.
    pub fn new(data: &'a PairSet, config: &MxqConfig, opts: &TrainOptions, device: &Device) -> Self {
        let counts = CodeCounts::new(config.stage1.codebook_entries());
        Self { data, config: config.clone(), opts: opts.clone(), device: device.clone(), counts }
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

impl Stage<MxqVae> for Stage1Step<'_> {
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
    ) -> (MxqVae, StepMetrics) {
        let c = &self.config.stage1;
        let groups = c.code_groups();
        let q = &mut model.decoder.quantizer;
        if self.opts.codebook_decay > 0.0 && q.codebook.val().is_require_grad() {
            // the EMA update alone moves the codes: the optimizer must leave them alone
            // (checked each step, so a run resumed from a checkpoint keeps it too)
            q.codebook = q.codebook.clone().set_require_grad(false);
        }
        let mut rng = Rng::new(self.opts.seed, Stream::TrainStep(step as u64));
        let masked = self.data.batch(batch, Some((&c.masking, &mut rng)), &self.device);
        let targets = self.data.batch(batch, None, &self.device);
        if step == 0 && self.opts.codebook_from_data {
            let z = model.encoder.forward(masked.clone()).detach();
            model.decoder.quantizer = seed_codebook(model.decoder.quantizer, z, &groups, &mut rng);
        }
        let out = model.forward(masked, targets.clone(), c.codebook.commitment);
        self.counts.add(&out.quantized.codes.clone().into_data().try_into_vec_as::<i64>().expect("int codes"));
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
            // replacements: this batch's encoder outputs far from every live code of the group
            let z = model.encoder.forward(targets).detach();
            model.decoder.quantizer = self.counts.restart_dead(model.decoder.quantizer, z, &groups, &mut rng);
        }
        (model, metrics)
    }

    fn epoch_end(&mut self) -> StepMetrics {
        let (usage, restarted) = self.counts.take_epoch();
        vec![
            ("perplexity", usage.perplexity),
            ("live_codes", usage.live_codes as f64),
            ("restarted_codes", restarted as f64),
        ]
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.counts).expect("counts serialize")
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), String> {
        if state.is_null() {
            return Ok(()); // a checkpoint from before the counts were kept
        }
        let counts: CodeCounts = serde_json::from_value(state.clone()).map_err(|e| format!("code counts: {e}"))?;
        if counts.recent.len() != self.counts.recent.len() {
            return Err(format!("{} code counts for {} codes", counts.recent.len(), self.counts.recent.len()));
        }
        self.counts = counts;
        Ok(())
    }
}

/// Trains (or resumes) stage 1 in `dir` on `data`. `device` must be an autodiff device.
pub fn train_stage1(
    dir: &Path,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    data: &PairSet,
    options: &TrainOptions,
    device: &Device,
    progress: Progress,
) -> Result<MxqVae, Error> {
    let ckpt = Checkpoint::new(dir);
    let (state, resume) = start_state(&ckpt, Stage1Step::NAME, config, tokenizer, options)?;
    let model = init_model(state.options.seed, device, |d| MxqVae::new(&state.config.stage1, d));
    let mut stage = Stage1Step::new(data, &state.config, &state.options, device);
    fit(model, &mut stage, state, &ckpt, resume, progress)
}

/// Loads a trained stage-1 model (inference mode) from its checkpoint folder.
pub fn load_stage1(dir: &Path, device: &Device) -> Result<(MxqVae, TrainState), Error> {
    let ckpt = Checkpoint::new(dir);
    let state = ckpt.state()?;
    let model = ckpt.load_model(MxqVae::new(&state.config.stage1, device))?;
    Ok((model.valid(), state))
}
