//! Module parameters ↔ f32 safetensors bytes, through burn-store: what the bundle stores
//! (before its int8 step) and the judge file holds. Loading is strict: every parameter must
//! be present with its exact shape, and no tensor the module lacks may be there (a file for
//! another model version would otherwise load half its weights and compute something else).

use std::collections::{BTreeMap, HashMap};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors, View};

use crate::Error;

/// One tensor's dtype, shape and little-endian bytes, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl View for &OwnedTensor {
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

/// Little-endian bytes → f32 values.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

/// Refuses weights with a NaN or an infinity, naming the tensor: loaded, they would make
/// every output of the model silently wrong (bundles, stage-1 files, the judge's file).
pub fn check_finite(name: &str, values: &[f32]) -> Result<(), Error> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => {
            Err(Error::Bundle(format!("tensor {name} holds a non-finite value (at {at}): the weights are corrupt")))
        }
        None => Ok(()),
    }
}

/// f32 values → little-endian bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    // sized up front: a `flat_map` collect grows by reallocation, which the page's wasm pays
    // for in copies at every load
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Serializes named tensors (in name order) with `metadata`.
pub fn serialize(
    tensors: &BTreeMap<String, OwnedTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, Error> {
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.clone(), t)), metadata)
        .map_err(|e| Error::Bundle(e.to_string()))
}

/// The module's parameters as f32 tensors, by burn's parameter path (`prior.head.weight`…).
pub fn module_tensors<M: ModuleSnapshot>(module: &M) -> Result<BTreeMap<String, OwnedTensor>, Error> {
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
            Ok((name, OwnedTensor { dtype: Dtype::F32, shape: v.shape().to_vec(), data: v.data().to_vec() }))
        })
        .collect()
}

/// Loads f32 safetensors bytes into `module`: every parameter present with its exact shape,
/// and nothing the module lacks (the judge's file; [`load_tensors`] does the loading).
pub fn load_weights<M: ModuleSnapshot>(module: &mut M, bytes: Vec<u8>) -> Result<(), Error> {
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Bundle(format!("not readable weights: {e}")))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            if v.dtype() != Dtype::F32 {
                return Err(Error::Bundle(format!("tensor {name} is {:?}, expected F32", v.dtype())));
            }
            // safetensors checked that the bytes fit the shape
            let values = f32s(v.data());
            check_finite(&name, &values)?;
            Ok((name, TensorData::new(values, v.shape().to_vec())))
        })
        .collect::<Result<_, _>>()?;
    load_tensors(module, tensors)
}

/// Loads f32 tensors, by parameter path, into `module`: every parameter present with its
/// exact shape, and nothing the module lacks (a file for another model version would
/// otherwise load half its weights). A bundle's load calls it with weights it dequantized.
pub fn load_tensors<M: ModuleSnapshot>(module: &mut M, tensors: BTreeMap<String, TensorData>) -> Result<(), Error> {
    let snapshots = tensors.into_iter().map(|(name, data)| burn::store::bridge::from_data(data, name, None)).collect();
    let result = module.apply(snapshots, None, None, false);
    if !result.missing.is_empty() || !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(Error::Bundle(format!(
            "weights do not fit the config: missing {:?}, unused {:?}, errors {:?}",
            result.missing, result.unused, result.errors
        )));
    }
    Ok(())
}

/// A module's parameters as f32 safetensors bytes with `metadata`.
pub fn save_weights<M: ModuleSnapshot>(module: &M, metadata: HashMap<String, String>) -> Result<Vec<u8>, Error> {
    serialize(&module_tensors(module)?, Some(metadata))
}
