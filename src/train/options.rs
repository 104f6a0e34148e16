//! How to train one stage: the options every run records in its checkpoint, the optimizer
//! they make, and the learning rate of each step.

use burn::optim::{AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

/// How to train one stage. [`TrainOptions::default`] is the one source of the CLI's defaults.
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
            log_every: fifty(),
            codebook_from_data: true,
            restart_dead_every: 100,
            codebook_decay: 0.99,
        }
    }
}

fn fifty() -> usize {
    50
}

impl TrainOptions {
    /// The optimizer these options train with: AdamW with their weight decay.
    pub fn optimizer(&self) -> ModuleOptimizer {
        AdamWConfig::new().with_weight_decay(self.weight_decay as f32).init()
    }

    /// The learning rate of optimizer step `step` (0-based): linear warm-up, then constant.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        self.learning_rate * ((step + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0)
    }
}
