//! `mxq bench`: speed figures (not tests) for issue 5, on synthetic tensors of the right
//! shapes, like the PyTorch peer (`../shared/peer/mxq_peer.py`) so the two compare:
//! stage-1 training (forward + backward + AdamW), prior training, and sampling 1 and 16
//! pairs (72 steps with the KV cache + decode) from f32 weights and from the int8 bundle.
//! Each figure runs in its own child process, so its peak RSS is its own; medians of
//! `--runs` timed runs after one warm-up. Prints one JSON object per line; sampling figures
//! say which `kernels` ran the prior (`packed`: `mxq::sampling_kernels`; `MXQ_PACKED=0`
//! gives burn's layers for a side-by-side).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use clap::Args;
use serde_json::json;

use mxq::bundle::{self, Generator, Precision};
use mxq::mxq_vae::MxqVae;
use mxq::prior::Prior;
use mxq::rng::Rng;
use mxq::sampler::SampleOptions;
use mxq::tokenizer::CaptionTokenizer;
use mxq::{MxqConfig, cpu};

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
                .args(["--batch", &a.batch.to_string(), "--steps", &a.steps.to_string(), "--runs", &a.runs.to_string()])
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

fn measure_one(preset: &str, measure: &str, a: &BenchArgs) -> Result<serde_json::Value> {
    let config = MxqConfig::preset(preset)?;
    let s = &config.stage1;
    let device = match a.backend.as_str() {
        "flex" => cpu(),
        #[cfg(feature = "ndarray")]
        "ndarray" => Device::ndarray(),
        other => bail!("backend {other} is not in this build (flex; ndarray with --features ndarray)"),
    };
    let mut rng = Rng::new(0, 7);
    let mut vocab = s.vocab_size;
    let mut kernels = None;
    let (figure, value, unit) = match measure {
        "stage1_train" => {
            let train = device.clone().autodiff();
            let mut vae = MxqVae::new(s, &train);
            let mut optim = AdamWConfig::new().init();
            let (b, l) = (a.batch, s.token_length);
            let images: Vec<f32> = (0..b * 3 * 64 * 64).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
            let tokens: Vec<i64> = (0..b * l).map(|_| rng.below(s.vocab_size) as i64).collect();
            let images = Tensor::<4>::from_data(TensorData::new(images, [b, 3, 64, 64]), &train);
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, l]), &train);
            // on the CPU pool, like `mxq train`'s steps
            let seconds = timed(a.runs, || {
                mxq::on_cpu_pool(|| {
                    for _ in 0..a.steps {
                        let inputs = (images.clone(), tokens.clone());
                        let out = vae.clone().forward(inputs.clone(), inputs, s.commitment);
                        let grads = GradientsParams::from_grads(out.loss.total.backward(), &vae);
                        vae = optim.step(1e-4, vae.clone(), grads);
                    }
                })
            });
            ("stage1_train", (a.steps * b) as f64 / seconds, "pairs/s")
        }
        "prior_train" => {
            let train = device.clone().autodiff();
            let mut prior = Prior::new(&config.prior, s.codes(), s.positions(), &train);
            let mut optim = AdamWConfig::new().init();
            let (b, p) = (a.batch, s.positions());
            let codes: Vec<i64> = (0..b * p).map(|_| rng.below(s.codes()) as i64).collect();
            let codes = Tensor::<2, Int>::from_data(TensorData::new(codes, [b, p]), &train);
            let seconds = timed(a.runs, || {
                mxq::on_cpu_pool(|| {
                    for _ in 0..a.steps {
                        let loss = prior.loss(codes.clone());
                        let grads = GradientsParams::from_grads(loss.backward(), &prior);
                        prior = optim.step(1e-4, prior.clone(), grads);
                    }
                })
            });
            ("prior_train", (a.steps * b) as f64 / seconds, "seq/s")
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
            let tokenizer = CaptionTokenizer::train(captions.iter().map(String::as_str), s.vocab_size, s.token_length)?;
            let mut config = config.clone();
            config.stage1.vocab_size = tokenizer.vocab_size();
            let bytes = bundle::export(&Generator::new(&config, &device), &config, &tokenizer, precision)?;
            let loaded = bundle::load(&bytes, &device)?;
            vocab = tokenizer.vocab_size();
            // the prior's CPU kernels (AVX-512 CPUs; `MXQ_PACKED=0` for burn's layers)
            kernels = Some(if loaded.generator.prior.is_packed() { "packed" } else { "burn" });
            let opts = SampleOptions { seed: 1, ..Default::default() };
            let seconds = timed(a.runs, || {
                loaded.generate(count, count, opts, &device);
            });
            (m, seconds, "s")
        }
        other => bail!("unknown measure {other}; one of {MEASURES:?}"),
    };
    Ok(
        json!({ "preset": preset, "figure": figure, "value": value, "unit": unit, "batch": if figure.contains("train") { a.batch } else { 0 }, "vocab": vocab, "codebook": s.codebook_size, "backend": a.backend, "kernels": kernels, "peak_rss_mb": peak_rss_mb() }),
    )
}
