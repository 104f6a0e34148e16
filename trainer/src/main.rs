//! `mxq`: the command line for data, training, export, generation and evaluation.
//! It only parses arguments, shows progress and calls the core crate, where every default
//! lives (`TrainOptions::default`, `SampleOptions::default`).

mod bench;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use burn::prelude::Device;
use mxq::bundle::{self, Bundle, LoadOptions, Precision};
use mxq::config::SequenceOrder;
use mxq::data::caption_mnist::{self, CaptionMnist, TRAIN_DIGITS};
use mxq::data::masking::Half;
use mxq::data::tokenizer::CaptionTokenizer;
use mxq::data::{Digits, Fitted, Pair, PairSet, read_pairs, read_pairs_fitted};
use mxq::device::DeviceChoice;
use mxq::eval::judge::{Judge, Scores};
use mxq::eval::protocol::{self, TestSplit};
use mxq::sample::SampleOptions;
use mxq::sample::conditional::{CAPTION_CANDIDATES, CAPTION_TEMPERATURE, Encoder, Given};
use mxq::sample::rerank::{Rerank, Scored, candidates_for};
use mxq::train::{
    self, ConfigSource, EpochMetrics, PriorSetup, Progress, Run, Schedule, Stage1Setup, StepReport, TrainOptions,
};

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
    /// Write the single-file bundle (prior, codebook, cross maps, decoders; int8) from a run,
    /// or with --stage1 the run's whole stage 1.
    Export(ExportArgs),
    /// Start a new run from a stage-1 file (`mxq export --stage1`), to train a prior on it.
    Import(ImportArgs),
    /// Generate pairs from a bundle into the pairs layout.
    Generate(GenerateArgs),
    /// Caption images: one JSON line per image, `{"image": …, "caption": …}`.
    Caption(CaptionArgs),
    /// Judge a folder of Caption MNIST pairs (any system's, in the pairs layout).
    Eval(EvalArgs),
    /// Speed figures as JSON lines: training and sampling throughput, peak memory.
    Bench(bench::BenchArgs),
}

/// The MNIST IDX files (for Caption MNIST and the judge).
#[derive(Args)]
struct MnistArgs {
    /// Folder with the MNIST IDX files (the 10k set or the full 60k files).
    #[arg(long, default_value_os_t = repo_path("data/mnist"))]
    mnist: PathBuf,
}

/// Where a command trains or runs.
#[derive(Args)]
pub struct DeviceArgs {
    /// cpu, wgpu (the adapter wgpu prefers: Vulkan, Metal or DX12; printed), or cuda[:N]
    /// (a build with `--features cuda`). Runs, checkpoints and bundles are the same files on
    /// every device: a run may start on one and resume on another.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

impl DeviceArgs {
    /// Starts the device, saying which it is where it is not the CPU.
    pub fn start(&self) -> Result<Device> {
        let (device, what) = self.device.init()?;
        if self.device != DeviceChoice::Cpu {
            eprintln!("device: {what}");
        }
        Ok(device)
    }
}

/// How codes are drawn from the prior.
#[derive(Args)]
struct SampleArgs {
    #[arg(long, default_value_t = SampleOptions::default().seed)]
    seed: u64,
    /// Divides the logits: below 1 sharper, above 1 more varied; 0 = greedy.
    #[arg(long, default_value_t = SampleOptions::default().temperature)]
    temperature: f32,
    /// Keep the k most likely codes (0 = all).
    #[arg(long, default_value_t = SampleOptions::default().top_k)]
    top_k: usize,
    /// Keep the smallest set of codes whose probability reaches p (1 = all).
    #[arg(long, default_value_t = SampleOptions::default().top_p)]
    top_p: f32,
    /// Classifier-free guidance of the codes after the first part (the image's after the
    /// caption's): 1 = the prior as it is; above 1 the image follows the caption more
    /// closely. Needs a prior trained with --unconditional [default: 2 (DEFAULT_GUIDANCE) for
    /// such a prior, else 1].
    #[arg(long)]
    guidance: Option<f32>,
    /// The temperature of the codes after the first part (the image's after the caption's,
    /// for a caption-first prior): below --temperature the image follows its caption more
    /// closely, while --temperature still sets the captions' variety [default: the bundle's].
    #[arg(long)]
    second_temperature: Option<f32>,
}

impl SampleArgs {
    /// The options as given (guidance 1 where not given), to check before a bundle is read.
    fn options(&self) -> SampleOptions {
        let (temperature, top_k, top_p, seed) = (self.temperature, self.top_k, self.top_p, self.seed);
        let (guidance, second_temperature) = (self.guidance.unwrap_or(1.0), self.second_temperature);
        SampleOptions { temperature, top_k, top_p, seed, guidance, second_temperature }
    }

    /// The options for `bundle`: its default guidance and second temperature where none was
    /// given.
    fn options_for(&self, bundle: &Bundle) -> SampleOptions {
        let defaults = bundle.default_options();
        SampleOptions {
            guidance: self.guidance.unwrap_or(defaults.guidance),
            second_temperature: self.second_temperature.or(defaults.second_temperature),
            ..self.options()
        }
    }
}

/// How a bundle is loaded.
#[derive(Args)]
pub struct LoadArgs {
    /// Sample on burn's layers even where the packed CPU kernels run (AVX-512 CPUs).
    #[arg(long)]
    pub no_packed_kernels: bool,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions { packed_kernels: !self.no_packed_kernels }
    }
}

#[derive(Args)]
struct EvalArgs {
    /// Judge this folder (pairs.jsonl + images), from any system.
    #[arg(long, conflicts_with = "bundle")]
    pairs: Option<PathBuf>,
    /// Or generate --count pairs from this bundle and judge them beside as many real test
    /// pairs (the ceiling).
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Sampling for --bundle.
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Also (or only) report this run's stage-1 reconstruction of --count real test pairs:
    /// the reconstructed pairs judged (the ceiling its decoders set for generated pairs),
    /// each reconstructed half against the other's original, image MSE/PSNR, token accuracy,
    /// codebook usage; needs the run's stage1/ checkpoint.
    #[arg(long)]
    run: Option<PathBuf>,
    #[command(flatten)]
    mnist: MnistArgs,
    /// With --bundle: also draw an image for each of --count test captions (the encoder from
    /// --stage1) and judge each against its caption.
    #[arg(long, requires = "bundle")]
    drawn: bool,
    /// Also caption each of the first --count test images with this captioner bundle (an
    /// image-first prior on the stage 1 of --stage1), greedily as `mxq caption` does, and
    /// judge each caption against its image.
    #[arg(long)]
    captioner: Option<PathBuf>,
    #[command(flatten)]
    encoder: EncoderArgs,
    /// Also report the share of captions copied verbatim from this training pairs folder
    /// (only its pairs.jsonl is read), for the judged pairs and the real test pairs.
    #[arg(long)]
    train: Option<PathBuf>,
    /// Judge file (`mxq train judge`).
    #[arg(long, default_value_os_t = repo_path("assets/judge.safetensors"))]
    judge: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rerank: RerankArgs,
    /// The temperature --captioner draws captions at (0: greedily, one candidate).
    #[arg(long, default_value_t = CAPTION_TEMPERATURE)]
    caption_temperature: f32,
    /// --captioner: each caption the best of this many, scored by --bundle (default: the
    /// shipped demo bundle) as `mxq caption` scores them; 1: no reranking [default: 8
    /// (CAPTION_CANDIDATES); 1 at --caption-temperature 0].
    #[arg(long)]
    caption_candidates: Option<usize>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Caption MNIST, exactly per docs/CAPTION_MNIST.md.
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
    /// Pairs to write (the spec's splits: 60000 train, 10000 test; at most 1,000,000 a folder).
    #[arg(long)]
    count: usize,
    /// Override the split's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder: empty or new.
    #[arg(long)]
    out: PathBuf,
    /// Replace the pairs an earlier run wrote in --out.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    mnist: MnistArgs,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Stage 1: encoders, shared codebook, cross maps, decoders. Trains the tokenizer first.
    Stage1(Stage1Args),
    /// Stage 2: the prior over the codes of a trained stage 1 (in the same run folder).
    Prior(PriorArgs),
    /// Stage 1's decoder half (cross maps, both decoders) fine-tuned on the codes of whole
    /// pairs, the encoders and codebook frozen: the codes stay the same, so a prior trained on
    /// them stays valid (`mxq export --prior` ships one with the new decoders). Written to the
    /// run's decoders/, which the run's stage 1 then uses (export, eval, import files).
    Decoders(DecodersArgs),
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
    #[command(flatten)]
    mnist: MnistArgs,
}

/// What both stages' training takes.
#[derive(Args)]
struct TrainArgs {
    /// Training pairs: a folder with pairs.jsonl, or a .jsonl file.
    #[arg(long)]
    data: PathBuf,
    /// Run folder: holds tokenizer.json, stage1/ and prior/ (checkpoints, metrics.jsonl).
    #[arg(long)]
    run: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    /// Pairs per step [default: 32; a --resume: the run's].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate [default: 0.0005; a --resume: the run's].
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of the shuffles, masks and initial weights [default: 0; a --resume: the run's].
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many optimizer steps in all.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Steps between checkpoints (one is also written at each epoch end).
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_every)]
    checkpoint_every: usize,
    /// Steps between lines of `steps.jsonl` (mean losses and rate over those steps).
    #[arg(long, default_value_t = TrainOptions::default().log_every)]
    log_every: usize,
    /// Steps of linear learning-rate warm-up [default: 100; a --resume: the run's].
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// After the warm-up: constant, or cosine (down to a tenth of --lr at the last step)
    /// [default: constant; a --resume: the run's].
    #[arg(long)]
    schedule: Option<Schedule>,
    /// Continue from the checkpoint in the run folder, with its recorded options: only
    /// --epochs, --max-steps, --checkpoint-every and --log-every may change; any other option
    /// given must equal the run's.
    #[arg(long)]
    resume: bool,
}

impl TrainArgs {
    /// The options given, over `base` (the defaults, or a resumed run's recorded options).
    fn options_over(&self, base: TrainOptions) -> TrainOptions {
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            learning_rate: self.lr.unwrap_or(base.learning_rate),
            seed: self.seed.unwrap_or(base.seed),
            max_steps: self.max_steps,
            checkpoint_every: self.checkpoint_every,
            log_every: self.log_every,
            warmup_steps: self.warmup_steps.unwrap_or(base.warmup_steps),
            schedule: self.schedule.unwrap_or(base.schedule),
            ..base
        }
    }

    /// The base the given options apply to: a resumed stage's recorded options, else the
    /// defaults.
    fn base(&self, stage_dir: &Path) -> Result<TrainOptions> {
        let ckpt = mxq::train::Checkpoint::new(stage_dir);
        Ok(if self.resume && ckpt.exists() { ckpt.state()?.options } else { TrainOptions::default() })
    }
}

#[derive(Args)]
struct Stage1Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Model sizes: paper, demo or tiny [default: demo].
    #[arg(long)]
    preset: Option<String>,
    /// A JSON file with a whole config (overrides --preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The paper's comparison, as configs of the same model: mxq, no-masking, no-joint,
    /// separate (own codebook per modality, no joint encoder, no cross maps, no masking)
    /// [default: mxq].
    #[arg(long)]
    variant: Option<String>,
    /// Largest tokenizer vocabulary (specials included) [default: 128].
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Tokens per caption [default: 64].
    #[arg(long)]
    token_length: Option<usize>,
    /// Steps between dead-code restarts (0 = off) [default: 100; a --resume: the run's].
    #[arg(long)]
    restart_dead_every: Option<usize>,
    /// Decay of the EMA codebook update (0 = train the codebook by gradient instead)
    /// [default: 0.99; a --resume: the run's].
    #[arg(long)]
    codebook_decay: Option<f64>,
    /// Start the codebook from random values instead of encoder outputs.
    #[arg(long)]
    no_codebook_from_data: bool,
}

#[derive(Args)]
struct DecodersArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// The share of codes swapped, each step, for the code another pair of the batch has at
    /// the same position: decoders that read a prior's imperfect draws [default: 0; a
    /// --resume: the run's].
    #[arg(long)]
    code_noise: Option<f64>,
    /// Train on the codes of this half alone (`image` or `caption`), the other masked entirely
    /// as the conditional modes encode it, to give back the whole pair: `image` makes decoders
    /// that read a caption straight from an image's codes [default: whole pairs' codes; a
    /// --resume: the run's].
    #[arg(long)]
    given: Option<Half>,
    /// Replace the text decoder's dense map with two factors through this many values, started
    /// from its best approximation of that rank: the bundle's largest matrix (4.2 M weights in
    /// the demo preset; 0.33 M at rank 64) [default: stage 1's map; a --resume: the run's].
    #[arg(long)]
    text_map_rank: Option<usize>,
}

#[derive(Args)]
struct PriorArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// The order the prior models a pair's codes in: image-first (the paper's) or
    /// text-first (default: the stage-1 config's).
    #[arg(long)]
    order: Option<SequenceOrder>,
    /// Prior layers (default: the stage-1 config's; with --init-from, the bundle's, and only
    /// more: the prior grows deeper).
    #[arg(long)]
    layers: Option<usize>,
    /// Prior attention heads (default: the stage-1 config's).
    #[arg(long)]
    heads: Option<usize>,
    /// Prior model width (default: the stage-1 config's).
    #[arg(long)]
    width: Option<usize>,
    /// The share of training sequences the prior sees without their first part (the
    /// caption's codes for text-first), so that `--guidance` can sample it; default: the
    /// stage-1 config's (0: none).
    #[arg(long)]
    unconditional: Option<f64>,
    /// Train a conditional prior: it learns only the second part given the first, the first
    /// encoded alone (the other half masked) as `mxq caption` and `--caption` encode what they
    /// are given. With --order image-first: a captioner. It does not draw whole pairs.
    /// `--conditional false`: a whole-pair prior, also from a conditional bundle's (default: the
    /// --init-from bundle's, else false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    conditional: Option<bool>,
    /// Start from this bundle's prior instead of random weights (fine-tuning; a new prior
    /// run only): its order, heads and width, trained on this run's stage 1 (checked).
    /// With --layers above the bundle's, the prior grows deeper: blocks that start as the
    /// identity are stacked on the bundle's, so training starts from what the bundle drew.
    #[arg(long, conflicts_with_all = ["order", "heads", "width"])]
    init_from: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "decoders"])))]
struct ExportArgs {
    /// Run folder with finished stage1/ and prior/ (with --stage1 or --encoder: stage1/ alone).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Ship the --prior bundles' prior with this bundle's decoders, stored as they are, instead
    /// of a run's: no run needed, so a prior fine-tuned on a run imported from a shipped stage-1
    /// file (`mxq import`) ships beside the shipped bundle with the same decoder.
    #[arg(long, requires = "prior")]
    decoders: Option<PathBuf>,
    /// Bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// Keep f32 weights instead of int8.
    #[arg(long, conflicts_with = "int4")]
    f32: bool,
    /// Store the text decoder's map (with --encoder or --stage1: also the text encoder's) in
    /// 4-bit blocks, the other weights in int8: 24% fewer bytes for the demo bundle, 40% for its
    /// encoder file, no loss measured by `mxq eval` (a 4-bit prior lost some).
    #[arg(long)]
    int4: bool,
    /// Write the whole stage 1 (encoder and decoder halves, config, tokenizer, training
    /// record) instead of a bundle: `mxq import` starts other runs from it.
    #[arg(long)]
    stage1: bool,
    /// Ship this bundle's prior (and its config) with the run's (or --decoders') decoders
    /// instead of the run's prior/: a bundle exported again after `mxq train decoders`. It must
    /// be a prior of the same stage 1 (checked: config, tokenizer, codebook). Given more than
    /// once: the mean of these bundles' weights (fine-tunes of one prior: a weight "soup"), or
    /// with --prior-weights their weighted sum.
    #[arg(long, conflicts_with_all = ["stage1", "encoder"])]
    prior: Vec<PathBuf>,
    /// One weight per --prior, comma-separated (e.g. `1,1,-1`: two fine-tunes' updates added
    /// to the start they share) [default: the mean].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, requires = "prior")]
    prior_weights: Option<Vec<f64>>,
    /// Write stage 1's encode half alone (encoders, codebook, config, tokenizer): the
    /// `--stage1` file of `mxq caption` and `mxq generate --caption`, and the page's, in half
    /// the bytes of a stage-1 file.
    #[arg(long, conflicts_with = "stage1")]
    encoder: bool,
}

#[derive(Args)]
struct ImportArgs {
    /// A stage-1 file (`mxq export --stage1`).
    #[arg(long)]
    stage1: PathBuf,
    /// The new run folder to start from it.
    #[arg(long)]
    run: PathBuf,
}

#[derive(Args)]
struct GenerateArgs {
    /// Bundle file (default: the shipped demo bundle).
    #[arg(long, default_value_os_t = repo_path("assets/demo.mxq.safetensors"))]
    bundle: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, default_value_t = 16)]
    count: usize,
    #[command(flatten)]
    sample: SampleArgs,
    /// Pairs sampled together.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Output folder (PNG + TXT + pairs.jsonl): empty or new.
    #[arg(long)]
    out: PathBuf,
    /// Replace the pairs an earlier run wrote in --out (a folder holding anything else is
    /// still refused).
    #[arg(long)]
    force: bool,
    /// Also write all images as one grid PNG here (at most 4,096 pairs).
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Draw images for this caption instead of whole pairs: every pair's caption is this
    /// text, its image a new draw for it (needs a caption-first prior and the bundle's
    /// encoder file, --stage1).
    #[arg(long)]
    caption: Option<String>,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    rerank: RerankArgs,
}

#[derive(Args)]
struct CaptionArgs {
    /// Captioner bundle: an image-first prior on the stage 1 of --stage1 (default: the
    /// shipped one, on the shipped stage 1).
    #[arg(long, default_value_os_t = repo_path("assets/captioner.mxq.safetensors"))]
    bundle: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
    /// The temperature the candidate captions are drawn at (image i from seed --seed + i;
    /// with the fixed default seed an image gets the same caption every time; 0: the most
    /// likely codes, one candidate).
    #[arg(long, default_value_t = CAPTION_TEMPERATURE)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    rerank: RerankArgs,
    /// Images (PNG or JPEG); other sizes are resized to 64×64 as in training.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// What to do when the scoring bundle does not fit the drawing one.
const SCORER_HINT: &str =
    "choosing among candidates (--scorer names a bundle on the same stage 1; --candidates 1 chooses none)";

/// Each pair the best of several candidates, by a second prior on the same stage 1.
#[derive(Args)]
struct RerankArgs {
    /// Draw each pair (each image for --caption, each caption of `mxq caption`) as this
    /// many candidates and keep the one the --scorer bundle finds most likely; 1: no
    /// reranking [default: 8 for captions (CAPTION_CANDIDATES), 1 for images].
    #[arg(long)]
    candidates: Option<usize>,
    /// The bundle that scores the candidates, on the same stage 1: for images, an
    /// image-first prior (log p(caption | image); default: the shipped captioner); for
    /// captions, a caption-first one (log p(caption, image); default: the shipped demo bundle).
    #[arg(long)]
    scorer: Option<PathBuf>,
}

impl RerankArgs {
    /// The scoring bundle (`default` where --scorer was not given), loaded where there are
    /// candidates to score (`candidates`: from `candidates_for`, checked).
    fn scorer(&self, default: &Path, candidates: usize, load: &LoadArgs, device: &Device) -> Result<Option<Bundle>> {
        if candidates == 1 {
            return Ok(None);
        }
        let path = self.scorer.as_deref().unwrap_or(default);
        Ok(Some(load_bundle(path, load, device).with_context(|| format!("the scoring bundle {}", path.display()))?))
    }
}

/// The encode half of the bundle, for the conditional modes.
#[derive(Args)]
struct EncoderArgs {
    /// The bundle's encoder file (`mxq export --encoder` from the bundle's run) or whole
    /// stage-1 file (`--stage1`), whose encoder reads what is given (default: the shipped
    /// demo bundle's encoder file).
    #[arg(long, default_value_os_t = repo_path("assets/stage1/demo-encoder.mxq.safetensors"))]
    stage1: PathBuf,
}

/// The shipped bundles: the demo (caption-first, whole pairs) and the captioner.
const DEMO_BUNDLE: &str = "assets/demo.mxq.safetensors";
const CAPTIONER: &str = "assets/captioner.mxq.safetensors";

/// The most images one grid PNG holds.
const MAX_GRID: usize = 4096;

/// A path inside the source tree (the shipped data and bundle).
fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn main() {
    let cli = Cli::parse();
    // burn makes a tensor that is given no device on its default one (burn 0.22's optimizer
    // restores its state there on --resume), which is the GPU once wgpu is compiled in:
    // BURN_DEVICE, burn's own switch for it, makes that default the device this run uses.
    // SAFETY: set before this process starts any thread.
    unsafe { std::env::set_var("BURN_DEVICE", cli.command.device().burn_name()) };
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

impl Command {
    /// The device the command runs on (the CPU for those without --device).
    fn device(&self) -> DeviceChoice {
        match self {
            Self::Train(TrainCommand::Stage1(a)) => a.train.device.device,
            Self::Train(TrainCommand::Prior(a)) => a.train.device.device,
            Self::Train(TrainCommand::Decoders(a)) => a.train.device.device,
            Self::Generate(a) => a.device.device,
            Self::Caption(a) => a.device.device,
            Self::Eval(a) => a.device.device,
            Self::Bench(a) => a.device.device,
            _ => DeviceChoice::Cpu,
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(DataCommand::CaptionMnist(a)) => data_caption_mnist(a),
        Command::Train(TrainCommand::Stage1(a)) => train_stage1(a),
        Command::Train(TrainCommand::Prior(a)) => train_prior(a),
        Command::Train(TrainCommand::Decoders(a)) => train_decoders(a),
        Command::Train(TrainCommand::Judge(a)) => train_judge(a),
        Command::Export(a) => export(a),
        Command::Import(a) => import(a),
        Command::Generate(a) => generate(a),
        Command::Caption(a) => caption(a),
        Command::Eval(a) => eval(a),
        Command::Bench(a) => bench::bench(a),
    }
}

/// Reads and loads a bundle file onto `device`.
fn load_bundle(path: &Path, load: &LoadArgs, device: &Device) -> Result<Bundle> {
    let bytes = mxq::error::read_bounded(path, bundle::MAX_BUNDLE_BYTES).context("reading the bundle")?;
    bundle::load(&bytes, device, load.options()).with_context(|| format!("loading {}", path.display()))
}

/// Reads an encoder (or stage-1) file onto `device` and pairs it with `bundle` as its encoder.
fn load_encoder(bundle: &Bundle, path: &Path, device: &Device) -> Result<Encoder> {
    let bytes = mxq::error::read_bounded(path, bundle::MAX_BUNDLE_BYTES).context("reading the encoder file")?;
    let file = bundle::load_encoder(&bytes, device).with_context(|| format!("loading {}", path.display()))?;
    bundle.encoder(file).with_context(|| format!("{}", path.display()))
}

fn data_caption_mnist(a: CaptionMnistArgs) -> Result<()> {
    // a folder's listing is held until it is written: larger sets are several folders
    mxq::sample::check_counts(a.count, 1)?;
    let digits = Digits::load_dir(&a.mnist.mnist)?;
    let split = match a.split {
        Split::Train => caption_mnist::Split::Train,
        Split::Test => caption_mnist::Split::Test,
    };
    let generator = CaptionMnist::split(&digits, split, a.seed)?;
    let mut out = mxq::data::PairWriter::create(&a.out, a.force)?;
    let bar = bar(a.count as u64, "pairs");
    for i in 0..a.count as u64 {
        let pair = generator.pair(i);
        out.push(&pair.image, &pair.caption)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = out.finish()?;
    println!("wrote {n} pairs to {}", a.out.display());
    Ok(())
}

fn train_stage1(a: Stage1Args) -> Result<()> {
    let t = &a.train;
    let run = Run::new(&t.run);
    if t.resume {
        // the config and tokenizer are the run's: a resume cannot change them
        let given = [
            ("--preset", a.preset.is_some()),
            ("--config", a.config.is_some()),
            ("--variant", a.variant.is_some()),
            ("--vocab-size", a.vocab_size.is_some()),
            ("--token-length", a.token_length.is_some()),
        ];
        let given: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
        if !given.is_empty() {
            bail!(
                "--resume continues the run's recorded config and tokenizer; {} apply to a new run only",
                given.join(", ")
            );
        }
    }
    let base = t.base(&run.stage1_dir())?;
    let opts = TrainOptions {
        restart_dead_every: a.restart_dead_every.unwrap_or(base.restart_dead_every),
        codebook_decay: a.codebook_decay.unwrap_or(base.codebook_decay),
        codebook_from_data: base.codebook_from_data && !a.no_codebook_from_data,
        ..t.options_over(base)
    };
    opts.check()?;
    let (pairs, fitted) = read_pairs_fitted(&t.data)?;
    let setup = Stage1Setup {
        config: match &a.config {
            Some(path) => ConfigSource::File(path.clone()),
            None => ConfigSource::Preset(a.preset.clone().unwrap_or_else(|| "demo".into())),
        },
        variant: a.variant.clone().unwrap_or_else(|| "mxq".into()),
        vocab_size: a.vocab_size.unwrap_or(128),
        token_length: a.token_length.unwrap_or(64),
    };
    let (config, tokenizer) = run.prepare_stage1(&pairs, &setup, t.resume)?;
    warn_fitted(fitted, &pairs, &tokenizer);
    let data = PairSet::new(&pairs, &tokenizer);
    // the images are held once: a copy per pair beside the set would double the memory
    drop(pairs);
    eprintln!(
        "stage 1: {} pairs, vocab {}, preset {}, run {}",
        data.len(),
        tokenizer.vocab_size(),
        config.preset,
        t.run.display()
    );
    let (mut on_step, mut on_epoch, bar) = reporters(opts.batch_size);
    let progress = Progress { on_step: &mut on_step, on_epoch: &mut on_epoch };
    let device = t.device.start()?;
    train::train_stage1(&run.stage1_dir(), &config, &tokenizer, &data, &opts, &device.autodiff(), progress)?;
    bar.finish();
    Ok(())
}

fn train_prior(a: PriorArgs) -> Result<()> {
    let t = &a.train;
    let run = Run::new(&t.run);
    let options = t.options_over(t.base(&run.prior_dir())?);
    options.check()?;
    let device = t.device.start()?;
    let (vae, state) = run.stage1(&device)?;
    let setup = PriorSetup {
        order: a.order,
        layers: a.layers,
        heads: a.heads,
        width: a.width,
        unconditional: a.unconditional,
        conditional: a.conditional,
    };
    let (config, start) = match &a.init_from {
        Some(_) if t.resume => bail!("--init-from starts a new prior run; --resume continues the run's own"),
        Some(path) => {
            let bundle = load_bundle(path, &LoadArgs { no_packed_kernels: true }, &mxq::cpu())?;
            let (config, prior) = run.prior_from(bundle, &vae, &state, &setup)?;
            (run.prepare_prior(&config, &PriorSetup::default(), false)?, Some(prior))
        }
        None => (run.prepare_prior(&state.config, &setup, t.resume)?, None),
    };
    let tokenizer = Run::tokenizer(&state)?;
    let (pairs, fitted) = read_pairs_fitted(&t.data)?;
    warn_fitted(fitted, &pairs, &tokenizer);
    let data = PairSet::new(&pairs, &tokenizer);
    // the images are held once: a copy per pair beside the set would double the memory
    drop(pairs);
    // the codes are kept in prior/ between starts, named by the pairs and the stage-1 weights
    eprintln!("prior: {} pairs: their codes from an earlier start, or encoded with the frozen stage 1", data.len());
    let (sequences, kept) = train::encode_sequences_kept(&vae, &data, 64, &device, &run.prior_dir(), &config, None)?;
    eprintln!(
        "prior: codes {} (kept in {})",
        if kept { "read back, not encoded again" } else { "encoded" },
        run.prior_dir().display()
    );
    let (mut on_step, mut on_epoch, bar) = reporters(options.batch_size);
    let progress = Progress { on_step: &mut on_step, on_epoch: &mut on_epoch };
    let device = device.autodiff();
    train::train_prior(&run.prior_dir(), &config, &tokenizer, &sequences, &options, start, &device, progress)?;
    bar.finish();
    Ok(())
}

fn train_decoders(a: DecodersArgs) -> Result<()> {
    let t = &a.train;
    let run = Run::new(&t.run);
    Run::check_resume(&run.decoders_dir(), t.resume)?;
    let device = t.device.start()?;
    let (vae, state) = run.trained_stage1(&device)?;
    let tokenizer = Run::tokenizer(&state)?;
    let (pairs, fitted) = read_pairs_fitted(&t.data)?;
    warn_fitted(fitted, &pairs, &tokenizer);
    let data = PairSet::new(&pairs, &tokenizer);
    // the images are held once: a copy per pair beside the set would double the memory
    drop(pairs);
    let base = t.base(&run.decoders_dir())?;
    let code_noise = a.code_noise.unwrap_or(base.code_noise);
    let given = a.given.or(base.given);
    let options = TrainOptions { code_noise, given, ..t.options_over(base) };
    options.check()?;
    // --given decides which codes are encoded: a resume that would be refused is refused
    // before minutes of encoding, not after
    let dir = run.decoders_dir();
    let ckpt = mxq::train::Checkpoint::new(&dir);
    train::check_resume(&ckpt, <train::DecoderStep as train::Stage<_>>::NAME, &options)?;
    let mut config = state.config.clone();
    if let Some(rank) = a.text_map_rank {
        if let Some(had) = state.config.stage1.text.map_rank.filter(|&had| had != rank) {
            bail!("--text-map-rank {rank}: this run's stage 1 has its text map at rank {had} already");
        }
        config.stage1.text.map_rank = Some(rank);
        config.check()?;
        let recorded = if ckpt.exists() { Some(ckpt.state()?.config.stage1.text.map_rank) } else { None };
        if let Some(recorded) = recorded.filter(|&r| r != Some(rank)) {
            let was = recorded.map_or("a dense map".to_string(), |r| format!("rank {r}"));
            bail!("--text-map-rank {rank}: this run's decoders are being trained with {was}; resume without it");
        }
    }
    // whole pairs' codes, as a whole-pair prior's (or one half's alone): kept in decoders/
    // between starts
    let mut whole = state.config.clone();
    whole.prior.conditional = false;
    eprintln!("decoders: {} pairs: their codes from an earlier start, or encoded with the frozen stage 1", data.len());
    let (codes, kept) = train::encode_sequences_kept(&vae, &data, 64, &device, &dir, &whole, given)?;
    eprintln!("decoders: codes {}", if kept { "read back, not encoded again" } else { "encoded" });
    let (mut on_step, mut on_epoch, bar) = reporters(options.batch_size);
    let progress = Progress { on_step: &mut on_step, on_epoch: &mut on_epoch };
    let device = device.autodiff();
    train::train_decoders(&dir, &config, &tokenizer, &data, &codes, &options, vae.decoder, &device, progress)?;
    bar.finish();
    Ok(())
}

/// Says how many training pairs were changed to fit the models (resized or converted
/// images, captions cut to the tokenizer's length), where any were.
fn warn_fitted(fitted: Fitted, pairs: &[Pair], tokenizer: &CaptionTokenizer) {
    let truncated = pairs.iter().filter(|p| tokenizer.truncates(&p.caption)).count();
    let side = mxq::config::IMAGE_SIZE;
    let notes = [
        (fitted.resized, format!("images resized to {side}×{side}")),
        (fitted.converted, "images converted to 8-bit RGB (alpha and extra depth dropped)".into()),
        (truncated, format!("captions cut to {} tokens", tokenizer.length())),
    ];
    let notes: Vec<String> = notes.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    if !notes.is_empty() {
        eprintln!("warning: of {} training pairs, {}", pairs.len(), notes.join("; "));
    }
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
    let precision = match (a.f32, a.int4) {
        (true, _) => Precision::F32,
        (_, true) => Precision::Int4,
        _ => Precision::Int8,
    };
    let load = LoadArgs { no_packed_kernels: true };
    // clap gives --run or --decoders, and --decoders only with --prior: every path without a
    // --decoders bundle has a run
    let run = || a.run.as_deref().map(Run::new).context("--run or --decoders is needed");
    let with_prior = |prior: Bundle| match &a.decoders {
        Some(path) => Ok::<_, anyhow::Error>(load_bundle(path, &load, &mxq::cpu())?.with_prior_of(prior)?),
        None => Ok(run()?.generator_with(prior, &mxq::cpu())?),
    };
    let bytes = if a.stage1 {
        run()?.export_stage1(precision, &mxq::cpu())?
    } else if a.encoder {
        run()?.export_encoder(precision, &mxq::cpu())?
    } else {
        let (generator, config, tokenizer) = match a.prior.as_slice() {
            [] => run()?.generator(&mxq::cpu())?,
            [path] if a.prior_weights.is_none() => with_prior(load_bundle(path, &load, &mxq::cpu())?)?,
            paths => {
                let weights = a.prior_weights.unwrap_or_else(|| vec![1.0 / paths.len() as f64; paths.len()]);
                ensure!(
                    weights.len() == paths.len(),
                    "--prior-weights has {} weights for {} --prior files",
                    weights.len(),
                    paths.len()
                );
                let files = paths
                    .iter()
                    .map(|p| {
                        mxq::error::read_bounded(p, bundle::MAX_BUNDLE_BYTES)
                            .with_context(|| format!("reading {}", p.display()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let weighted: Vec<(&[u8], f64)> = files.iter().map(Vec::as_slice).zip(weights).collect();
                let bytes = bundle::combine(&weighted).context("combining the --prior bundles")?;
                with_prior(bundle::load(&bytes, &mxq::cpu(), load.options())?)?
            }
        };
        bundle::export(&generator, &config, &tokenizer, precision)?
    };
    mxq::error::write_atomic(&a.out, &bytes)?;
    println!("wrote {} ({} bytes, {precision:?})", a.out.display(), bytes.len());
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let bytes = mxq::error::read_bounded(&a.stage1, bundle::MAX_BUNDLE_BYTES).context("reading the stage-1 file")?;
    let state = Run::new(&a.run)
        .import_stage1(&bytes, &mxq::cpu())
        .with_context(|| format!("importing {}", a.stage1.display()))?;
    println!(
        "{}: stage 1 of preset {} ({} steps, {} epochs) imported; train a prior with `mxq train prior --run {}`",
        a.run.display(),
        state.config.preset,
        state.step,
        state.epoch,
        a.run.display()
    );
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    // every option is checked, and --out opened, before a minute is spent sampling
    let opts = a.sample.options();
    opts.check()?;
    mxq::sample::check_counts(a.count, a.batch)?;
    if a.grid.is_some() && a.count > MAX_GRID {
        bail!("--grid holds at most {MAX_GRID} pairs, not {}", a.count);
    }
    let device = a.device.start()?;
    let bundle = load_bundle(&a.bundle, &a.load, &device)?;
    let opts = a.sample.options_for(&bundle);
    bundle.check_options(&opts)?;
    let given = match &a.caption {
        Some(caption) => bundle.given_caption(&load_encoder(&bundle, &a.encoder.stage1, &device)?, caption, &device)?,
        None => Given::default(),
    };
    bundle.check_given(&given)?;
    let candidates = candidates_for(a.rerank.candidates, 1, &opts)?;
    let scorer = a.rerank.scorer(&repo_path(CAPTIONER), candidates, &a.load, &device)?;
    let rerank = scorer.as_ref().map(|s| Rerank::new(&bundle, s, candidates, Scored::SecondPart)).transpose();
    let rerank = rerank.context(SCORER_HINT)?;
    let mut out = mxq::data::PairWriter::create(&a.out, a.force)?;
    let mut grid = Vec::new();
    let started = std::time::Instant::now();
    let bar = bar(a.count as u64, "pairs");
    bundle.generate_each(&given, a.count, a.batch, opts, rerank.as_ref(), &device, |pairs| {
        bar.inc(pairs.len() as u64);
        for p in &pairs {
            out.push(&p.image, &p.caption)?;
        }
        if a.grid.is_some() {
            grid.extend(pairs.into_iter().map(|p| p.image));
        }
        Ok::<_, mxq::Error>(())
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let written = out.finish()?;
    if let Some(path) = &a.grid {
        let images: Vec<&[u8]> = grid.iter().map(Vec::as_slice).collect();
        mxq::error::write_atomic(path, &mxq::data::pairs::grid_png(&images, 8.min(images.len()), 2))?;
    }
    println!(
        "wrote {written} pairs to {} in {seconds:.2} s ({:.1} pairs/s)",
        a.out.display(),
        written as f64 / seconds
    );
    Ok(())
}

fn caption(a: CaptionArgs) -> Result<()> {
    let opts = SampleOptions { temperature: a.temperature, seed: a.seed, ..SampleOptions::default() };
    // every image is read before anything is loaded: a bad one fails the run up front
    let images = a.images.iter().map(|path| mxq::data::pairs::load_image(path)).collect::<Result<Vec<_>, _>>()?;
    let device = a.device.start()?;
    let bundle = load_bundle(&a.bundle, &a.load, &device)?;
    bundle.check_options(&opts)?;
    let encoder = load_encoder(&bundle, &a.encoder.stage1, &device)?;
    // encoded before the scorer is read: a bundle that cannot caption is named as such
    let givens =
        images.iter().map(|image| bundle.given_image(&encoder, image, &device)).collect::<Result<Vec<_>, _>>()?;
    let candidates = candidates_for(a.rerank.candidates, CAPTION_CANDIDATES, &opts)?;
    let scorer = a.rerank.scorer(&repo_path(DEMO_BUNDLE), candidates, &a.load, &device)?;
    let rerank = scorer.as_ref().map(|s| Rerank::new(&bundle, s, candidates, Scored::WholePair)).transpose();
    let rerank = rerank.context(SCORER_HINT)?;
    let mut stdout = std::io::stdout().lock();
    for (i, (path, given)) in a.images.iter().zip(&givens).enumerate() {
        let opts = SampleOptions { seed: opts.seed.wrapping_add(i as u64), ..opts };
        let pair = bundle.generate_from(given, 1, 1, opts, rerank.as_ref(), &device).remove(0);
        let line = serde_json::json!({ "image": path.display().to_string(), "caption": pair.caption });
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

fn train_judge(a: JudgeArgs) -> Result<()> {
    use mxq::eval::digit_classifier;
    let digits = Digits::load_dir(&a.mnist.mnist)?;
    if digits.len() <= TRAIN_DIGITS {
        bail!(
            "{}: {} digits; the judge needs more than {TRAIN_DIGITS} (train) plus test digits",
            a.mnist.mnist.display(),
            digits.len()
        );
    }
    let (train, test) = (digits.subset(0..TRAIN_DIGITS), digits.subset(TRAIN_DIGITS..digits.len()));
    let bar = ProgressBar::new(a.epochs as u64)
        .with_style(ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg} ETA {eta}")?);
    let device = mxq::cpu();
    let classifier =
        digit_classifier::train(&train, a.epochs, a.seed, &device.clone().autodiff(), &mut |epoch, loss| {
            bar.set_position(epoch as u64 + 1);
            bar.set_message(format!("loss {loss:.4}"));
        });
    bar.finish();
    let accuracy = digit_classifier::accuracy(&classifier, &test, &device);
    let judge = Judge::new(classifier, accuracy, &device);
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

/// `mxq eval --captioner`: the first --count test images captioned as `mxq caption` does, judged.
fn judge_captioner(a: &EvalArgs, path: &Path, judge: &Judge, test: &TestSplit, device: &Device) -> Result<Scores> {
    let captioner = load_bundle(path, &a.load, device)?;
    let encoder = load_encoder(&captioner, &a.encoder.stage1, device)?;
    let opts = SampleOptions { temperature: a.caption_temperature, seed: a.sample.seed, ..SampleOptions::default() };
    opts.check()?;
    // captions are scored by the bundle under judgement where there is one, as `mxq caption` by the demo bundle
    let candidates = candidates_for(a.caption_candidates, CAPTION_CANDIDATES, &opts)?;
    let scorer = match (&a.bundle, candidates > 1) {
        (Some(bundle), true) => Some(load_bundle(bundle, &a.load, device).context("the --bundle, scoring captions")?),
        (None, true) => {
            Some(load_bundle(&repo_path(DEMO_BUNDLE), &a.load, device).context("the demo bundle, scoring captions")?)
        }
        (_, false) => None,
    };
    let rerank = scorer.as_ref().map(|s| Rerank::new(&captioner, s, candidates, Scored::WholePair)).transpose()?;
    let (count, rerank) = (a.count, rerank.as_ref());
    Ok(protocol::judge_completed(judge, &captioner, &encoder, Half::Image, count, opts, rerank, test, device)?)
}

fn eval(a: EvalArgs) -> Result<()> {
    a.sample.options().check()?;
    mxq::sample::check_counts(a.count, 1)?;
    let device = a.device.start()?;
    let bytes = mxq::error::read_bounded(&a.judge, bundle::MAX_BUNDLE_BYTES).context("reading the judge")?;
    let judge = Judge::from_bytes(bytes, &device).with_context(|| format!("{}", a.judge.display()))?;
    let test = TestSplit::load(&a.mnist.mnist)?;
    let train = a.train.as_deref().map(protocol::train_captions).transpose()?;
    let mut drawn = None;
    let mut captioned = None;
    let (judged, report) = match (&a.pairs, &a.bundle) {
        (Some(dir), _) => (Some(protocol::judge_pairs(&judge, &read_pairs(dir)?, &test, train.as_ref())?), None),
        (None, Some(path)) => {
            let bundle = load_bundle(path, &a.load, &device)?;
            let opts = a.sample.options_for(&bundle);
            bundle.check_options(&opts)?;
            // a conditional bundle draws no whole pairs: judged on what it is given alone (--drawn)
            let whole = match bundle.check_given(&Given::default()) {
                Ok(()) => true,
                Err(_) if a.drawn => false,
                Err(e) => return Err(e.into()),
            };
            // images are scored by --scorer, or the --captioner, or the shipped captioner
            let candidates = candidates_for(a.rerank.candidates, 1, &opts)?;
            let default_scorer = a.captioner.clone().unwrap_or_else(|| repo_path(CAPTIONER));
            let scorer = a.rerank.scorer(&default_scorer, candidates, &a.load, &device)?;
            let rerank = scorer.as_ref().map(|s| Rerank::new(&bundle, s, candidates, Scored::SecondPart)).transpose();
            let rerank = rerank.context(SCORER_HINT)?;
            // captions first: a bundle that cannot score them fails the run before anything is drawn
            if let Some(captioner) = &a.captioner {
                captioned = Some(judge_captioner(&a, captioner, &judge, &test, &device)?);
            }
            if a.drawn {
                let encoder = load_encoder(&bundle, &a.encoder.stage1, &device)?;
                drawn = Some(protocol::judge_completed(
                    &judge,
                    &bundle,
                    &encoder,
                    Half::Caption,
                    a.count,
                    opts,
                    rerank.as_ref(),
                    &test,
                    &device,
                )?);
            }
            let report = if whole {
                Some(protocol::judge_bundle(
                    &judge,
                    &bundle,
                    a.count,
                    opts,
                    rerank.as_ref(),
                    &test,
                    train.as_ref(),
                    &device,
                )?)
            } else {
                None
            };
            (None, report)
        }
        (None, None) if a.captioner.is_some() => {
            captioned = Some(judge_captioner(&a, a.captioner.as_deref().unwrap(), &judge, &test, &device)?);
            (None, None)
        }
        (None, None) if a.run.is_some() => (None, None),
        (None, None) => bail!("give --pairs DIR, --bundle FILE, --captioner FILE or --run DIR"),
    };
    let stage1 = match &a.run {
        Some(run) => {
            let (vae, state) = Run::new(run).stage1(&device)?;
            let tokenizer = Run::tokenizer(&state)?;
            Some(protocol::judge_stage1(&judge, &vae, &tokenizer, a.count, &test, &device)?)
        }
        None => None,
    };
    let mut json = match (&judged, &report) {
        (Some(judged), _) => serde_json::to_value(judged)?,
        (_, Some(report)) => serde_json::to_value(report)?,
        (None, None) => serde_json::json!({}),
    };
    let mut rows: Vec<(&str, &Scores)> = Vec::new();
    rows.extend(judged.iter().map(|s| ("judged pairs", s)));
    if let Some(r) = &report {
        rows.extend([("generated", &r.generated), ("real test pairs", &r.real_test)]);
    }
    if let Some(drawn) = &drawn {
        json["drawn_for_test_captions"] = serde_json::to_value(drawn)?;
        rows.push(("images drawn for test captions", drawn));
    }
    if let Some(captioned) = &captioned {
        json["captioned_test_images"] = serde_json::to_value(captioned)?;
        rows.push(("captions of test images", captioned));
    }
    if let Some(stage1) = &stage1 {
        json["stage1_reconstruction"] = serde_json::to_value(stage1)?;
        rows.extend([
            ("stage 1: reconstructed test pairs", &stage1.judged),
            ("stage 1: reconstructed image, true caption", &stage1.image_against_true_caption),
            ("stage 1: reconstructed caption, true image", &stage1.caption_against_true_image),
            ("stage 1: image from the caption alone", &stage1.image_from_caption),
            ("stage 1: caption from the image alone", &stage1.caption_from_image),
        ]);
    }
    if a.json {
        println!("{json}");
        return Ok(());
    }
    println!(
        "{:<42} {:>6} {:>8} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6}  {:<31} {:<31} {:>5}",
        "",
        "pairs",
        "valid %",
        "cons %",
        "units %",
        "layout %",
        "fidel. %",
        "Fréchet",
        "dist.",
        "share % by digits 0/1/2/3/4",
        "consistent % by digits 0/1/2/3/4",
        "TV"
    );
    for (label, s) in rows {
        let join = |f: &dyn Fn(&mxq::eval::judge::DigitCount) -> f64| {
            s.by_digit_count.iter().map(|c| format!("{:.0}", f(c))).collect::<Vec<_>>().join(" / ")
        };
        println!(
            "{label:<42} {:>6} {:>8.1} {:>6.1} {:>7.1} {:>8.1} {:>8.1} {:>8} {:>6.2}  {:<31} {:<31} {:>5.3}",
            s.pairs,
            s.validity_pct,
            s.consistency_pct,
            s.unit_accuracy_pct,
            s.layout_colour_consistency_pct,
            s.fidelity_pct,
            s.frechet_distance.map_or("—".into(), |f| format!("{f:.1}")),
            s.distinct_captions_per_pair,
            join(&|c| c.share_pct),
            join(&|c| c.consistency_pct),
            s.digit_count_total_variation,
        );
        if let Some(copied) = s.copied_captions_pct {
            println!(
                "{:<42} captions copied verbatim from {}: {copied:.1}%",
                "",
                a.train.as_ref().expect("set").display()
            );
        }
    }
    if let Some(stage1) = &stage1 {
        let r = &stage1.reconstruction;
        println!(
            "stage-1 reconstruction: image MSE {:.4} (PSNR {:.1} dB), token accuracy {:.1}%, exact captions {:.1}%, valid {:.1}%, codebook perplexity {:.0} ({} live), text codes carry ≤ {:.1} bits",
            r.image_mse,
            r.psnr_db,
            r.token_accuracy_pct,
            r.exact_captions_pct,
            r.valid_captions_pct,
            r.perplexity,
            r.live_codes,
            r.text_code_bits
        );
        println!(
            "stage-1 one half alone: caption from the image exact {:.1}%; text codes as with the whole pair {:.1}% (image masked), image codes {:.1}% (caption masked)",
            stage1.caption_from_image_exact_pct,
            stage1.text_codes_without_image_pct,
            stage1.image_codes_without_caption_pct
        );
    }
    Ok(())
}
