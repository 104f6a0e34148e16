//! The bundle: ONE safetensors file with everything generation needs — the prior, the
//! codebook, the cross maps and both decoders, the config, the tokenizer and a format
//! version — readable from Python too (`safetensors.safe_open`). Weights are int8 blocks
//! ([`crate::kernels::int8`]) or f32; the file layout is [`format`].
//!
//! Loading dequantizes to f32 and hands the tensors to burn-store. On the CPU device (natively
//! only where the CPU has AVX-512) it also packs the prior for the sampling kernels
//! ([`crate::kernels::packed_prior`]) unless [`LoadOptions::packed_kernels`] says not to.

pub mod format;

/// The largest bundle file a caller should read (the paper preset's f32 bundle is ~100 MB).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::prelude::*;

use crate::Error;
use crate::config::{MxqConfig, Stage1Config};
use crate::data::tokenizer::CaptionTokenizer;
pub use crate::kernels::int8::Precision;
use crate::kernels::packed_prior::PackedPrior;
use crate::model::mxq_vae::{MxqCoder, MxqDecoder, MxqVae};
use crate::model::prior::Prior;

/// What the bundle ships: the decode half of stage 1 and the prior.
#[derive(Module, Debug)]
pub struct Generator {
    pub decoder: MxqDecoder,
    pub prior: Prior,
}

impl Generator {
    /// A freshly initialised generator of this config's shape.
    pub fn new(config: &MxqConfig, device: &Device) -> Self {
        Self { decoder: MxqDecoder::new(&config.stage1, device), prior: Prior::for_config(config, device) }
    }
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    pub config: MxqConfig,
    pub tokenizer: CaptionTokenizer,
    pub generator: Generator,
    /// The prior packed for the CPU kernels, where [`load`] packed it.
    pub packed_prior: Option<PackedPrior>,
    /// The file's format version (older versions are converted on load).
    pub version: u32,
    pub precision: Precision,
    /// The codebook's values on the host, as the file holds them: an encoder file is checked
    /// against them ([`Bundle::encoder`]) without a read-back from the device, which WebGPU
    /// in a browser cannot do synchronously.
    pub codebook: Vec<f32>,
}

/// How to load a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Pack the prior for the CPU sampling kernels where they run: the native CPU device on
    /// a CPU with AVX-512 (elsewhere burn's layers are as fast or faster). Off: burn's
    /// layers sample everywhere (side-by-side figures).
    pub packed_kernels: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { packed_kernels: true }
    }
}

/// Serializes a generator, its config and tokenizer into bundle bytes.
pub fn export(
    generator: &Generator,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    format::write(crate::weights::module_tensors(generator)?, config.to_json(), tokenizer.to_json(), precision)
}

/// Reads and checks bundle bytes, then builds the generator on `device`.
/// A truncated, corrupted, foreign or wrong-version file gives an error naming the fault.
pub fn load(bytes: &[u8], device: &Device, options: LoadOptions) -> Result<Bundle, Error> {
    let contents = format::read(bytes)?;
    match contents.kind {
        format::Kind::Generator => {}
        format::Kind::Stage1 { .. } => {
            return Err(Error::Bundle(
                "this file holds a trained stage 1 (mxq export --stage1), not a bundle: `mxq import` puts it in a \
                 run to train a prior on"
                    .into(),
            ));
        }
        format::Kind::Encoder => {
            return Err(Error::Bundle(
                "this file is an encoder file (stage 1's encode half, mxq export --encoder), not a bundle: give it \
                 as --stage1 to mxq caption or mxq generate --caption"
                    .into(),
            ));
        }
    }
    let config = MxqConfig::from_json(&contents.config_json)?;
    let tokenizer = CaptionTokenizer::from_json(&contents.tokenizer_json)?;
    tokenizer.check_fits(&config.stage1.text)?;
    let mut generator = Generator::new(&config, device);
    load_checked(&mut generator, contents.weights, contents.parameters)?;
    // a prior whose widths do not pack (not multiples of 64) samples on burn's layers; an
    // int8 prior packs from its stored blocks as they are
    let simd = crate::kernels::Simd::Avx512;
    let packed_prior = (options.packed_kernels && packs_on(device))
        .then(|| match contents.precision {
            Precision::F32 => PackedPrior::new(&generator.prior, simd).ok(),
            Precision::Int8 | Precision::Int4 => PackedPrior::from_stored(&generator.prior, &contents.int8, simd).ok(),
        })
        .flatten();
    let (version, precision, codebook) = (contents.version, contents.precision, contents.codebook);
    Ok(Bundle { config, tokenizer, generator, packed_prior, version, precision, codebook })
}

/// The largest mean difference between the bundle's codebook and a stage-1 file's that still
/// counts as the same codebook, relative to the codebook's mean magnitude: int8 storage of
/// the same weights differs by well under 1%; another training run by far more.
const SAME_CODEBOOK: f32 = 0.02;

impl Bundle {
    /// Whether a stage 1 (its config, tokenizer as JSON and codebook values) is this bundle's;
    /// `Err` names what differs.
    pub fn check_stage1(
        &self,
        stage1: &Stage1Config,
        tokenizer_json: &str,
        codebook: &[f32],
    ) -> Result<(), &'static str> {
        if !stage1.same_codes(&self.config.stage1) {
            return Err("the stage-1 config");
        }
        if tokenizer_json != self.tokenizer.to_json() {
            return Err("the tokenizer");
        }
        let (ours, theirs) = (&self.codebook, codebook);
        let mean = |v: &mut dyn Iterator<Item = f32>| v.sum::<f32>() / ours.len().max(1) as f32;
        let scale = mean(&mut ours.iter().map(|v| v.abs())).max(f32::MIN_POSITIVE);
        let difference = mean(&mut ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()));
        // a NaN difference (a NaN in either codebook) is no match
        let close = difference.partial_cmp(&(SAME_CODEBOOK * scale)).is_some_and(|o| o.is_le());
        if ours.len() != theirs.len() || !close {
            return Err("the codebook");
        }
        Ok(())
    }

    /// This bundle's decoders with `other`'s prior (and its prior config), to export as one
    /// bundle: a prior fine-tuned on a run imported from a shipped stage-1 file ships with the
    /// shipped bundle's decoders as they are stored. `other` must be a prior of this stage 1
    /// ([`Bundle::check_stage1`]).
    pub fn with_prior_of(self, other: Bundle) -> Result<(Generator, MxqConfig, CaptionTokenizer), Error> {
        if let Err(differs) = other.check_stage1(&self.config.stage1, &self.tokenizer.to_json(), &self.codebook) {
            return Err(Error::Bundle(format!(
                "the prior's bundle was trained on another stage 1 than the decoders' bundle ({differs} differs)"
            )));
        }
        let config = MxqConfig { prior: other.config.prior, ..self.config };
        Ok((Generator { decoder: self.generator.decoder, prior: other.generator.prior }, config, self.tokenizer))
    }
}

/// A trained stage 1 read from a stage-1 file ([`export_stage1`]).
pub struct Stage1File {
    pub vae: MxqVae,
    pub config: MxqConfig,
    pub tokenizer: CaptionTokenizer,
    /// Its training record (JSON, as the run's checkpoint had it: options, steps, epochs).
    pub trained: String,
    /// The codebook's values on the host, as the file holds them ([`Bundle::codebook`]).
    pub codebook: Vec<f32>,
}

/// Serializes a whole trained stage 1 (both halves) into a file of the bundle's format,
/// so that priors can be trained on it in later runs without training it again (the
/// checkpoint's optimizer state is not kept: it cannot be resumed).
pub fn export_stage1(
    vae: &MxqVae,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    trained: String,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    let tensors = crate::weights::module_tensors(vae)?;
    format::write_kind(tensors, config.to_json(), tokenizer.to_json(), precision, format::Kind::Stage1 { trained })
}

/// Reads and checks a stage-1 file, then builds the stage 1 it holds on `device`.
pub fn load_stage1(bytes: &[u8], device: &Device) -> Result<Stage1File, Error> {
    let contents = format::read(bytes)?;
    let trained = match contents.kind {
        format::Kind::Stage1 { trained } => trained,
        format::Kind::Generator => {
            return Err(Error::Bundle("this file is a bundle (decoders and prior), not a stage-1 file".into()));
        }
        format::Kind::Encoder => {
            return Err(Error::Bundle(
                "this file is an encoder file (stage 1's encode half alone, for captioning and drawing captions), \
                 not a whole stage-1 file: mxq import needs the file `mxq export --stage1` writes"
                    .into(),
            ));
        }
    };
    let config = MxqConfig::from_json(&contents.config_json)?;
    let tokenizer = CaptionTokenizer::from_json(&contents.tokenizer_json)?;
    tokenizer.check_fits(&config.stage1.text)?;
    let mut vae = MxqVae::new(&config.stage1, device);
    load_checked(&mut vae, contents.weights, contents.parameters)?;
    Ok(Stage1File { vae, config, tokenizer, trained, codebook: contents.codebook })
}

/// Stage 1's encode half read from an encoder file ([`export_encoder`]) or a stage-1 file.
pub struct EncoderFile {
    pub coder: MxqCoder,
    pub config: MxqConfig,
    pub tokenizer: CaptionTokenizer,
    /// The codebook's values on the host, as the file holds them ([`Bundle::codebook`]).
    pub codebook: Vec<f32>,
}

/// Serializes stage 1's encode half (encoders and codebook, [`MxqCoder`]) with the config
/// and tokenizer: the file the conditional modes read, half a stage-1 file's bytes.
pub fn export_encoder(
    coder: &MxqCoder,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    let tensors = crate::weights::module_tensors(coder)?;
    format::write_kind(tensors, config.to_json(), tokenizer.to_json(), precision, format::Kind::Encoder)
}

/// Reads and checks an encoder file — or a whole stage-1 file, whose decoders are then
/// dropped — and builds the encode half on `device`.
pub fn load_encoder(bytes: &[u8], device: &Device) -> Result<EncoderFile, Error> {
    let contents = format::read(bytes)?;
    if contents.kind == format::Kind::Generator {
        return Err(Error::Bundle("this file is a bundle (decoders and prior), not an encoder or stage-1 file".into()));
    }
    let config = MxqConfig::from_json(&contents.config_json)?;
    let tokenizer = CaptionTokenizer::from_json(&contents.tokenizer_json)?;
    tokenizer.check_fits(&config.stage1.text)?;
    let coder = if contents.kind == format::Kind::Encoder {
        let mut coder = MxqCoder::new(&config.stage1, device);
        load_checked(&mut coder, contents.weights, contents.parameters)?;
        coder
    } else {
        let mut vae = MxqVae::new(&config.stage1, device);
        load_checked(&mut vae, contents.weights, contents.parameters)?;
        vae.into_coder()
    };
    Ok(EncoderFile { coder, config, tokenizer, codebook: contents.codebook })
}

/// Loads a file's f32 `weights` (`parameters` values) into `module`, refusing a config that
/// describes more parameters than the file holds before any is allocated (burn builds most
/// parameters lazily, so their count is known first).
fn load_checked<M: Module>(
    module: &mut M,
    weights: BTreeMap<String, burn::tensor::TensorData>,
    parameters: usize,
) -> Result<(), Error> {
    if module.num_params() > parameters {
        return Err(Error::Bundle(format!(
            "the config describes {} parameters but the file holds {parameters}: config and weights do not belong together",
            module.num_params()
        )));
    }
    crate::weights::load_tensors(module, weights)
}

/// Whether the packed kernels run on `device`: natively, the CPU device on a CPU with
/// AVX-512 (without it burn's AVX2 GEMM is faster than the plain loops); in other builds (the
/// page's wasm) the CPU device: built with simd128 (`.cargo/config.toml`), the plain loops
/// sample twice as fast as burn's layers there (README, "The page").
fn packs_on(device: &Device) -> bool {
    #[cfg(feature = "native")]
    {
        crate::kernels::avx512_available() && *device == crate::cpu()
    }
    #[cfg(all(not(feature = "native"), feature = "flex"))]
    {
        *device == crate::cpu()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// A weighted sum of bundles' weights, written as one f32 bundle: with weights summing to 1,
/// the mean of fine-tunes from one start (a "model soup", Wortsman et al. 2022). Written by
/// hand because no library averages safetensors files. The files must be bundles of one
/// config and tokenizer with the same tensors (fine-tunes of one prior), else the error says
/// what differs.
pub fn combine(files: &[(&[u8], f64)]) -> Result<Vec<u8>, Error> {
    let bad = |why: String| Error::Bundle(why);
    let read = files.iter().map(|&(bytes, w)| Ok((format::read(bytes)?, w))).collect::<Result<Vec<_>, Error>>()?;
    let Some((base, _)) = read.first() else {
        return Err(bad("no bundles to combine".into()));
    };
    if base.kind != format::Kind::Generator {
        return Err(bad("only bundles (decoders and prior) are combined".into()));
    }
    let mut sums: BTreeMap<&str, (Vec<usize>, Vec<f64>)> =
        base.weights.iter().map(|(n, d)| (n.as_str(), (d.shape().to_vec(), vec![0.0; d.num_elements()]))).collect();
    for (i, (c, weight)) in read.iter().enumerate() {
        let which = i + 1;
        if !weight.is_finite() {
            return Err(bad(format!("bundle {which} has a weight of {weight}")));
        }
        if c.kind != base.kind || c.config_json != base.config_json || c.tokenizer_json != base.tokenizer_json {
            return Err(bad(format!(
                "bundle {which} has another config or tokenizer than the first: not a fine-tune of the same prior"
            )));
        }
        if c.weights.len() != sums.len() {
            return Err(bad(format!("bundle {which} holds {} tensors, the first {}", c.weights.len(), sums.len())));
        }
        for (name, data) in &c.weights {
            let Some((_, sum)) = sums.get_mut(name.as_str()).filter(|(shape, _)| *shape == data.shape().to_vec())
            else {
                return Err(bad(format!(
                    "bundle {which} has a tensor {name} that the first has not, or of another shape"
                )));
            };
            let values = data.iter::<f32>();
            sum.iter_mut().zip(values).for_each(|(s, v)| *s += weight * f64::from(v));
        }
    }
    let tensors = sums
        .into_iter()
        .map(|(name, (shape, sum))| {
            let values: Vec<f32> = sum.into_iter().map(|v| v as f32).collect();
            let data = crate::weights::f32_bytes(&values);
            (name.to_string(), crate::weights::OwnedTensor { dtype: safetensors::Dtype::F32, shape, data })
        })
        .collect();
    format::write(tensors, base.config_json.clone(), base.tokenizer_json.clone(), Precision::F32)
}
