//! The prior on the CPU kernels: the same blocks as [`Prior`], with its linear layers
//! packed ([`PackedLinear`]), attention over a plain cache ([`CachedRows`]) and GELU as
//! [`activations`](crate::kernels::activations) runs it. Embeddings, layer norms and residual
//! adds stay burn ops on the prior's own modules. Built from a [`Prior`] for inference on the
//! native CPU device; step for step it gives the prior's logits to float rounding.

use burn::nn::{Embedding, LayerNorm};
use burn::prelude::*;

use crate::kernels::Simd;
use crate::kernels::activations::gelu_in_place;
use crate::kernels::attention::CachedRows;
use crate::kernels::packed_linear::PackedLinear;
use crate::model::prior::{Prior, embed};

/// Rows (batch × new positions) up to which a pass is worth the packed kernels: sampling
/// steps, where a general GEMM re-reads every weight for a handful of rows. Beyond, burn's
/// GEMM is the better choice.
pub const MAX_ROWS: usize = 64;

/// A [`Prior`] with its linear layers packed.
#[derive(Debug, Clone)]
pub struct PackedPrior {
    token_embedding: Embedding,
    position_embedding: Embedding,
    blocks: Vec<PackedBlock>,
    norm: LayerNorm,
    head: PackedLinear,
    vocab: usize,
    simd: Simd,
}

#[derive(Debug, Clone)]
struct PackedBlock {
    norm_attn: LayerNorm,
    qkv: PackedLinear,
    proj: PackedLinear,
    norm_mlp: LayerNorm,
    fc: PackedLinear,
    fc_out: PackedLinear,
    heads: usize,
}

/// A bundle's int8 weights as stored: values and one scale per 64-value block, by parameter path.
pub type StoredBlocks = std::collections::BTreeMap<String, (Vec<i8>, Vec<f32>)>;

/// Keys and values of the positions seen so far, per block, as plain rows.
#[derive(Debug, Clone, Default)]
pub struct PackedCache {
    rows: Vec<CachedRows>,
    /// Positions already in the cache.
    pub len: usize,
}

impl PackedCache {
    /// Adds `copies` sequences after the cache's own `batch`, each a copy of `one`'s single
    /// sequence (as many positions; or nothing where this cache is empty).
    pub fn append_copies(&mut self, one: &PackedCache, copies: usize) {
        assert_eq!(one.len, self.len, "the copied sequence has the cache's positions");
        for (mine, theirs) in self.rows.iter_mut().zip(&one.rows) {
            mine.append_copies(theirs, self.len, copies);
        }
    }
}

/// A linear layer's f32 weights `[k, n]` and bias, packed.
fn pack_f32(linear: &burn::nn::Linear) -> Result<PackedLinear, String> {
    let [k, n] = linear.weight.dims();
    let w = linear.weight.val().into_data().try_into_vec_as::<f32>().map_err(|e| format!("{e:?}"))?;
    PackedLinear::f32(&w, k, n, bias(linear)?)
}

/// A linear layer packed from its stored int8 blocks (`q`, `scales`: a bundle's own, so
/// nothing is quantized again), its bias from the layer.
fn pack_stored(linear: &burn::nn::Linear, stored: &(Vec<i8>, Vec<f32>)) -> Result<PackedLinear, String> {
    let [k, n] = linear.weight.dims();
    PackedLinear::int8(&stored.0, &stored.1, k, n, bias(linear)?)
}

fn bias(linear: &burn::nn::Linear) -> Result<Option<Vec<f32>>, String> {
    match &linear.bias {
        Some(b) => Ok(Some(b.val().into_data().try_into_vec_as::<f32>().map_err(|e| format!("{e:?}"))?)),
        None => Ok(None),
    }
}

fn floats(x: Tensor<3>) -> Vec<f32> {
    x.into_data().try_into_vec_as::<f32>().expect("f32 activations")
}

impl PackedPrior {
    /// Packs `prior`'s linear layers as f32 (an f32 bundle's; an int8 one packs its stored
    /// blocks: [`Self::from_stored`]). An error names a layer whose shape does not pack
    /// (widths must be multiples of 64).
    pub fn new(prior: &Prior, simd: Simd) -> Result<Self, String> {
        Self::build(prior, simd, &|_, linear| pack_f32(linear))
    }

    /// Packs `prior`'s linear layers from the int8 blocks a bundle stores (`stored`, by
    /// parameter path: `prior.blocks.0.qkv.weight`…), as they are: a bundle's load then
    /// skips quantizing its own dequantized weights again. A layer missing there is an error.
    pub fn from_stored(prior: &Prior, stored: &StoredBlocks, simd: Simd) -> Result<Self, String> {
        Self::build(prior, simd, &|name, linear| {
            let blocks =
                stored.get(&format!("prior.{name}.weight")).ok_or(format!("no int8 blocks for prior.{name}"))?;
            pack_stored(linear, blocks)
        })
    }

    fn build(
        prior: &Prior,
        simd: Simd,
        pack: &dyn Fn(&str, &burn::nn::Linear) -> Result<PackedLinear, String>,
    ) -> Result<Self, String> {
        let blocks = prior
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let name = |layer: &str| format!("blocks.{i}.{layer}");
                Ok(PackedBlock {
                    norm_attn: b.norm_attn.clone(),
                    qkv: pack(&name("qkv"), &b.qkv)?,
                    proj: pack(&name("proj"), &b.proj)?,
                    norm_mlp: b.norm_mlp.clone(),
                    fc: pack(&name("fc"), &b.fc)?,
                    fc_out: pack(&name("fc_out"), &b.fc_out)?,
                    heads: b.heads,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            token_embedding: prior.token_embedding.clone(),
            position_embedding: prior.position_embedding.clone(),
            blocks,
            norm: prior.norm.clone(),
            head: pack("head", &prior.head)?,
            vocab: prior.vocab,
            simd,
        })
    }

    /// The start token id.
    pub fn start(&self) -> usize {
        self.vocab
    }

    /// [`Prior::forward_cached`] on the packed kernels.
    ///
    /// # Shapes
    /// - tokens: `[batch, T]` → logits `[batch, T, vocab]` for the *next* code at each position
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut PackedCache) -> Tensor<3> {
        let [batch, t] = tokens.dims();
        let device = tokens.device();
        let mut x = embed(&self.token_embedding, &self.position_embedding, tokens, cache.len); // [B, T, d]
        cache.rows.resize(self.blocks.len(), CachedRows::default());
        for (block, rows) in self.blocks.iter().zip(cache.rows.iter_mut()) {
            x = block.forward(x, rows, self.simd);
        }
        cache.len += t;
        let logits = self.head.forward(&floats(self.norm.forward(x)), batch * t, self.simd);
        Tensor::from_data(TensorData::new(logits, [batch, t, self.vocab]), &device)
    }
}

impl PackedBlock {
    /// The prior's block: causal attention over the cache, then the MLP.
    ///
    /// # Shapes
    /// - x: `[batch, t, d]` new positions → `[batch, t, d]`
    fn forward(&self, x: Tensor<3>, cache: &mut CachedRows, simd: Simd) -> Tensor<3> {
        let [batch, t, d] = x.dims();
        let device = x.device();
        let rows = batch * t;
        let tensor = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [batch, t, d]), &device);
        let qkv = self.qkv.forward(&floats(self.norm_attn.forward(x.clone())), rows, simd); // [B·T, 3d]
        cache.append(&qkv, batch, t, d);
        let attn = cache.attend(&qkv, batch, t, d, self.heads, simd); // [B·T, d]
        let x = x + tensor(self.proj.forward(&attn, rows, simd));
        let mut hidden = self.fc.forward(&floats(self.norm_mlp.forward(x.clone())), rows, simd); // [B·T, 4d]
        gelu_in_place(&mut hidden, simd);
        x + tensor(self.fc_out.forward(&hidden, rows, simd))
    }
}
