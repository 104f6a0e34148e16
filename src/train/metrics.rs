//! What training reports: a [`StepReport`] after each step (the progress bar), and mean
//! metrics per epoch (`metrics.jsonl`) and per `log_every` steps (`steps.jsonl`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::Error;

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
    pub metrics: BTreeMap<String, f64>,
}

/// Named metrics of one step (the first is the loss the progress bar shows).
pub type StepMetrics = Vec<(&'static str, f64)>;

/// Sums of step metrics since `start`, turned into one mean line.
pub(crate) struct Window {
    sums: BTreeMap<String, f64>,
    pub(crate) steps: usize,
    start: Instant,
}

impl Window {
    pub(crate) fn new() -> Self {
        Self { sums: Default::default(), steps: 0, start: Instant::now() }
    }

    pub(crate) fn add(&mut self, metrics: &[(&'static str, f64)]) {
        for (k, v) in metrics {
            *self.sums.entry(k.to_string()).or_default() += v;
        }
        self.steps += 1;
    }

    /// The means since the start, as a line; the window starts again.
    pub(crate) fn take(&mut self, stage: &str, epoch: usize, step: usize, batch_size: usize) -> EpochMetrics {
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

pub(crate) fn append_line(path: &Path, line: &EpochMetrics) -> Result<(), Error> {
    use std::io::Write;
    let line = serde_json::to_string(line).expect("metrics serialize");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}
