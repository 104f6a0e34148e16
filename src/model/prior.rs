//! Stage 2 (paper §3.3): a GPT-style decoder over `[start, 72 codes]` that learns
//! p(code_i | code_<i) of stage 1's unified sequences. Pre-norm blocks (GPT-2), learned
//! positions, an untied head over the codebook. [`Prior::forward_cached`] runs new
//! positions against a key/value cache, so sampling 72 codes costs 72 single-position
//! passes. On CPUs with AVX-512 the same weights also run packed
//! ([`crate::kernels::packed_prior`]).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, log_softmax, softmax};

use crate::config::{MxqConfig, PriorConfig};

#[derive(Module, Debug)]
pub struct PriorBlock {
    pub norm_attn: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub norm_mlp: LayerNorm,
    pub fc: Linear,
    pub fc_out: Linear,
    /// On the residual branches; active only when training (autodiff device).
    dropout: Dropout,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct Prior {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub blocks: Vec<PriorBlock>,
    pub norm: LayerNorm,
    pub head: Linear,
    /// Code ids are `0..vocab`, the start token is `vocab`.
    pub vocab: usize,
}

/// Keys and values of one block's positions, `[batch, heads, t, head_dim]` each.
#[derive(Debug, Clone)]
pub struct KeysValues {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
}

/// What a block gives: its output and the keys/values including the new positions.
#[derive(Debug, Clone)]
pub struct BlockOutput {
    pub x: Tensor<3>,
    pub cache: KeysValues,
}

/// Keys and values of the positions seen so far, per block.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<KeysValues>>,
    /// Positions already in the cache.
    pub len: usize,
}

impl PriorBlock {
    fn new(c: &PriorConfig, device: &Device) -> Self {
        // GPT-2 scales the residual projections by 1/sqrt(2 × layers).
        Self::with_out_init(c, device, Initializer::Normal { mean: 0.0, std: 0.02 / (2.0 * c.layers as f64).sqrt() })
    }

    /// A block that starts as the identity: its residual projections (weights and biases)
    /// are zero, so it passes its input through until training moves them; the rest is
    /// drawn as in [`PriorBlock::new`], so gradients reach it once the projections have moved
    /// (from the second step on).
    fn identity(c: &PriorConfig, device: &Device) -> Self {
        Self::with_out_init(c, device, Initializer::Zeros)
    }

    fn with_out_init(c: &PriorConfig, device: &Device, out_init: Initializer) -> Self {
        let d = c.d_model;
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
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

    /// Causal self-attention and MLP over new positions that follow the cached ones.
    ///
    /// # Shapes
    /// - x: `[batch, t, d]` new positions; past: keys/values `[batch, heads, past, head_dim]`
    /// - output: `[batch, t, d]`, keys/values `[batch, heads, past + t, head_dim]`
    fn forward(&self, x: Tensor<3>, past: Option<KeysValues>) -> BlockOutput {
        let [batch, t, d] = x.dims();
        let head_dim = d / self.heads;
        let split = |y: Tensor<3>| y.reshape([batch, t, self.heads, head_dim]).swap_dims(1, 2); // [B, H, T, hd]
        let qkv = self.qkv.forward(self.norm_attn.forward(x.clone())); // [B, T, 3d]
        let q = split(qkv.clone().slice([0..batch, 0..t, 0..d]));
        let mut k = split(qkv.clone().slice([0..batch, 0..t, d..2 * d]));
        let mut v = split(qkv.slice([0..batch, 0..t, 2 * d..3 * d]));
        if let Some(past) = past {
            k = Tensor::cat(vec![past.keys, k], 2);
            v = Tensor::cat(vec![past.values, v], 2);
        }
        let total = k.dims()[2];
        let mut scores = q.matmul(k.clone().swap_dims(2, 3)) / (head_dim as f64).sqrt(); // [B, H, T, total]
        if t > 1 {
            // position i (at total - t + i) sees keys 0..=total - t + i
            let mask = Tensor::<2, Bool>::tril_mask([t, total], (total - t) as i64, &x.device());
            scores = scores.mask_fill(mask.unsqueeze::<4>(), f32::NEG_INFINITY);
        }
        let attn = softmax(scores, 3).matmul(v.clone()); // [B, H, T, hd]
        let attn = attn.swap_dims(1, 2).reshape([batch, t, d]);
        let x = x + self.dropout.forward(self.proj.forward(attn));
        let mlp = self.fc_out.forward(gelu(self.fc.forward(self.norm_mlp.forward(x.clone()))));
        let x = x + self.dropout.forward(mlp);
        BlockOutput { x, cache: KeysValues { keys: k, values: v } }
    }
}

impl KvCache {
    /// Adds `copies` sequences after the cache's own, each a copy of `one`'s single
    /// sequence (as many positions; or nothing where this cache is empty).
    pub fn append_copies(&mut self, one: &KvCache, copies: usize) {
        assert_eq!(one.len, self.len, "the copied sequence has the cache's positions");
        for (mine, theirs) in self.layers.iter_mut().zip(&one.layers) {
            if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
                let add = |a: Tensor<4>, b: &Tensor<4>| Tensor::cat(vec![a, b.clone().repeat_dim(0, copies)], 0);
                mine.keys = add(mine.keys.clone(), &theirs.keys);
                mine.values = add(mine.values.clone(), &theirs.values);
            }
        }
    }
}

impl Prior {
    /// A prior over `vocab` code ids and sequences of `length` codes.
    pub fn new(c: &PriorConfig, vocab: usize, length: usize, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        Self {
            token_embedding: EmbeddingConfig::new(vocab + 1, c.d_model).with_initializer(init.clone()).init(device),
            position_embedding: EmbeddingConfig::new(length + 1, c.d_model).with_initializer(init.clone()).init(device),
            blocks: (0..c.layers).map(|_| PriorBlock::new(c, device)).collect(),
            norm: LayerNormConfig::new(c.d_model).init(device),
            head: LinearConfig::new(c.d_model, vocab).with_bias(false).with_initializer(init).init(device),
            vocab,
        }
    }

    /// This prior deepened to `c.layers` blocks: blocks that start as the identity
    /// ([`PriorBlock::identity`]) are stacked on top of the trained ones, so the deeper prior
    /// computes exactly what this one did and training goes on from there with more
    /// capacity (`mxq train prior --init-from BUNDLE --layers L`). Nothing changes where `c`
    /// has no more layers than this prior; `c`'s width and heads must be this prior's.
    pub fn grown(mut self, c: &PriorConfig, device: &Device) -> Self {
        while self.blocks.len() < c.layers {
            self.blocks.push(PriorBlock::identity(c, device));
        }
        self
    }

    /// The prior of a config: over its codebook's entries, for its sequence length.
    pub fn for_config(config: &MxqConfig, device: &Device) -> Self {
        let s = &config.stage1;
        Self::new(&config.prior, s.codebook_entries(), s.sequence_length(), device)
    }

    /// The start token id.
    pub fn start(&self) -> usize {
        self.vocab
    }

    /// Runs `tokens` as positions `cache.len..cache.len + T`, appending to the cache.
    ///
    /// # Shapes
    /// - tokens: `[batch, T]` → logits `[batch, T, vocab]` for the *next* code at each position
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let t = tokens.dims()[1];
        let mut x = embed(&self.token_embedding, &self.position_embedding, tokens, cache.len); // [B, T, d]
        cache.layers.resize(self.blocks.len(), None);
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let out = block.forward(x, slot.take());
            x = out.x;
            *slot = Some(out.cache);
        }
        cache.len += t;
        self.head.forward(self.norm.forward(x))
    }

    /// Full-sequence pass (training).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_cached(tokens, &mut KvCache::default())
    }

    /// Next-code cross-entropy of code sequences `[batch, 72]` (the start token is prepended).
    pub fn loss(&self, sequences: Tensor<2, Int>) -> Tensor<1> {
        let [batch, n] = sequences.dims();
        let device = sequences.device();
        let start = Tensor::<2, Int>::full([batch, 1], self.start() as i64, &device);
        let inputs = Tensor::cat(vec![start, sequences.clone().slice([0..batch, 0..n - 1])], 1); // [B, 72]
        let logits = self.forward(inputs); // [B, 72, K]
        let ce = CrossEntropyLossConfig::new().init(&device);
        ce.forward(logits.reshape([batch * n, self.vocab]), sequences.reshape([batch * n]))
    }

    /// [`Self::loss`] where the sequences marked in `hidden` have their first `first_part`
    /// codes hidden (classifier-free guidance's unconditional rows): start tokens stand in
    /// for them as inputs and they are not predicted; where `given` (a conditional prior),
    /// no sequence's first part is predicted: it is given, and only the rest is learned. The
    /// loss is the mean over the codes that are predicted.
    ///
    /// # Shapes
    /// - sequences: `[batch, n]`, hidden: `batch` flags
    pub fn loss_hiding(&self, sequences: Tensor<2, Int>, hidden: &[bool], first_part: usize, given: bool) -> Tensor<1> {
        if !hidden.contains(&true) && !given {
            return self.loss(sequences);
        }
        let [batch, n] = sequences.dims();
        let device = sequences.device();
        let start = Tensor::<2, Int>::full([batch, 1], self.start() as i64, &device);
        let inputs = Tensor::cat(vec![start, sequences.clone().slice([0..batch, 0..n - 1])], 1); // [B, n]
        // input j holds code j - 1: hide inputs 1..=first_part, and the targets 0..first_part
        let flags = |range: std::ops::Range<usize>| -> Vec<bool> {
            hidden.iter().flat_map(|&h| (0..n).map(|j| h && range.contains(&j)).collect::<Vec<_>>()).collect()
        };
        let hide_inputs = Tensor::<2, Bool>::from_data(TensorData::new(flags(1..first_part + 1), [batch, n]), &device);
        let inputs = inputs.mask_fill(hide_inputs, self.start() as i64);
        let unpredicted = flags(0..first_part).into_iter().enumerate().map(|(i, h)| h || (given && i % n < first_part));
        let weights: Vec<f32> = unpredicted.map(|skip| if skip { 0.0 } else { 1.0 }).collect();
        let counted = weights.iter().sum::<f32>().max(1.0);
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [batch, n]), &device);
        let log_p = log_softmax(self.forward(inputs), 2); // [B, n, K]
        let picked = log_p.gather(2, sequences.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2); // [B, n]
        -(picked * weights).sum() / counted
    }
}

/// Token + position embeddings of `tokens` at positions `from..from + T` (the packed prior
/// embeds with the same modules).
///
/// # Shapes
/// - tokens: `[batch, T]` → `[batch, T, d_model]`
pub fn embed(token: &Embedding, position: &Embedding, tokens: Tensor<2, Int>, from: usize) -> Tensor<3> {
    let [batch, t] = tokens.dims();
    let positions =
        Tensor::<1, Int>::arange(from as i64..(from + t) as i64, &tokens.device()).reshape([1, t]).repeat_dim(0, batch);
    token.forward(tokens) + position.forward(positions)
}
