//! The bundle: ONE safetensors file with everything generation needs — the prior, the
//! codebook, the cross maps and both decoders, the config, the tokenizer and a format
//! version — readable from Python too (`safetensors.safe_open`).
//!
//! Weights (tensors of rank ≥ 2) are stored as int8 with one f32 scale per block of
//! [`BLOCK`] consecutive values (symmetric, scale = max|x| / 127) in a companion tensor
//! `NAME.__scale`; biases and norms stay f32. Our own format rather than burn's quantizer,
//! because it decodes identically on every backend (WebGPU has no i8; see the notes).
//! Loading dequantizes to f32 and hands the tensors to burn-store; on a CPU with the packed
//! kernels it also packs the prior's linear layers from the stored int8 (or f32) values
//! for sampling ([`crate::sampling_kernels`]; `MXQ_PACKED=0` turns that off).

use std::collections::{BTreeMap, HashMap};

use burn::module::Module;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use safetensors::{Dtype, SafeTensors, View};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::config::MxqConfig;
use crate::mxq_vae::MxqDecoder;
use crate::prior::{PackedBlock, PackedPrior, Prior};
use crate::sampling_kernels::PackedLinear;
use crate::tokenizer::CaptionTokenizer;

/// `format` entry of every bundle.
pub const FORMAT: &str = "mxq-bundle";
/// Format version this build writes and reads (2: the dense-mapped text decoder).
pub const VERSION: u32 = 2;
/// Values per int8 scale.
pub const BLOCK: usize = 64;
const SCALE_SUFFIX: &str = ".__scale";

/// What the bundle ships: the decode half of stage 1 and the prior.
#[derive(Module, Debug)]
pub struct Generator {
    pub decoder: MxqDecoder,
    pub prior: Prior,
}

impl Generator {
    /// A freshly initialised generator of this config's shape.
    pub fn new(config: &MxqConfig, device: &Device) -> Self {
        let s = &config.stage1;
        Self { decoder: MxqDecoder::new(s, device), prior: Prior::new(&config.prior, s.codes(), s.positions(), device) }
    }
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    pub config: MxqConfig,
    pub tokenizer: CaptionTokenizer,
    pub generator: Generator,
}

/// How to store the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Int8,
}

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Symmetric int8 with one scale per block of `BLOCK` values.
pub fn quantize_blocks(values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len().div_ceil(BLOCK));
    for block in values.chunks(BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(block.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (q, scales)
}

pub fn dequantize_blocks(q: &[i8], scales: &[f32]) -> Vec<f32> {
    q.chunks(BLOCK).zip(scales).flat_map(|(block, s)| block.iter().map(move |&v| v as f32 * s)).collect()
}

/// Hash over every tensor (name, dtype, shape, bytes in name order), the config and the
/// tokenizer: any flipped byte in the payload or metadata is caught at load.
fn digest(tensors: &BTreeMap<String, Owned>, config: &str, tokenizer: &str) -> String {
    let mut h = Sha256::new();
    for (name, t) in tensors {
        h.update(name.as_bytes());
        h.update(format!("{:?}{:?}", t.dtype, t.shape).as_bytes());
        h.update(&t.data);
    }
    h.update(config.as_bytes());
    h.update(tokenizer.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The module's parameters as f32 safetensors, through burn-store.
fn module_tensors<M: ModuleSnapshot>(module: &M) -> Result<BTreeMap<String, Owned>, Error> {
    let mut store = SafetensorsStore::from_bytes(None);
    module.save_into(&mut store).map_err(|e| Error::Bundle(format!("cannot export weights: {e}")))?;
    let bytes = store.get_bytes().map_err(|e| Error::Bundle(format!("cannot export weights: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Bundle(e.to_string()))?;
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            if v.dtype() != Dtype::F32 {
                return Err(Error::Bundle(format!("tensor {name} is {:?}, expected F32", v.dtype())));
            }
            Ok((name, Owned { dtype: Dtype::F32, shape: v.shape().to_vec(), data: v.data().to_vec() }))
        })
        .collect()
}

/// Serializes a generator, its config and tokenizer into bundle bytes.
pub fn export(
    generator: &Generator,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    let mut tensors = BTreeMap::new();
    for (name, t) in module_tensors(generator)? {
        if precision == Precision::Int8 && t.shape.len() >= 2 {
            let (q, scales) = quantize_blocks(&f32s(&t.data));
            tensors.insert(
                format!("{name}{SCALE_SUFFIX}"),
                Owned { dtype: Dtype::F32, shape: vec![scales.len()], data: f32_bytes(&scales) },
            );
            tensors
                .insert(name, Owned { dtype: Dtype::I8, shape: t.shape, data: q.iter().map(|&v| v as u8).collect() });
        } else {
            tensors.insert(name, t);
        }
    }
    let config_json = config.to_json();
    let tokenizer_json = tokenizer.to_json();
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
        ("precision".to_string(), format!("{precision:?}").to_lowercase()),
        ("sha256".to_string(), digest(&tensors, &config_json, &tokenizer_json)),
        ("config".to_string(), config_json),
        ("tokenizer".to_string(), tokenizer_json),
    ]);
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.clone(), t)), Some(metadata))
        .map_err(|e| Error::Bundle(e.to_string()))
}

/// Reads and checks bundle bytes, then builds the generator on `device`.
/// A truncated, corrupted, foreign or wrong-version file gives an error naming the fault.
pub fn load(bytes: &[u8], device: &Device) -> Result<Bundle, Error> {
    let bad = |why: String| Error::Bundle(why);
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(format!("not a readable safetensors file ({} bytes; truncated or corrupted?): {e}", bytes.len()))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| meta.get(k).ok_or_else(|| bad(format!("metadata has no '{k}' entry: not an mxq bundle?")));
    if field("format")? != FORMAT {
        return Err(bad(format!("format is '{}', expected '{FORMAT}'", field("format")?)));
    }
    let version = field("version")?;
    if version != &VERSION.to_string() {
        return Err(bad(format!(
            "format version {version}, but this build reads version {VERSION}: re-export it with a matching mxq"
        )));
    }
    let mut tensors = BTreeMap::new();
    for (name, v) in st.tensors() {
        tensors.insert(name, Owned { dtype: v.dtype(), shape: v.shape().to_vec(), data: v.data().to_vec() });
    }
    let (config_json, tokenizer_json) = (field("config")?, field("tokenizer")?);
    if &digest(&tensors, config_json, tokenizer_json) != field("sha256")? {
        return Err(bad("integrity check failed: the sha256 of the contents does not match (corrupted file)".into()));
    }
    let config = MxqConfig::from_json(config_json)?;
    let tokenizer = CaptionTokenizer::from_json(tokenizer_json)?;
    if tokenizer.vocab_size() != config.stage1.vocab_size {
        return Err(bad(format!(
            "tokenizer has {} entries, config says {}",
            tokenizer.vocab_size(),
            config.stage1.vocab_size
        )));
    }
    // dequantize into a plain f32 safetensors image that burn-store loads
    let mut plain = BTreeMap::new();
    for (name, t) in &tensors {
        if name.ends_with(SCALE_SUFFIX) {
            continue;
        }
        let data = match t.dtype {
            Dtype::F32 => t.data.clone(),
            Dtype::I8 => {
                let scales = tensors
                    .get(&format!("{name}{SCALE_SUFFIX}"))
                    .ok_or_else(|| bad(format!("int8 tensor {name} has no scales")))?;
                let q: Vec<i8> = t.data.iter().map(|&b| b as i8).collect();
                if scales.data.len() / 4 != q.len().div_ceil(BLOCK) {
                    return Err(bad(format!("tensor {name}: {} scales for {} values", scales.data.len() / 4, q.len())));
                }
                f32_bytes(&dequantize_blocks(&q, &f32s(&scales.data)))
            }
            other => return Err(bad(format!("tensor {name} has dtype {other:?}"))),
        };
        plain.insert(name.clone(), Owned { dtype: Dtype::F32, shape: t.shape.clone(), data });
    }
    let plain =
        safetensors::serialize(plain.iter().map(|(n, t)| (n.clone(), t)), None).map_err(|e| bad(e.to_string()))?;
    let mut generator = Generator::new(&config, device);
    load_weights(&mut generator, plain)?;
    if packs_here(device) {
        generator.prior.set_packed(pack_prior(&tensors, config.prior.layers));
    }
    Ok(Bundle { config, tokenizer, generator })
}

/// Whether [`load`] packs the prior: the native CPU device on a CPU with the packed
/// kernels, unless `MXQ_PACKED=0` (for side-by-side figures).
fn packs_here(device: &Device) -> bool {
    #[cfg(feature = "native")]
    {
        let off = std::env::var("MXQ_PACKED").is_ok_and(|v| v == "0");
        crate::sampling_kernels::simd_available() && *device == crate::cpu() && !off
    }
    #[cfg(not(feature = "native"))]
    {
        let _ = device;
        false
    }
}

/// The prior's linear layers packed from the bundle's tensors as stored (int8 stays int8);
/// `None` where a layer's shape does not pack (burn's layers then run).
fn pack_prior(tensors: &BTreeMap<String, Owned>, layers: usize) -> Option<PackedPrior> {
    let layer = |name: String| -> Option<PackedLinear> {
        let w = tensors.get(&format!("{name}.weight"))?;
        let [k, n] = w.shape[..] else { return None };
        let bias = tensors.get(&format!("{name}.bias")).map(|b| f32s(&b.data));
        match w.dtype {
            Dtype::I8 => {
                let q: Vec<i8> = w.data.iter().map(|&b| b as i8).collect();
                let scales = f32s(&tensors.get(&format!("{name}.weight{SCALE_SUFFIX}"))?.data);
                PackedLinear::int8(&q, &scales, k, n, bias).ok()
            }
            Dtype::F32 => PackedLinear::f32(&f32s(&w.data), k, n, bias).ok(),
            _ => None,
        }
    };
    let blocks = (0..layers)
        .map(|i| {
            let name = |l: &str| format!("prior.blocks.{i}.{l}");
            Some(PackedBlock {
                qkv: layer(name("qkv"))?,
                proj: layer(name("proj"))?,
                fc: layer(name("fc"))?,
                fc_out: layer(name("fc_out"))?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(PackedPrior { blocks, head: layer("prior.head".into())? })
}

/// Loads f32 safetensors bytes into `module`, requiring every parameter to be present
/// with its exact shape, and no tensor the module lacks (a file for another model
/// version would otherwise load half its weights and compute something else).
pub fn load_weights<M: ModuleSnapshot>(module: &mut M, bytes: Vec<u8>) -> Result<(), Error> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result =
        module.load_from(&mut store).map_err(|e| Error::Bundle(format!("weights do not fit the config: {e}")))?;
    if !result.missing.is_empty() || !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(Error::Bundle(format!(
            "weights do not fit the config: missing {:?}, unused {:?}, errors {:?}",
            result.missing, result.unused, result.errors
        )));
    }
    Ok(())
}

/// Exports a module's parameters as f32 safetensors bytes with metadata (checkpoints).
pub fn save_weights<M: ModuleSnapshot>(module: &M, metadata: HashMap<String, String>) -> Result<Vec<u8>, Error> {
    let tensors = module_tensors(module)?;
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.clone(), t)), Some(metadata))
        .map_err(|e| Error::Bundle(e.to_string()))
}
