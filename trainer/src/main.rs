//! `mxq`: the command line for data, training, export and generation.
//! It only parses arguments, shows progress and calls the core crate.

mod bench;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use mxq::bundle::{self, Generator, Precision};
use mxq::data::caption_mnist;
use mxq::data::{CaptionMnist, Digits, read_pairs, write_pairs};
use mxq::judge::Scores;
use mxq::sampler::SampleOptions;
use mxq::tokenizer::CaptionTokenizer;
use mxq::train::{self, EpochMetrics, PairSet, StepReport, TrainOptions};
use mxq::{MxqConfig, cpu};

/// mxq — MXQ-VAE: generate image–caption pairs that agree.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a data set in the pairs layout (PNG + TXT + pairs.jsonl).
    #[command(subcommand)]
    Data(DataCommand),
    /// Train stage 1 (the cross quantizer) or stage 2 (the prior).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Write the single-file bundle (prior, codebook, cross maps, decoders; int8) from a run.
    Export(ExportArgs),
    /// Generate pairs from a bundle into the pairs layout.
    Generate(GenerateArgs),
    /// Judge a folder of Caption MNIST pairs (any system's, in the pairs layout).
    Eval(EvalArgs),
    /// Speed figures as JSON lines: training and sampling throughput, peak memory.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct EvalArgs {
    /// Judge this folder (pairs.jsonl + images), from any system.
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    pairs: Option<PathBuf>,
    /// Or generate --count pairs from this bundle and judge them beside as many real test
    /// pairs (the ceiling).
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature, top-k (0 = off) and top-p for --bundle.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Also report this run's stage-1 reconstruction of --count real test pairs (image
    /// MSE/PSNR, token accuracy, codebook usage); needs the run's stage1/ checkpoint.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Folder with the MNIST IDX files (for the real test pairs).
    #[arg(long, default_value_os_t = repo_path("data/mnist"))]
    mnist: PathBuf,
    /// Judge file (`mxq train judge`).
    #[arg(long, default_value_os_t = repo_path("assets/judge.safetensors"))]
    judge: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Caption MNIST, exactly per CAPTION_MNIST.md.
    CaptionMnist(CaptionMnistArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Split {
    Train,
    Test,
}

#[derive(Args)]
struct CaptionMnistArgs {
    /// train: digits 0..8000, seed 0; test: digits 8000.., seed 1.
    #[arg(long, value_enum)]
    split: Split,
    /// Pairs to write (the spec's splits: 60000 train, 10000 test).
    #[arg(long)]
    count: usize,
    /// Override the split's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Folder with the MNIST IDX files (the 10k set or the full 60k files).
    #[arg(long, default_value_os_t = repo_path("data/mnist"))]
    mnist: PathBuf,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Stage 1: encoders, shared codebook, cross maps, decoders. Trains the tokenizer first.
    Stage1(Stage1Args),
    /// Stage 2: the prior over the codes of a trained stage 1 (in the same run folder).
    Prior(PriorArgs),
    /// The judge's digit classifier, on the train digits only; reports test-digit accuracy.
    Judge(JudgeArgs),
}

#[derive(Args)]
struct JudgeArgs {
    /// Where to write the judge file.
    #[arg(long, default_value_os_t = repo_path("assets/judge.safetensors"))]
    out: PathBuf,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder with the MNIST IDX files.
    #[arg(long, default_value_os_t = repo_path("data/mnist"))]
    mnist: PathBuf,
}

#[derive(Args)]
struct CommonTrain {
    /// Training pairs: a folder with pairs.jsonl, or a .jsonl file.
    #[arg(long)]
    data: PathBuf,
    /// Run folder: holds tokenizer.json, stage1/ and prior/ (checkpoints, metrics.jsonl).
    #[arg(long)]
    run: PathBuf,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many optimizer steps in all.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Steps between checkpoints (one is also written at each epoch end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    /// Steps between lines of `steps.jsonl` (mean losses and rate over those steps).
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Continue from the checkpoint in the run folder.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct Stage1Args {
    #[command(flatten)]
    common: CommonTrain,
    /// Model sizes: paper, demo or tiny.
    #[arg(long, default_value = "demo")]
    preset: String,
    /// A JSON file with a whole config (overrides --preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The paper's comparison, as configs of the same model: mxq, no-masking, no-joint,
    /// separate (own codebook per modality, no joint encoder, no cross maps, no masking).
    #[arg(long, default_value = "mxq")]
    variant: String,
    /// Largest tokenizer vocabulary (specials included).
    #[arg(long, default_value_t = 128)]
    vocab_size: usize,
    /// Tokens per caption.
    #[arg(long, default_value_t = 64)]
    token_length: usize,
    /// Steps between dead-code restarts (0 = off).
    #[arg(long, default_value_t = 100)]
    restart_dead_every: usize,
    /// Decay of the EMA codebook update (0 = train the codebook by gradient instead)
    #[arg(long, default_value_t = 0.99)]
    codebook_decay: f64,
    /// Start the codebook from random values instead of encoder outputs.
    #[arg(long)]
    no_codebook_from_data: bool,
}

#[derive(Args)]
struct PriorArgs {
    #[command(flatten)]
    common: CommonTrain,
}

#[derive(Args)]
struct ExportArgs {
    /// Run folder with finished stage1/ and prior/.
    #[arg(long)]
    run: PathBuf,
    /// Bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// Keep f32 weights instead of int8.
    #[arg(long)]
    f32: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Bundle file (default: the shipped demo bundle).
    #[arg(long, default_value_os_t = repo_path("assets/demo.mxq.safetensors"))]
    bundle: PathBuf,
    #[arg(long, default_value_t = 16)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature. 0.7 by default: on the shipped bundle it makes 96% of captions
    /// parse and 88% name the regions and colours the image shows (1.0: 84% and 64%).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Keep the k most likely codes (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Pairs sampled together.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Output folder (PNG + TXT + pairs.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Also write all images as one grid PNG here.
    #[arg(long)]
    grid: Option<PathBuf>,
}

/// A path inside the source tree (the shipped data and bundle).
fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(DataCommand::CaptionMnist(a)) => data_caption_mnist(a),
        Command::Train(TrainCommand::Stage1(a)) => train_stage1(a),
        Command::Train(TrainCommand::Prior(a)) => train_prior(a),
        Command::Train(TrainCommand::Judge(a)) => train_judge(a),
        Command::Export(a) => export(a),
        Command::Generate(a) => generate(a),
        Command::Eval(a) => eval(a),
        Command::Bench(a) => bench::bench(a),
    }
}

fn data_caption_mnist(a: CaptionMnistArgs) -> Result<()> {
    let digits = Digits::load_dir(&a.mnist)?;
    let split = match a.split {
        Split::Train => caption_mnist::Split::Train,
        Split::Test => caption_mnist::Split::Test,
    };
    let generator = CaptionMnist::split(&digits, split, a.seed)?;
    let bar = bar(a.count as u64, "pairs");
    let pairs: Vec<_> = (0..a.count as u64).map(|i| (generator.pair(i), bar.inc(1)).0).collect();
    bar.finish_and_clear();
    let n = write_pairs(&a.out, pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())))?;
    println!("wrote {n} pairs to {}", a.out.display());
    Ok(())
}

fn options(c: &CommonTrain) -> TrainOptions {
    TrainOptions {
        epochs: c.epochs,
        batch_size: c.batch_size,
        learning_rate: c.lr,
        seed: c.seed,
        max_steps: c.max_steps,
        checkpoint_every: c.checkpoint_every,
        log_every: c.log_every,
        ..TrainOptions::default()
    }
}

fn check_resume(dir: &Path, resume: bool) -> Result<()> {
    let exists = train::Checkpoint::new(dir).exists();
    if exists && !resume {
        bail!("{} already holds a checkpoint: pass --resume to continue it, or choose another --run", dir.display());
    }
    if resume && !exists {
        bail!("--resume: no checkpoint in {}", dir.display());
    }
    Ok(())
}

fn train_stage1(a: Stage1Args) -> Result<()> {
    let c = &a.common;
    let dir = c.run.join("stage1");
    check_resume(&dir, c.resume)?;
    let pairs = read_pairs(&c.data)?;
    let tok_path = c.run.join("tokenizer.json");
    let tokenizer = if c.resume {
        CaptionTokenizer::from_json(
            &std::fs::read_to_string(&tok_path).with_context(|| tok_path.display().to_string())?,
        )?
    } else {
        let t = CaptionTokenizer::train(pairs.iter().map(|p| p.caption.as_str()), a.vocab_size, a.token_length)?;
        mxq::error::write_atomic(&tok_path, t.to_json().as_bytes())?;
        t
    };
    let mut config = match &a.config {
        Some(p) => MxqConfig::from_json(&std::fs::read_to_string(p).with_context(|| p.display().to_string())?)?,
        None => MxqConfig::preset(&a.preset)?,
    }
    .variant(&a.variant)?;
    config.stage1.vocab_size = tokenizer.vocab_size();
    config.stage1.token_length = tokenizer.length();
    config.check()?;
    let opts = TrainOptions {
        restart_dead_every: a.restart_dead_every,
        codebook_decay: a.codebook_decay,
        codebook_from_data: !a.no_codebook_from_data,
        ..options(c)
    };
    let data = PairSet::new(&pairs, &tokenizer);
    eprintln!(
        "stage 1: {} pairs, vocab {}, preset {}, run {}",
        data.len(),
        tokenizer.vocab_size(),
        config.preset,
        c.run.display()
    );
    let device = cpu().autodiff();
    let (mut on_step, mut on_epoch, bar) = reporters(c.batch_size);
    train::train_stage1(&dir, &config, &tokenizer, &data, &opts, &device, &mut on_step, &mut on_epoch)?;
    bar.finish();
    Ok(())
}

fn train_prior(a: PriorArgs) -> Result<()> {
    let c = &a.common;
    let dir = c.run.join("prior");
    check_resume(&dir, c.resume)?;
    let device = cpu();
    let (vae, state) = train::load_stage1(&c.run.join("stage1"), &device)?;
    let tokenizer = CaptionTokenizer::from_json(&state.tokenizer)?;
    let pairs = read_pairs(&c.data)?;
    let data = PairSet::new(&pairs, &tokenizer);
    eprintln!("prior: encoding {} pairs with the frozen stage 1", data.len());
    let codes = train::encode_codes(&vae, &data, 64, &device);
    let (mut on_step, mut on_epoch, bar) = reporters(c.batch_size);
    train::train_prior(
        &dir,
        &state.config,
        &tokenizer,
        &codes,
        &options(c),
        &device.autodiff(),
        &mut on_step,
        &mut on_epoch,
    )?;
    bar.finish();
    Ok(())
}

/// A progress bar with rate and ETA, and a printer for each epoch's metrics.
fn reporters(batch: usize) -> (impl FnMut(&StepReport), impl FnMut(&EpochMetrics), ProgressBar) {
    let bar = bar(0, "steps");
    let b = bar.clone();
    let on_step = move |r: &StepReport| {
        b.set_length(r.total_steps as u64);
        b.set_position(r.step as u64);
        b.set_message(format!("epoch {} loss {:.4} ({} pairs/step)", r.epoch, r.loss, batch));
    };
    let b = bar.clone();
    // printed even when stderr is not a terminal (the bar then hides itself)
    let on_epoch = move |m: &EpochMetrics| b.suspend(|| eprintln!("{}", serde_json::to_string(m).unwrap_or_default()));
    (on_step, on_epoch, bar)
}

fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}");
    bar.set_style(ProgressStyle::with_template(&style).expect("valid template"));
    bar
}

fn export(a: ExportArgs) -> Result<()> {
    let device = cpu();
    let (vae, s1) = train::load_stage1(&a.run.join("stage1"), &device)?;
    let (prior, _) = train::load_prior(&a.run.join("prior"), &device)?;
    let tokenizer = CaptionTokenizer::from_json(&s1.tokenizer)?;
    let generator = Generator { decoder: vae.decoder, prior };
    let precision = if a.f32 { Precision::F32 } else { Precision::Int8 };
    let bytes = bundle::export(&generator, &s1.config, &tokenizer, precision)?;
    mxq::error::write_atomic(&a.out, &bytes)?;
    println!("wrote {} ({} bytes, {precision:?})", a.out.display(), bytes.len());
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let device = cpu();
    let bytes = std::fs::read(&a.bundle).with_context(|| format!("reading bundle {}", a.bundle.display()))?;
    let bundle = bundle::load(&bytes, &device).with_context(|| format!("loading {}", a.bundle.display()))?;
    let opts = SampleOptions { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed };
    let started = std::time::Instant::now();
    let pairs = bundle.generate(a.count, a.batch, opts, &device);
    let seconds = started.elapsed().as_secs_f64();
    write_pairs(&a.out, pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())))?;
    if let Some(grid) = &a.grid {
        let images: Vec<&[u8]> = pairs.iter().map(|p| p.image.as_slice()).collect();
        mxq::error::write_atomic(grid, &mxq::data::pairs::grid_png(&images, 8.min(images.len().max(1)), 2))?;
    }
    println!(
        "wrote {} pairs to {} in {seconds:.2} s ({:.1} pairs/s)",
        pairs.len(),
        a.out.display(),
        pairs.len() as f64 / seconds
    );
    Ok(())
}

fn train_judge(a: JudgeArgs) -> Result<()> {
    use caption_mnist::TRAIN_DIGITS;
    let digits = Digits::load_dir(&a.mnist)?;
    if digits.len() <= TRAIN_DIGITS {
        bail!(
            "{}: {} digits; the judge needs more than {TRAIN_DIGITS} (train) plus test digits",
            a.mnist.display(),
            digits.len()
        );
    }
    let (train, test) = (digits.subset(0..TRAIN_DIGITS), digits.subset(TRAIN_DIGITS..digits.len()));
    let device = cpu().autodiff();
    let bar = ProgressBar::new(a.epochs as u64)
        .with_style(ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg} ETA {eta}")?);
    let classifier = mxq::digit_classifier::train(&train, a.epochs, a.seed, &device, &mut |epoch, loss| {
        bar.set_position(epoch as u64 + 1);
        bar.set_message(format!("loss {loss:.4}"));
    });
    bar.finish();
    let device = cpu();
    let accuracy = mxq::digit_classifier::accuracy(&classifier, &test, &device);
    let judge = mxq::judge::Judge::new(classifier, accuracy, &device);
    mxq::error::write_atomic(&a.out, &judge.to_bytes()?)?;
    println!(
        "judge: digit accuracy {:.2}% on {} held-out test digits (trained on {}); wrote {}",
        100.0 * accuracy,
        test.len(),
        train.len(),
        a.out.display()
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    use mxq::data::Pair;
    let bytes = std::fs::read(&a.judge).with_context(|| format!("judge file {}", a.judge.display()))?;
    let judge = mxq::judge::Judge::from_bytes(bytes, &cpu()).with_context(|| format!("{}", a.judge.display()))?;
    let score = |pairs: &[Pair]| {
        judge.score(&pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())).collect::<Vec<_>>())
    };
    // the reference: real pairs of the spec's test split, as many as the pairs judged
    let test = CaptionMnist::split(&Digits::load_dir(&a.mnist)?, caption_mnist::Split::Test, None)?;
    let real_test = |range: std::ops::Range<usize>| -> Vec<Pair> {
        range.map(|i| test.pair(i as u64)).map(|p| Pair { image: p.image, caption: p.caption }).collect()
    };
    let mut report = match (&a.pairs, &a.bundle) {
        (Some(dir), _) => {
            let pairs = read_pairs(dir)?;
            let real = score(&real_test(0..pairs.len()));
            serde_json::to_value(score(&pairs).with_frechet(&real)?)?
        }
        (None, Some(path)) => {
            let device = cpu();
            let bytes = std::fs::read(path).with_context(|| format!("reading bundle {}", path.display()))?;
            let bundle = bundle::load(&bytes, &device).with_context(|| format!("loading {}", path.display()))?;
            let opts = SampleOptions { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed };
            let generated: Vec<_> = bundle
                .generate(a.count, 16, opts, &device)
                .into_iter()
                .map(|p| Pair { image: p.image, caption: p.caption })
                .collect();
            let real = score(&real_test(0..a.count));
            let generated = score(&generated).with_frechet(&real)?;
            // the ceiling's distance: the test pairs after those, against the same reference
            let real_frechet = score(&real_test(a.count..2 * a.count)).with_frechet(&real)?.frechet_distance;
            serde_json::json!({
                "generated": generated,
                "real_test": Scores { frechet_distance: real_frechet, ..real },
            })
        }
        (None, None) => bail!("give --pairs DIR or --bundle FILE"),
    };
    if let Some(run) = &a.run {
        let device = cpu();
        let (vae, state) = train::load_stage1(&run.join("stage1"), &device)?;
        let tokenizer = CaptionTokenizer::from_json(&state.tokenizer)?;
        let recon = mxq::reconstruction::reconstruct(&vae, &tokenizer, &real_test(0..a.count), &device);
        report["stage1_reconstruction"] = serde_json::to_value(recon)?;
    }
    if a.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
