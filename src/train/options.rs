//! How to train one stage: the options every run records in its checkpoint, the optimizer
//! they make, and the learning rate of each step.

use burn::optim::{AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use crate::data::masking::Half;

/// How the learning rate moves after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Stays at the learning rate.
    #[default]
    Constant,
    /// Falls along a half cosine to a tenth of it at the run's last step.
    Cosine,
}

crate::config::serde_names!(Schedule, "a schedule", "constant, cosine");

/// How to train one stage. [`TrainOptions::default`] is the one source of the CLI's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate over this many steps.
    pub warmup_steps: usize,
    /// After the warm-up (absent in runs recorded before it existed: constant).
    #[serde(default)]
    pub schedule: Schedule,
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
    /// Decoders (`mxq train decoders`): the share of codes swapped for the code another pair
    /// of the batch has at the same position, so the decoders learn to read codes a prior
    /// drew imperfectly (0 in runs recorded before it existed).
    #[serde(default)]
    pub code_noise: f64,
    /// Decoders: trained on the codes of this half alone (the other masked entirely, as the
    /// conditional modes encode), to give back the whole pair; `None`, whole pairs' codes.
    #[serde(default)]
    pub given: Option<Half>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 5e-4,
            weight_decay: 1e-4,
            warmup_steps: 100,
            schedule: Schedule::Constant,
            seed: 0,
            max_steps: None,
            checkpoint_every: 500,
            log_every: fifty(),
            codebook_from_data: true,
            restart_dead_every: 100,
            codebook_decay: 0.99,
            code_noise: 0.0,
            given: None,
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

    /// The options of `self` that a resume of a run recorded with `recorded` would change,
    /// as "name: given (the run's: recorded)". Only `epochs`, `max_steps`,
    /// `checkpoint_every` and `log_every` may change on a resume: the others shape the
    /// steps themselves.
    pub fn resume_differences(&self, recorded: &TrainOptions) -> Vec<String> {
        let free = TrainOptions {
            epochs: recorded.epochs,
            max_steps: recorded.max_steps,
            checkpoint_every: recorded.checkpoint_every,
            log_every: recorded.log_every,
            ..self.clone()
        };
        let (given, recorded) = (serde_json::to_value(free), serde_json::to_value(recorded));
        let (Ok(serde_json::Value::Object(given)), Ok(serde_json::Value::Object(recorded))) = (given, recorded) else {
            return vec!["the options do not serialize".into()];
        };
        given
            .iter()
            .filter(|(k, v)| recorded.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v} (the run's: {})", recorded.get(k).unwrap_or(&serde_json::Value::Null)))
            .collect()
    }

    /// Refuses options that would train nothing or train wrong, naming the option: a
    /// learning rate that is not a positive number (a NaN turns every weight NaN), a decay
    /// or share outside its range, zero epochs, steps or pairs per batch.
    pub fn check(&self) -> Result<(), crate::Error> {
        let bad = |why: String| Err(crate::Error::Options(why));
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("learning rate {}: a positive number", self.learning_rate));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {}: a number from 0", self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.codebook_decay) {
            return bad(format!("codebook decay {}: from 0 up to (not including) 1", self.codebook_decay));
        }
        if !(0.0..1.0).contains(&self.code_noise) {
            return bad(format!("code noise {}: a share from 0 up to (not including) 1", self.code_noise));
        }
        if self.epochs == 0 {
            return bad("0 epochs: at least 1".into());
        }
        if self.max_steps == Some(0) {
            return bad("at most 0 steps: at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batches of 0 pairs: at least 1".into());
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based) of `total`: linear warm-up, then
    /// the schedule. A resumed run with more epochs stretches the cosine from that step on.
    pub fn learning_rate_at(&self, step: usize, total: usize) -> f64 {
        let warm = self.warmup_steps.max(1);
        if step < warm {
            return self.learning_rate * (step + 1) as f64 / warm as f64;
        }
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Cosine => {
                let done = (step - warm) as f64 / total.saturating_sub(warm).max(1) as f64;
                let floor = 0.1 * self.learning_rate;
                floor + (self.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_falls_to_a_tenth_at_the_last_step() {
        let o = TrainOptions { learning_rate: 1.0, warmup_steps: 10, schedule: Schedule::Cosine, ..Default::default() };
        assert!((o.learning_rate_at(0, 110) - 0.1).abs() < 1e-12);
        assert!((o.learning_rate_at(9, 110) - 1.0).abs() < 1e-12);
        assert!((o.learning_rate_at(10, 110) - 1.0).abs() < 1e-12);
        assert!((o.learning_rate_at(60, 110) - 0.55).abs() < 1e-12, "halfway: midway between 1 and 0.1");
        assert!((o.learning_rate_at(110, 110) - 0.1).abs() < 1e-12);
        let falling: Vec<f64> = (10..=110).map(|s| o.learning_rate_at(s, 110)).collect();
        assert!(falling.windows(2).all(|w| w[1] < w[0]));
        let constant = TrainOptions { schedule: Schedule::Constant, ..o.clone() };
        assert!((constant.learning_rate_at(100, 110) - 1.0).abs() < 1e-12);
        assert_eq!("cosine".parse::<Schedule>(), Ok(Schedule::Cosine));
        assert_eq!(Schedule::Cosine.to_string(), "cosine");
        assert!("linear".parse::<Schedule>().is_err());
    }
}
