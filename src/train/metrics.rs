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

/// Cuts a metrics file back to the lines of steps up to `step` (a resumed run continues
/// from its checkpoint's step, so later lines were of steps it runs again) and drops a line
/// torn by a kill mid-write. Rewritten atomically; a missing file stays missing.
pub(crate) fn cut_after(path: &Path, step: usize) -> Result<(), Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            let value: Option<serde_json::Value> = serde_json::from_str(line).ok();
            value.and_then(|v| v.get("step")?.as_u64()).is_some_and(|s| s as usize <= step)
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    if kept.len() != text.len() {
        crate::error::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}
