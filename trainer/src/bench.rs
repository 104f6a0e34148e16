//! `mxq bench`: speed figures (not tests) on synthetic data of the right shapes, like the
//! PyTorch peer (`scripts/bench-peer`) so the two compare: stage-1 and prior training — the
//! steps `mxq train` runs (`Stage1Step`, `PriorStep`: masking, loss, AdamW, codebook
//! upkeep) — and sampling 1 and 16 pairs (72 steps with the KV cache + decode) from f32
//! weights and from the int8 bundle. Each figure runs in its own child process, so its peak
//! RSS is its own; medians of `--runs` timed runs after one warm-up. Prints one JSON object
//! per line; each says what it timed, and sampling figures which `kernels` ran the prior
//! (`packed`: `mxq::kernels`; `--no-packed-kernels` gives burn's layers for a side-by-side).

use std::time::Instant;

use anyhow::{Context, Result, bail};
#[cfg(feature = "ndarray")]
use burn::prelude::Device;
use clap::Args;
use serde_json::json;

use mxq::bundle::{self, Generator, Precision};
use mxq::data::PairSet;
use mxq::data::tokenizer::CaptionTokenizer;
use mxq::device::DeviceChoice;
use mxq::model::mxq_vae::MxqVae;
use mxq::model::prior::Prior;
use mxq::rng::{Rng, Stream};
use mxq::sample::SampleOptions;
use mxq::train::{CodeSequences, PriorStep, Stage, Stage1Step, TrainOptions};
use mxq::{MxqConfig, cpu};

use crate::{DeviceArgs, LoadArgs};

const MEASURES: [&str; 6] =
    ["stage1_train", "prior_train", "sample1_f32", "sample16_f32", "sample1_int8", "sample16_int8"];

#[derive(Args)]
pub struct BenchArgs {
    /// Presets to measure (paper, demo, tiny).
    #[arg(long, value_delimiter = ',', default_value = "paper,demo")]
    presets: Vec<String>,
    /// Training batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Training steps per timed run.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Timed runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// CPU backend: flex (the default build's), or ndarray (a build with `--features ndarray`
    /// or `--features openblas`, then with OpenBLAS matmuls).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// Where to measure (--backend picks the CPU's backend).
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    load: LoadArgs,
    /// Internal: run one measure in this process.
    #[arg(long, hide = true)]
    only: Option<String>,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if let Some(measure) = &a.only {
        let preset = a.presets.first().context("--only needs one preset")?;
        let figure = measure_one(preset, measure, &a)?;
        println!("{}", serde_json::to_string(&figure)?);
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    for preset in &a.presets {
        MxqConfig::preset(preset)?;
        for measure in MEASURES {
            let out = std::process::Command::new(&exe)
                .args(["bench", "--only", measure, "--presets", preset, "--backend", &a.backend])
                .args(["--device", &a.device.device.to_string()])
                .args(["--batch", &a.batch.to_string(), "--steps", &a.steps.to_string(), "--runs", &a.runs.to_string()])
                .args(a.load.no_packed_kernels.then_some("--no-packed-kernels"))
                .output()?;
            if !out.status.success() {
                bail!("bench {preset} {measure} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Times `run` once to warm up, then `runs` times; the median seconds.
fn timed(runs: usize, mut run: impl FnMut()) -> f64 {
    run();
    median(
        (0..runs.max(1))
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Times `steps` steps of a stage per run, as `mxq train`'s loop runs them (on the CPU pool,
/// the model moved into each step as `fit` does, the step counter going on from run to run,
/// so the warm-up holds step 0).
fn time_steps<M: burn::module::Module, S: Stage<M>>(
    a: &BenchArgs,
    model: M,
    stage: &mut S,
    opts: &TrainOptions,
) -> f64 {
    let mut optim = opts.optimizer();
    let batch: Vec<usize> = (0..a.batch).collect();
    let (mut model, mut step) = (Some(model), 0);
    timed(a.runs, || {
        mxq::on_cpu_pool(|| {
            for _ in 0..a.steps {
                let lr = opts.learning_rate_at(step, usize::MAX);
                model = Some(stage.step(model.take().expect("a model"), &mut optim, lr, &batch, step).0);
                step += 1;
            }
        })
    })
}

fn measure_one(preset: &str, measure: &str, a: &BenchArgs) -> Result<serde_json::Value> {
    let mut config = MxqConfig::preset(preset)?;
    let (device, backend) = match (a.device.device, a.backend.as_str()) {
        (DeviceChoice::Cpu, "flex") => (cpu(), a.backend.clone()),
        #[cfg(feature = "ndarray")]
        (DeviceChoice::Cpu, "ndarray") => (Device::ndarray(), a.backend.clone()),
        (DeviceChoice::Cpu, other) => {
            bail!("backend {other} is not in this build (flex; ndarray with --features ndarray)")
        }
        (other, "flex") => (a.device.start()?, other.to_string()),
        (other, backend) => bail!("--backend {backend} is a CPU backend: it does not go with --device {other}"),
    };
    let mut rng = Rng::new(0, Stream::Bench);
    let opts = TrainOptions { batch_size: a.batch, ..TrainOptions::default() };
    let mut kernels = None;
    let (figure, value, unit, timed_what) = match measure {
        "stage1_train" => {
            let s = &config.stage1;
            let train = device.clone().autodiff();
            // random images, and captions of random tokens (ids 3.. are words) padded from a random length
            let (b, l) = (a.batch, s.text.token_length);
            let images: Vec<u8> = (0..b * 3 * 64 * 64).map(|_| rng.below(256) as u8).collect();
            let tokens: Vec<u32> = (0..b)
                .flat_map(|_| {
                    let len = 8 + rng.below(l - 8);
                    (0..l)
                        .map(|i| if i < len { 3 + rng.below(s.text.vocab_size - 3) as u32 } else { 0 })
                        .collect::<Vec<_>>()
                })
                .collect();
            let data = PairSet { images, tokens, length: l };
            let mut stage = Stage1Step::new(&data, &config, &opts, &train);
            let seconds = time_steps(a, MxqVae::new(s, &train), &mut stage, &opts);
            let what = "mxq train's stage-1 step: masking, loss, backward, AdamW, EMA codebook update, code counts \
                        (codebook seeding in the warm-up; dead-code restarts every 100 steps fall outside)";
            ("stage1_train", (a.steps * b) as f64 / seconds, "pairs/s", what)
        }
        "prior_train" => {
            let s = &config.stage1;
            let train = device.clone().autodiff();
            let (b, length) = (a.batch, s.sequence_length());
            let codes: Vec<u32> = (0..b * length).map(|_| rng.below(s.codebook_entries()) as u32).collect();
            let sequences = CodeSequences { codes, length };
            let mut stage = PriorStep::new(&sequences, &train);
            let seconds = time_steps(a, Prior::for_config(&config, &train), &mut stage, &opts);
            (
                "prior_train",
                (a.steps * b) as f64 / seconds,
                "seq/s",
                "mxq train's prior step: next-code loss, backward, AdamW",
            )
        }
        m if m.starts_with("sample") => {
            let count: usize = if m.starts_with("sample16") { 16 } else { 1 };
            let precision = if m.ends_with("int8") { Precision::Int8 } else { Precision::F32 };
            // a freshly initialised generator of the preset's shape, through a real bundle
            // (with a small tokenizer: the bundle needs one, and its size sets the vocabulary)
            let words = [
                "a", "red", "green", "blue", "white", "digit", "at", "the", "upper", "lower", "left", "right", "center",
            ];
            let captions: Vec<String> = (0..500)
                .map(|i| format!("{} {} {} {}.", words[i % 13], words[(i / 13) % 13], i % 10, words[(i / 7) % 13]))
                .collect();
            let s = &config.stage1;
            let tokenizer =
                CaptionTokenizer::train(captions.iter().map(String::as_str), s.text.vocab_size, s.text.token_length)?;
            config.stage1.text.vocab_size = tokenizer.vocab_size();
            let bytes = bundle::export(&Generator::new(&config, &device), &config, &tokenizer, precision)?;
            let loaded = bundle::load(&bytes, &device, a.load.options())?;
            kernels = Some(if loaded.packed_prior.is_some() { "packed" } else { "burn" });
            let opts = SampleOptions { seed: 1, ..Default::default() };
            let seconds = timed(a.runs, || {
                loaded.generate(count, count, opts, &device);
            });
            (m, seconds, "s", "sampling the prior (72 steps, KV cache) and decoding, as mxq generate")
        }
        other => bail!("unknown measure {other}; one of {MEASURES:?}"),
    };
    let s = &config.stage1;
    Ok(json!({
        "preset": preset, "figure": figure, "value": value, "unit": unit,
        "batch": if figure.contains("train") { a.batch } else { 0 },
        "vocab": s.text.vocab_size, "codebook": s.codebook.size, "backend": backend, "kernels": kernels,
        "timed": timed_what, "peak_rss_mb": peak_rss_mb(),
    }))
}
