//! The bundle's file format: a safetensors file whose metadata holds `format`, `version`,
//! `precision`, the config and tokenizer JSON and a sha256 of everything; int8 weights
//! carry their block scales in a companion tensor `NAME.__scale`
//! ([`crate::kernels::int8`]); 4-bit weights (precision `int4`) are `U8` tensors of two
//! values per byte, their last axis stored at half its length, with scales as int8's. This
//! module turns module tensors into that payload and back.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::TensorData;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::kernels::int8::{
    BLOCK, Precision, dequantize_blocks, dequantize_int4_blocks, quantize_blocks, quantize_int4_blocks, stored_in_int4,
};
use crate::kernels::packed_prior::StoredBlocks;
use crate::weights::{OwnedTensor, f32_bytes, f32s};

/// `format` entry of every bundle.
pub const FORMAT: &str = "mxq-bundle";
/// Format version this build writes (3: the nested config; 2: the flat config, still read).
pub const VERSION: u32 = 3;
/// The versions this build reads: a version-2 bundle's config is converted on load
/// ([`crate::config::legacy`]); its tensors are named as today's.
pub const READS: [u32; 2] = [2, 3];
const SCALE_SUFFIX: &str = ".__scale";
/// The most weights a file may hold (512 MB as f32; the paper preset's bundle has ~25M):
/// refused before they are widened, which a page's wasm could not survive.
pub const MAX_WEIGHTS: usize = 1 << 27;

/// What a file of this format holds (metadata `contents`; absent in files from before
/// stage-1 files existed, which are all generators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A bundle: stage 1's decoder half and the prior.
    Generator,
    /// A whole trained stage 1 (encoder and decoder halves) with its training record as
    /// metadata `trained` (JSON), to train priors on without training stage 1 again.
    Stage1 { trained: String },
    /// Stage 1's encode half alone (encoders and codebook, [`crate::model::mxq_vae::MxqCoder`]:
    /// its codebook is `quantizer.codebook`): what the conditional modes need, half the bytes.
    Encoder,
}

/// A bundle file's parts, read and checked but not yet built into a model.
pub struct Contents {
    pub kind: Kind,
    pub version: u32,
    pub precision: Precision,
    pub config_json: String,
    pub tokenizer_json: String,
    /// Every weight as f32 values by parameter path (int8 and 4-bit dequantized).
    pub weights: BTreeMap<String, TensorData>,
    /// The int8 weights as stored (values and block scales), for kernels that run on them.
    pub int8: StoredBlocks,
    /// Values in those weights, to check a config against before building its model.
    pub parameters: usize,
    /// The codebook's values (`decoder.quantizer.codebook`, an encoder file's
    /// `quantizer.codebook`; empty where a file has none).
    pub codebook: Vec<f32>,
}

/// The tensor that names a stage 1: its shared codebook.
const CODEBOOK: &str = "decoder.quantizer.codebook";
/// The same in an encoder file ([`crate::model::mxq_vae::MxqCoder`]).
const CODER_CODEBOOK: &str = "quantizer.codebook";

/// Hash over every tensor (name, dtype, shape, bytes in name order), the config and the
/// tokenizer: any flipped byte in the payload or metadata is caught at load.
fn digest<'a>(
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
    config: &str,
    tokenizer: &str,
    kind: &Kind,
) -> String {
    let mut h = Sha256::new();
    for (name, dtype, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(format!("{dtype:?}{shape:?}").as_bytes());
        h.update(data);
    }
    h.update(config.as_bytes());
    h.update(tokenizer.as_bytes());
    match kind {
        Kind::Generator => {}
        Kind::Stage1 { trained } => {
            h.update(b"stage1");
            h.update(trained.as_bytes());
        }
        Kind::Encoder => h.update(b"encoder"),
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bundle bytes from f32 module tensors, stored in `precision` (weights of rank ≥ 2 as
/// int8 blocks, or for int4 the text decoder's map in 4-bit blocks; biases and norms stay
/// f32).
pub fn write(
    tensors: BTreeMap<String, OwnedTensor>,
    config_json: String,
    tokenizer_json: String,
    precision: Precision,
) -> Result<Vec<u8>, Error> {
    write_kind(tensors, config_json, tokenizer_json, precision, Kind::Generator)
}

/// [`write`] for a file of any [`Kind`].
pub fn write_kind(
    tensors: BTreeMap<String, OwnedTensor>,
    config_json: String,
    tokenizer_json: String,
    precision: Precision,
    kind: Kind,
) -> Result<Vec<u8>, Error> {
    let mut stored = BTreeMap::new();
    for (name, t) in tensors {
        if precision == Precision::Int4 && stored_in_int4(&name, &t.shape) {
            // 4-bit: bytes of two values, so the stored shape halves the last axis
            let (packed, scales) = quantize_int4_blocks(&f32s(&t.data));
            stored.insert(
                format!("{name}{SCALE_SUFFIX}"),
                OwnedTensor { dtype: Dtype::F32, shape: vec![scales.len()], data: f32_bytes(&scales) },
            );
            let mut shape = t.shape;
            *shape.last_mut().unwrap() /= 2;
            stored.insert(name, OwnedTensor { dtype: Dtype::U8, shape, data: packed });
        } else if precision != Precision::F32 && t.shape.len() >= 2 {
            let (q, scales) = quantize_blocks(&f32s(&t.data));
            stored.insert(
                format!("{name}{SCALE_SUFFIX}"),
                OwnedTensor { dtype: Dtype::F32, shape: vec![scales.len()], data: f32_bytes(&scales) },
            );
            stored.insert(
                name,
                OwnedTensor { dtype: Dtype::I8, shape: t.shape, data: q.iter().map(|&v| v as u8).collect() },
            );
        } else {
            stored.insert(name, t);
        }
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
        ("precision".to_string(), format!("{precision:?}").to_lowercase()),
        (
            "sha256".to_string(),
            digest(
                stored.iter().map(|(n, t)| (n.as_str(), t.dtype, t.shape.as_slice(), t.data.as_slice())),
                &config_json,
                &tokenizer_json,
                &kind,
            ),
        ),
        ("config".to_string(), config_json),
        ("tokenizer".to_string(), tokenizer_json),
    ]);
    // a bundle's metadata stays as it was before stage-1 files existed
    match kind {
        Kind::Generator => {}
        Kind::Stage1 { trained } => {
            metadata.insert("contents".into(), "stage1".into());
            metadata.insert("trained".into(), trained);
        }
        Kind::Encoder => {
            metadata.insert("contents".into(), "encoder".into());
        }
    }
    crate::weights::serialize(&stored, Some(metadata))
}

/// Reads and checks bundle bytes: a truncated, corrupted, foreign or wrong-version file
/// gives an error naming the fault.
pub fn read(bytes: &[u8]) -> Result<Contents, Error> {
    let bad = |why: String| Error::Bundle(why);
    if bytes.len() as u64 > super::MAX_BUNDLE_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {} a file of mxq may have",
            bytes.len(),
            super::MAX_BUNDLE_BYTES
        )));
    }
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
    let Some(version) = version.parse().ok().filter(|v| READS.contains(v)) else {
        return Err(bad(format!(
            "format version {version}, but this build reads versions {READS:?}: re-export it with a matching mxq"
        )));
    };
    let kind = match meta.get("contents").map(String::as_str) {
        None | Some("generator") => Kind::Generator,
        Some("stage1") => Kind::Stage1 { trained: field("trained")?.clone() },
        Some("encoder") => Kind::Encoder,
        Some(other) => return Err(bad(format!("contents '{other}' (generator, stage1 or encoder)"))),
    };
    // the tensors as views into `bytes`: nothing is copied before the digest has passed
    let tensors: BTreeMap<String, TensorView> = st.tensors().into_iter().collect();
    let (config_json, tokenizer_json) = (field("config")?, field("tokenizer")?);
    let listed = tensors.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data()));
    if &digest(listed, config_json, tokenizer_json, &kind) != field("sha256")? {
        return Err(bad("integrity check failed: the sha256 of the contents does not match (corrupted file)".into()));
    }
    let precision = match field("precision")?.as_str() {
        "int8" => Precision::Int8,
        "int4" => Precision::Int4,
        "f32" => Precision::F32,
        other => return Err(bad(format!("precision '{other}' (int4, int8 or f32)"))),
    };
    let scales_of = |name: &str, what: &str| match tensors.get(&format!("{name}{SCALE_SUFFIX}")) {
        Some(s) if s.dtype() == Dtype::F32 => Ok(f32s(s.data())),
        Some(s) => Err(bad(format!("{what} tensor {name} has scales of dtype {:?}, not F32", s.dtype()))),
        None => Err(bad(format!("{what} tensor {name} has no scales"))),
    };
    // counted before anything is widened to f32: a 4-bit file holds 8 times its bytes in f32
    let weights_in = |t: &TensorView| match t.dtype() {
        Dtype::U8 => t.data().len().saturating_mul(2),
        Dtype::F32 => t.data().len() / 4,
        _ => t.data().len(),
    };
    let held = tensors.iter().filter(|(n, _)| !n.ends_with(SCALE_SUFFIX)).map(|(_, t)| weights_in(t));
    let held = held.fold(0usize, usize::saturating_add);
    if held > MAX_WEIGHTS {
        return Err(bad(format!("{held} weights, more than the {MAX_WEIGHTS} a file of mxq may hold")));
    }
    // dequantize to f32 values that burn-store loads as they are
    let mut weights = BTreeMap::new();
    let mut int8 = StoredBlocks::new();
    let mut parameters = 0;
    for (name, t) in &tensors {
        if name.ends_with(SCALE_SUFFIX) {
            continue;
        }
        let mut shape = t.shape().to_vec();
        let values = match t.dtype() {
            Dtype::F32 => f32s(t.data()),
            Dtype::I8 => {
                let scales = scales_of(name, "int8")?;
                let q: Vec<i8> = t.data().iter().map(|&b| b as i8).collect();
                if scales.len() != q.len().div_ceil(BLOCK) {
                    return Err(bad(format!("tensor {name}: {} scales for {} values", scales.len(), q.len())));
                }
                let values = dequantize_blocks(&q, &scales);
                int8.insert(name.clone(), (q, scales));
                values
            }
            Dtype::U8 => {
                let scales = scales_of(name, "4-bit")?;
                let len = t.data().len() * 2;
                if scales.len() != len.div_ceil(BLOCK) {
                    return Err(bad(format!("tensor {name}: {} scales for {len} 4-bit values", scales.len())));
                }
                let last = shape.last_mut().ok_or_else(|| bad(format!("4-bit tensor {name} has no shape")))?;
                *last =
                    last.checked_mul(2).ok_or_else(|| bad(format!("4-bit tensor {name}: shape {:?}", t.shape())))?;
                dequantize_int4_blocks(t.data(), len, &scales)
            }
            other => return Err(bad(format!("tensor {name} has dtype {other:?}"))),
        };
        crate::weights::check_finite(name, &values)?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(bad(format!("tensor {name}: {} values for shape {shape:?}", values.len())));
        }
        parameters += values.len();
        weights.insert(name.clone(), TensorData::new(values, shape));
    }
    let name = if kind == Kind::Encoder { CODER_CODEBOOK } else { CODEBOOK };
    let codebook = weights.get(name).map(|d| d.try_to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
    Ok(Contents {
        kind,
        version,
        precision,
        config_json: config_json.clone(),
        tokenizer_json: tokenizer_json.clone(),
        weights,
        int8,
        parameters,
        codebook,
    })
}
