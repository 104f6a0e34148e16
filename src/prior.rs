//! Stage 2 (paper §3.3): a GPT-style decoder over `[start, 72 codes]` that learns
//! p(code_i | code_<i) of stage 1's unified sequences. Pre-norm blocks (GPT-2), learned
//! positions, an untied head over the codebook. `step` runs one position against a
//! key/value cache, so sampling 72 codes costs 72 single-position passes.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

use std::sync::Arc;

use crate::config::PriorConfig;
use crate::sampling_kernels::{self, CachedRows, PackedLinear};

#[derive(Module, Debug)]
pub struct PriorBlock {
    norm_attn: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm_mlp: LayerNorm,
    fc: Linear,
    fc_out: Linear,
    /// On the residual branches; active only when training (autodiff device).
    dropout: Dropout,
    heads: usize,
}

#[derive(Module, Debug)]
pub struct Prior {
    token_embedding: Embedding,
    position_embedding: Embedding,
    blocks: Vec<PriorBlock>,
    norm: LayerNorm,
    head: Linear,
    /// Codebook size: code ids are `0..codes`, the start token is `codes`.
    codes: usize,
    /// The linear layers packed for CPU sampling (set by the bundle loader), or none.
    #[module(skip)]
    packed: Option<Arc<PackedPrior>>,
}

/// The prior's linear layers packed for CPU inference ([`sampling_kernels`]).
#[derive(Debug, Clone)]
pub struct PackedPrior {
    pub blocks: Vec<PackedBlock>,
    pub head: PackedLinear,
}

#[derive(Debug, Clone)]
pub struct PackedBlock {
    pub qkv: PackedLinear,
    pub proj: PackedLinear,
    pub fc: PackedLinear,
    pub fc_out: PackedLinear,
}

/// Rows (batch × new positions) up to which a pass from an empty cache takes the packed
/// path: sampling steps, where a general GEMM re-reads every weight for a handful of rows.
const PACKED_ROWS: usize = 64;

/// Keys and values of the positions seen so far, per block: `[batch, heads, t, head_dim]`
/// tensors, or plain rows when the passes run on the CPU kernels.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    rows: Vec<CachedRows>,
    /// Positions already in the cache.
    pub len: usize,
}

impl PriorBlock {
    fn new(c: &PriorConfig, device: &Device) -> Self {
        let d = c.d_model;
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        // GPT-2 scales the residual projections by 1/sqrt(2 × layers).
        let out_init = Initializer::Normal { mean: 0.0, std: 0.02 / (2.0 * c.layers as f64).sqrt() };
        Self {
            norm_attn: LayerNormConfig::new(d).init(device),
            qkv: LinearConfig::new(d, 3 * d).with_initializer(init.clone()).init(device),
            proj: LinearConfig::new(d, d).with_initializer(out_init.clone()).init(device),
            norm_mlp: LayerNormConfig::new(d).init(device),
            fc: LinearConfig::new(d, 4 * d).with_initializer(init).init(device),
            fc_out: LinearConfig::new(4 * d, d).with_initializer(out_init).init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            heads: c.heads,
        }
    }

    /// `x`: `[B, T, d]` new positions; `past`: cached keys/values of earlier positions.
    /// Returns the output and the keys/values including the new positions.
    fn forward(
        &self,
        x: Tensor<3>,
        past: Option<(Tensor<4>, Tensor<4>)>,
        causal: bool,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let [batch, t, d] = x.dims();
        let head_dim = d / self.heads;
        let split = |y: Tensor<3>| y.reshape([batch, t, self.heads, head_dim]).swap_dims(1, 2); // [B, H, T, hd]
        let qkv = self.qkv.forward(self.norm_attn.forward(x.clone())); // [B, T, 3d]
        let q = split(qkv.clone().slice([0..batch, 0..t, 0..d]));
        let mut k = split(qkv.clone().slice([0..batch, 0..t, d..2 * d]));
        let mut v = split(qkv.slice([0..batch, 0..t, 2 * d..3 * d]));
        if let Some((pk, pv)) = past {
            k = Tensor::cat(vec![pk, k], 2);
            v = Tensor::cat(vec![pv, v], 2);
        }
        let total = k.dims()[2];
        let mut scores = q.matmul(k.clone().swap_dims(2, 3)) / (head_dim as f64).sqrt(); // [B, H, T, total]
        if causal && t > 1 {
            // position i (at total - t + i) sees keys 0..=total - t + i
            let mask = Tensor::<2, Bool>::tril_mask([t, total], (total - t) as i64, &x.device());
            scores = scores.mask_fill(mask.unsqueeze::<4>(), f32::NEG_INFINITY);
        }
        let attn = softmax(scores, 3).matmul(v.clone()); // [B, H, T, hd]
        let attn = attn.swap_dims(1, 2).reshape([batch, t, d]);
        let x = x + self.dropout.forward(self.proj.forward(attn));
        let mlp = self.fc_out.forward(gelu(self.fc.forward(self.norm_mlp.forward(x.clone()))));
        let x = x + self.dropout.forward(mlp);
        (x, (k, v))
    }

    /// [`Self::forward`] for inference on the CPU kernels: the same block, with its linear
    /// layers packed, attention over a plain cache and GELU as [`sampling_kernels`] run them.
    fn forward_packed(&self, x: Tensor<3>, p: &PackedBlock, cache: &mut CachedRows) -> Tensor<3> {
        let [batch, t, d] = x.dims();
        let device = x.device();
        let rows = batch * t;
        let tensor = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [batch, t, d]), &device);
        let qkv = p.qkv.forward(&floats(self.norm_attn.forward(x.clone())), rows); // [B·T, 3d]
        cache.append(&qkv, batch, t, d);
        let attn = cache.attend(&qkv, batch, t, d, self.heads); // [B·T, d]
        let x = x + tensor(p.proj.forward(&attn, rows));
        let mut hidden = p.fc.forward(&floats(self.norm_mlp.forward(x.clone())), rows); // [B·T, 4d]
        sampling_kernels::gelu_in_place(&mut hidden);
        x + tensor(p.fc_out.forward(&hidden, rows))
    }
}

fn floats(x: Tensor<3>) -> Vec<f32> {
    x.into_data().try_into_vec_as::<f32>().expect("f32 activations")
}

impl Prior {
    /// A prior over `codes` code ids and sequences of `positions` codes.
    pub fn new(c: &PriorConfig, codes: usize, positions: usize, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        Self {
            token_embedding: EmbeddingConfig::new(codes + 1, c.d_model).with_initializer(init.clone()).init(device),
            position_embedding: EmbeddingConfig::new(positions + 1, c.d_model)
                .with_initializer(init.clone())
                .init(device),
            blocks: (0..c.layers).map(|_| PriorBlock::new(c, device)).collect(),
            norm: LayerNormConfig::new(c.d_model).init(device),
            head: LinearConfig::new(c.d_model, codes).with_bias(false).with_initializer(init).init(device),
            codes,
            packed: None,
        }
    }

    /// Runs small-batch inference passes through `packed` (built from this prior's own
    /// weights by the bundle loader); `None` goes back to burn's layers.
    pub fn set_packed(&mut self, packed: Option<PackedPrior>) {
        self.packed = packed.map(Arc::new);
    }

    /// Whether inference passes run packed layers.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// The start token id.
    pub fn start(&self) -> usize {
        self.codes
    }

    /// Runs `tokens` as positions `cache.len..cache.len + T`, appending to the cache.
    ///
    /// # Shapes
    /// - tokens: `[batch, T]` → logits `[batch, T, codes]` for the *next* code at each position
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let [batch, t] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(cache.len as i64..(cache.len + t) as i64, &device)
            .reshape([1, t])
            .repeat_dim(0, batch);
        let mut x = self.token_embedding.forward(tokens) + self.position_embedding.forward(positions); // [B, T, d]
        // a cache stays on the path it started on
        let packed = self.packed.as_deref().filter(|_| {
            !device.is_autodiff() && (!cache.rows.is_empty() || (cache.len == 0 && batch * t <= PACKED_ROWS))
        });
        if let Some(p) = packed {
            cache.rows.resize(self.blocks.len(), CachedRows::default());
            for ((block, packed), rows) in self.blocks.iter().zip(&p.blocks).zip(cache.rows.iter_mut()) {
                x = block.forward_packed(x, packed, rows);
            }
            cache.len += t;
            let logits = p.head.forward(&floats(self.norm.forward(x)), batch * t);
            return Tensor::from_data(TensorData::new(logits, [batch, t, self.codes]), &device);
        }
        assert!(cache.rows.is_empty(), "a cache from the packed path continued without it");
        cache.layers.resize(self.blocks.len(), None);
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let (y, kv) = block.forward(x, slot.take(), true);
            x = y;
            *slot = Some(kv);
        }
        cache.len += t;
        self.head.forward(self.norm.forward(x))
    }

    /// Full-sequence pass (training).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_cached(tokens, &mut KvCache::default())
    }

    /// Next-code cross-entropy of code sequences `[batch, 72]` (the start token is prepended).
    pub fn loss(&self, codes: Tensor<2, Int>) -> Tensor<1> {
        let [batch, n] = codes.dims();
        let device = codes.device();
        let start = Tensor::<2, Int>::full([batch, 1], self.start() as i64, &device);
        let inputs = Tensor::cat(vec![start, codes.clone().slice([0..batch, 0..n - 1])], 1); // [B, 72]
        let logits = self.forward(inputs); // [B, 72, K]
        let ce = CrossEntropyLossConfig::new().init(&device);
        ce.forward(logits.reshape([batch * n, self.codes]), codes.reshape([batch * n]))
    }
}
