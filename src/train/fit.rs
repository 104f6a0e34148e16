//! The training loop both stages share: epochs of seeded shuffled batches, AdamW steps,
//! metrics, atomic checkpoints and resume.
//!
//! Hand-written rather than burn-train's `Learner` for two reasons: a run resumes in the
//! middle of an epoch (the checkpoint records the batch position and the shuffle is seeded
//! per epoch), and stage 1 does codebook surgery between steps (seeding, dead-code restarts,
//! the EMA update) on the model the optimizer holds.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::Device;

use crate::Error;
use crate::config::MxqConfig;
use crate::data::tokenizer::CaptionTokenizer;
use crate::rng::{Rng, Stream};
use crate::train::checkpoint::{Checkpoint, TrainState};
use crate::train::metrics::{EpochMetrics, StepMetrics, StepReport, Window, append_line, cut_after};
use crate::train::options::TrainOptions;

/// One stage's step: forward, backward, optimizer step; returns the model and named metrics.
pub trait Stage<M: Module>: Send {
    const NAME: &'static str;
    /// Optimizer step `step` (0-based) on the items `batch`.
    fn step(
        &mut self,
        model: M,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        step: usize,
    ) -> (M, StepMetrics);
    /// Extra metrics at the end of an epoch (resets per-epoch counters).
    fn epoch_end(&mut self) -> StepMetrics {
        Vec::new()
    }
    /// Items to train on.
    fn items(&self) -> usize;
    /// State kept between steps, saved in checkpoints.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Takes back what [`Stage::state`] saved.
    fn restore(&mut self, _state: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// Callbacks for progress.
pub struct Progress<'a> {
    pub on_step: &'a mut dyn FnMut(&StepReport),
    pub on_epoch: &'a mut dyn FnMut(&EpochMetrics),
}

/// The error a start gives when `ckpt` holds another stage's checkpoint, or one whose
/// options `options` would change beyond what a resume may ([`TrainOptions::resume_differences`]);
/// nothing to check where no checkpoint is yet. [`start_state`] checks it; a caller with
/// minutes of work to do before that (encoding codes that depend on the options) checks first.
pub fn check_resume(ckpt: &Checkpoint, stage: &str, options: &TrainOptions) -> Result<(), Error> {
    if !ckpt.exists() {
        return Ok(());
    }
    let state = ckpt.state()?;
    if state.stage != stage {
        return Err(ckpt.bad(format!("holds a {} checkpoint, not {stage}", state.stage)));
    }
    let differences = options.resume_differences(&state.options);
    if !differences.is_empty() {
        return Err(
            ckpt.bad(format!("a resume keeps the run's training options; asked to change {}", differences.join(", ")))
        );
    }
    Ok(())
}

/// A fresh state, or the checkpoint's when one exists in `ckpt`: the run then resumes with
/// the checkpoint's config, tokenizer and options; `options` may change only what
/// [`TrainOptions::resume_differences`] allows (anything else is an error naming it).
pub(crate) fn start_state(
    ckpt: &Checkpoint,
    stage: &str,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    options: &TrainOptions,
) -> Result<(TrainState, bool), Error> {
    options.check()?;
    if ckpt.exists() {
        check_resume(ckpt, stage, options)?;
        let mut state = ckpt.state()?;
        state.options.epochs = options.epochs;
        state.options.max_steps = options.max_steps;
        state.options.checkpoint_every = options.checkpoint_every;
        state.options.log_every = options.log_every;
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
        stage_state: serde_json::Value::Null,
        files: Vec::new(),
    };
    Ok((state, false))
}

/// A new model drawn from `seed`, the same on every device: burn draws initial weights with
/// each device's own generator, so they are drawn on the CPU and loaded onto `device` (a CPU
/// run and a GPU run from one seed then start from one model). `device` is seeded too, for
/// what it draws itself (dropout masks).
pub(crate) fn init_model<M: Module>(seed: u64, device: &Device, new: impl Fn(&Device) -> M) -> M {
    let cpu = crate::cpu();
    cpu.seed(seed);
    let drawn = new(&cpu).into_record();
    // `new` draws some weights eagerly: the model that takes the record is made after the
    // CPU's draw, and the device is seeded after both
    let model = new(device).try_load_record(drawn).expect("a model's record fits a model of its config");
    device.seed(seed);
    model
}

/// Runs `stage` from `state` (resuming the checkpoint's weights, optimizer and stage state
/// when `resume`) until the epochs or `max_steps` are done.
pub(crate) fn fit<M: Module, S: Stage<M>>(
    mut model: M,
    stage: &mut S,
    mut state: TrainState,
    ckpt: &Checkpoint,
    resume: bool,
    progress: Progress,
) -> Result<M, Error> {
    let opts = state.options.clone();
    let mut optim = opts.optimizer();
    if resume {
        model = ckpt.load_model(model)?;
        optim = ckpt.load_optim(optim)?;
        stage.restore(&state.stage_state).map_err(|e| ckpt.bad(format!("state.json: {e}")))?;
    }
    let n = stage.items();
    // (a batch of 0 is refused with the options, by start_state)
    if n < opts.batch_size {
        return Err(ckpt.bad(format!("{n} training items for batches of {}", opts.batch_size)));
    }
    let per_epoch = n / opts.batch_size;
    let total = opts.max_steps.unwrap_or(usize::MAX).min(per_epoch.saturating_mul(opts.epochs));
    // the loss lines can come before the first checkpoint writes the folder
    std::fs::create_dir_all(&ckpt.dir).map_err(|e| Error::io(&ckpt.dir, e))?;
    let metrics_path = ckpt.dir.join("metrics.jsonl");
    let steps_path = ckpt.dir.join("steps.jsonl");
    if resume {
        // lines of steps after the checkpoint's would be written again
        cut_after(&metrics_path, state.step)?;
        cut_after(&steps_path, state.step)?;
    }
    let mut window = Window::new();
    let save = |model: &M, optim: &ModuleOptimizer, state: &mut TrainState, stage: &S| {
        state.stage_state = stage.state();
        ckpt.save(model, Some(optim), state)
    };
    while state.epoch < opts.epochs && state.step < total {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(opts.seed, Stream::EpochOrder(state.epoch as u64)).shuffle(&mut order);
        let mut epoch = Window::new();
        for b in state.batch_in_epoch..per_epoch {
            if state.step >= total {
                break;
            }
            let lr = opts.learning_rate_at(state.step, total);
            let batch = &order[b * opts.batch_size..(b + 1) * opts.batch_size];
            let (m, metrics) = crate::on_cpu_pool(|| stage.step(model, &mut optim, lr, batch, state.step));
            model = m;
            epoch.add(&metrics);
            window.add(&metrics);
            state.step += 1;
            state.batch_in_epoch = b + 1;
            if state.step.is_multiple_of(opts.log_every.max(1)) {
                append_line(&steps_path, &window.take(S::NAME, state.epoch, state.step, opts.batch_size))?;
            }
            let report = StepReport { epoch: state.epoch, step: state.step, total_steps: total, loss: metrics[0].1 };
            (progress.on_step)(&report);
            if state.step.is_multiple_of(opts.checkpoint_every.max(1)) {
                save(&model, &optim, &mut state, stage)?;
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
        save(&model, &optim, &mut state, stage)?;
        if count > 0 {
            append_line(&metrics_path, &line)?;
            (progress.on_epoch)(&line);
        }
    }
    Ok(model)
}
