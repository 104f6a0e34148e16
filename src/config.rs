//! One typed configuration for both stages, with the `paper` and `demo` presets: one
//! sub-config per module, an enum for the quantizer variant of the paper's comparison.
//! Saved as JSON inside checkpoints and bundles, so a model is always rebuilt from the
//! exact sizes it was trained with; unknown keys are rejected, never ignored. Configs of the
//! earlier flat layout (bundle format 2, older checkpoints) are read through
//! [`legacy::Stage1Config`] and converted.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Image side: the paper's 64×64, in every preset (the 8×8 code grid depends on it).
pub const IMAGE_SIZE: usize = 64;
/// Side of the image code grid: three halvings of [`IMAGE_SIZE`] (8).
pub const GRID: usize = IMAGE_SIZE >> 3;
/// The longest caption, in tokens, any config or tokenizer may ask for.
pub const MAX_TOKEN_LENGTH: usize = 1024;

/// The image encoder and decoder (mirrors of each other).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Channels of the three stride-2 convolutions (64 → 32 → 16 → 8).
    pub down_channels: [usize; 3],
    /// Width of the 3×3 conv and residual trunk at 8×8.
    pub hidden: usize,
    /// Residual blocks in the encoder's and the decoder's trunk.
    pub res_blocks: usize,
    /// Inner width of each residual block.
    pub res_hidden: usize,
}

/// The text encoder and decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Tokens per caption (padded or truncated).
    pub token_length: usize,
    /// Caption vocabulary, specials included (set from the trained tokenizer).
    pub vocab_size: usize,
    /// Token embedding width.
    pub embed: usize,
    /// 1-D conv layers of the text encoder (and of the text decoder).
    pub layers: usize,
    /// Kernel of the length-preserving 1-D convs (odd).
    pub kernel: usize,
    /// Text positions of the unified sequence (8 in the paper): the encoder maps the tokens to this many.
    pub positions: usize,
    /// Rank of the text decoder's map from its latents to the token positions: none, one
    /// dense matrix (the paper's); `r`, two factors through `r` values — a decoder-only
    /// choice (`mxq train decoders --text-map-rank`) that leaves the codes as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_rank: Option<usize>,
}

/// The codebook and its losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodebookConfig {
    /// Entries of a codebook (each modality has its own with [`Quantizer::Separate`]).
    pub size: usize,
    /// Width of each entry (and of the joint encoder).
    pub dim: usize,
    /// Weight of the commitment loss (β of VQ-VAE).
    pub commitment: f64,
}

/// The joint Transformer encoder over the 72 positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointConfig {
    pub layers: usize,
    pub heads: usize,
    /// Width of the feed-forward layers.
    pub ff: usize,
    pub dropout: f64,
}

/// The cross maps over the sequence axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossMapsConfig {
    /// Hidden width of the text cross map (72 → this → 8).
    pub text_hidden: usize,
}

/// How the two modalities meet in the code space: the model of the paper, or the baseline
/// it is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Quantizer {
    /// MXQ-VAE's cross quantizer: one shared codebook quantizes all 72 positions and each
    /// decoder reads every code through the cross maps. The joint encoder mixes the
    /// modalities before quantization; `None` is the "no joint encoder" ablation.
    Cross { joint: Option<JointConfig>, cross_maps: CrossMapsConfig },
    /// The separate-quantizers baseline, the DALL·E-style way to model pairs: image and
    /// text each get their own codebook of `codebook.size` entries (image entries first, so
    /// the prior's vocabulary doubles), no joint encoder, and each decoder reads only its own
    /// modality's codes (no cross maps).
    Separate,
}

/// Input masking during training (paper §3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Share of image patches zeroed.
    pub image_ratio: f64,
    /// Share of caption tokens replaced by `[MASK]`.
    pub text_ratio: f64,
    /// Side of a masked image patch.
    pub patch: usize,
    /// Share of pairs with one modality masked whole instead (half of them the image, half
    /// the caption), the other left intact: stage 1 then learns to encode either modality
    /// alone, which captioning an image and drawing a caption need. 0 (the paper) is
    /// absent from saved configs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub whole: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Stage 1: encoders, quantizer, cross maps and decoders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Config {
    pub image: ImageConfig,
    pub text: TextConfig,
    pub codebook: CodebookConfig,
    pub quantizer: Quantizer,
    pub masking: MaskingConfig,
}

/// The order in which the prior reads and writes a pair's codes. Stage 1's unified
/// sequence is always image codes (row-major 8×8), then text codes; the prior may model
/// it with the caption first, so that a pair's caption is drawn before its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequenceOrder {
    /// The unified sequence as it is: image, then text (the paper's order).
    #[default]
    ImageFirst,
    /// Text codes first, then the image codes.
    TextFirst,
}

/// `Display` and `FromStr` for an enum of unit variants by their serde names (the CLI's
/// option values, the names in saved configs), with `$names` listed when parsing fails.
macro_rules! serde_names {
    ($t:ty, $what:literal, $names:literal) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let name = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
                f.write_str(name.as_str().unwrap_or_default())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                serde_json::from_value(serde_json::Value::String(s.into()))
                    .map_err(|_| format!("'{s}' is not {} ({})", $what, $names))
            }
        }
    };
}
pub(crate) use serde_names;

serde_names!(SequenceOrder, "an order", "image-first, text-first");

/// Stage 2: the GPT-style prior over `[start, 72 codes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    pub dropout: f64,
    /// Absent in configs written before it existed: image first.
    #[serde(default)]
    pub order: SequenceOrder,
    /// The share of training sequences whose first part (what the order draws first: the
    /// caption's codes for text-first) the prior is not shown — start tokens stand in for it
    /// and it is not predicted — so the prior also learns the second part alone, which guided
    /// sampling (`SampleOptions::guidance`) contrasts with: classifier-free guidance (Ho &
    /// Salimans 2022). Absent (0) in configs written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unconditional: f64,
    /// A conditional prior: trained to draw only the second part given the first, the
    /// first encoded alone (the other half masked) as the conditional modes encode what they
    /// are given — an image-first one captions images, a text-first one draws images for
    /// captions. It never learned the first part, so it does not draw whole pairs. Absent
    /// (false) in configs written before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub conditional: bool,
}

/// Everything a model's shape depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxqConfig {
    /// Preset this config started from (informational).
    pub preset: String,
    pub stage1: Stage1Config,
    pub prior: PriorConfig,
}

/// Which positions of the unified sequence draw from which rows of the codebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGroup {
    pub positions: Range<usize>,
    pub entries: Range<usize>,
}

impl Stage1Config {
    /// Whether `other` is this stage 1 up to the text decoder's map rank, which only the
    /// decoders read: the same codes, so a prior, an encoder file or decoders of one fit the
    /// other.
    pub fn same_codes(&self, other: &Self) -> bool {
        let dense = |c: &Self| TextConfig { map_rank: None, ..c.text.clone() };
        Self { text: dense(self), ..self.clone() } == Self { text: dense(other), ..other.clone() }
    }

    /// Side of the image code grid (8 for 64×64 and three halvings).
    pub fn grid(&self) -> usize {
        GRID
    }
    /// Image positions of the unified sequence (64).
    pub fn image_positions(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Text positions of the unified sequence (8).
    pub fn text_positions(&self) -> usize {
        self.text.positions
    }
    /// Codes per pair: the length of the unified sequence (72 in the paper).
    pub fn sequence_length(&self) -> usize {
        self.image_positions() + self.text_positions()
    }
    /// Rows of the codebook tensor, which is also the prior's vocabulary: `codebook.size`,
    /// or twice that with separate codebooks.
    pub fn codebook_entries(&self) -> usize {
        match self.quantizer {
            Quantizer::Cross { .. } => self.codebook.size,
            Quantizer::Separate => 2 * self.codebook.size,
        }
    }
    /// The joint encoder, where the variant has one.
    pub fn joint(&self) -> Option<&JointConfig> {
        match &self.quantizer {
            Quantizer::Cross { joint, .. } => joint.as_ref(),
            Quantizer::Separate => None,
        }
    }
    /// The cross maps, where the variant has them.
    pub fn cross_maps(&self) -> Option<&CrossMapsConfig> {
        match &self.quantizer {
            Quantizer::Cross { cross_maps, .. } => Some(cross_maps),
            Quantizer::Separate => None,
        }
    }
    /// One group (all positions, all entries) for the cross quantizer; image positions →
    /// first half and text positions → second half with separate codebooks.
    pub fn code_groups(&self) -> Vec<CodeGroup> {
        let (n, k) = (self.image_positions(), self.codebook.size);
        match self.quantizer {
            Quantizer::Cross { .. } => vec![CodeGroup { positions: 0..self.sequence_length(), entries: 0..k }],
            Quantizer::Separate => vec![
                CodeGroup { positions: 0..n, entries: 0..k },
                CodeGroup { positions: n..self.sequence_length(), entries: k..2 * k },
            ],
        }
    }
}

impl MxqConfig {
    /// The authors' sizes (MXQ-VAE, BMVC 2022): 64×64, codebook 256 × 128, six residual
    /// blocks of 256, four joint layers, prior 8 layers / 8 heads / width 512.
    pub fn paper() -> Self {
        Self {
            preset: "paper".into(),
            stage1: Stage1Config {
                image: ImageConfig { down_channels: [64, 128, 256], hidden: 256, res_blocks: 6, res_hidden: 256 },
                text: TextConfig {
                    token_length: 64,
                    vocab_size: 64,
                    embed: 128,
                    layers: 4,
                    kernel: 5,
                    positions: 8,
                    map_rank: None,
                },
                codebook: CodebookConfig { size: 256, dim: 128, commitment: 0.25 },
                quantizer: Quantizer::Cross {
                    joint: Some(JointConfig { layers: 4, heads: 2, ff: 512, dropout: 0.1 }),
                    cross_maps: CrossMapsConfig { text_hidden: 32 },
                },
                masking: MaskingConfig { image_ratio: 0.3, text_ratio: 0.3, patch: 8, whole: 0.0 },
            },
            prior: PriorConfig {
                layers: 8,
                heads: 8,
                d_model: 512,
                dropout: 0.1,
                order: SequenceOrder::ImageFirst,
                unconditional: 0.0,
                conditional: false,
            },
        }
    }

    /// Same 64×64 images, 8×8 + 8 code grid and 256-entry codebook as `paper`, with
    /// narrower convs, two residual blocks, two joint layers and a 4-layer prior of
    /// width 256, so that both stages train on two CPU cores in about an hour.
    pub fn demo() -> Self {
        let paper = Self::paper().stage1;
        Self {
            preset: "demo".into(),
            stage1: Stage1Config {
                image: ImageConfig { down_channels: [32, 64, 128], hidden: 128, res_blocks: 2, res_hidden: 64 },
                text: TextConfig { embed: 64, ..paper.text },
                codebook: CodebookConfig { dim: 64, ..paper.codebook },
                quantizer: Quantizer::Cross {
                    joint: Some(JointConfig { layers: 2, heads: 2, ff: 256, dropout: 0.0 }),
                    cross_maps: CrossMapsConfig { text_hidden: 32 },
                },
                ..paper
            },
            prior: PriorConfig {
                layers: 4,
                heads: 4,
                d_model: 256,
                dropout: 0.0,
                order: SequenceOrder::ImageFirst,
                unconditional: 0.0,
                conditional: false,
            },
        }
    }

    /// A very small model for tests: same grid and sequence, everything narrow.
    pub fn tiny() -> Self {
        let demo = Self::demo().stage1;
        Self {
            preset: "tiny".into(),
            stage1: Stage1Config {
                image: ImageConfig { down_channels: [8, 8, 16], hidden: 16, res_blocks: 1, res_hidden: 8 },
                text: TextConfig { embed: 16, ..demo.text },
                codebook: CodebookConfig { size: 32, dim: 16, ..demo.codebook },
                quantizer: Quantizer::Cross {
                    joint: Some(JointConfig { layers: 1, heads: 2, ff: 32, dropout: 0.0 }),
                    cross_maps: CrossMapsConfig { text_hidden: 16 },
                },
                ..demo
            },
            prior: PriorConfig {
                layers: 1,
                heads: 2,
                d_model: 32,
                dropout: 0.0,
                order: SequenceOrder::ImageFirst,
                unconditional: 0.0,
                conditional: false,
            },
        }
    }

    /// The unified-sequence position (stage 1's order) of each of the prior's positions.
    pub fn prior_positions(&self) -> Vec<usize> {
        let (image, all) = (self.stage1.image_positions(), self.stage1.sequence_length());
        match self.prior.order {
            SequenceOrder::ImageFirst => (0..all).collect(),
            SequenceOrder::TextFirst => (image..all).chain(0..image).collect(),
        }
    }

    /// Codes of the part the prior's order draws first (the caption's for text-first): what
    /// a prior trained with `prior.unconditional` learns to do without.
    pub fn first_part(&self) -> usize {
        match self.prior.order {
            SequenceOrder::ImageFirst => self.stage1.image_positions(),
            SequenceOrder::TextFirst => self.stage1.text_positions(),
        }
    }

    /// A pair's codes in the prior's order, from stage 1's.
    pub fn to_prior_order(&self, unified: &[u32]) -> Vec<u32> {
        self.prior_positions().into_iter().map(|p| unified[p]).collect()
    }

    /// A pair's codes in stage 1's order, from the prior's; positions not drawn yet
    /// (`prior.len()` below the sequence length) are `None`.
    pub fn to_unified_order(&self, prior: &[u32]) -> Vec<Option<u32>> {
        let mut unified = vec![None; self.stage1.sequence_length()];
        for (&p, &code) in self.prior_positions().iter().zip(prior) {
            unified[p] = Some(code);
        }
        unified
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Self, Error> {
        match name {
            "paper" => Ok(Self::paper()),
            "demo" => Ok(Self::demo()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(Error::Config(format!("unknown preset '{name}' (paper, demo, tiny)"))),
        }
    }

    /// The paper's comparison as configs of the same code: `mxq` (unchanged), `no-masking`
    /// (mask ratios 0), `no-joint` (no joint Transformer encoder) and `separate` (an image
    /// VQ-VAE and a text VQ-VAE with their own codebooks, no joint encoder, no cross maps,
    /// no masking: the DALL·E-style baseline).
    pub fn variant(mut self, name: &str) -> Result<Self, Error> {
        let s = &mut self.stage1;
        match name {
            "mxq" => {}
            "no-masking" => (s.masking.image_ratio, s.masking.text_ratio) = (0.0, 0.0),
            "no-joint" => match &mut s.quantizer {
                Quantizer::Cross { joint, .. } => *joint = None,
                Quantizer::Separate => {}
            },
            "separate" => {
                (s.masking.image_ratio, s.masking.text_ratio) = (0.0, 0.0);
                s.quantizer = Quantizer::Separate;
            }
            _ => {
                return Err(Error::Config(format!("unknown variant '{name}' ({})", Self::VARIANTS.join(", "))));
            }
        }
        Ok(self)
    }

    /// The names [`MxqConfig::variant`] accepts, in the results table's order.
    pub const VARIANTS: [&'static str; 4] = ["mxq", "no-masking", "no-joint", "separate"];

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }

    /// Parses and checks a config, of this layout or of the earlier flat one.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let bad = |e: serde_json::Error| Error::Config(e.to_string());
        let value: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
        let cfg: Self = if legacy::is_flat(&value) {
            serde_json::from_value::<legacy::MxqConfig>(value).map_err(bad)?.into()
        } else {
            serde_json::from_value(value).map_err(bad)?
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects sizes the model cannot be built with.
    pub fn check(&self) -> Result<(), Error> {
        let s = &self.stage1;
        let bad = |why: String| Err(Error::Config(why));
        self.check_bounds()?;
        if s.text.kernel.is_multiple_of(2) {
            return bad(format!("text convs need an odd kernel (got {})", s.text.kernel));
        }
        if s.text.positions == 0 || s.text.positions > s.text.token_length {
            return bad(format!("{} text positions for {} tokens", s.text.positions, s.text.token_length));
        }
        let (map_in, map_out) = (s.text.positions * s.codebook.dim, s.text.token_length * s.text.embed);
        if let Some(rank) = s.text.map_rank
            && !(1..=map_in.min(map_out)).contains(&rank)
        {
            return bad(format!(
                "stage1.text.map_rank is {rank}; a map of {map_in} → {map_out} values takes a rank from 1 to {}",
                map_in.min(map_out)
            ));
        }
        if let Some(maps) = s.cross_maps()
            && maps.text_hidden < 2 * s.text.positions
        {
            return bad(format!(
                "text cross map hidden width {} is under twice the {} text positions (its identity start needs both signs)",
                maps.text_hidden, s.text.positions
            ));
        }
        let joint_heads = s.joint().map_or(1, |j| j.heads);
        if !s.codebook.dim.is_multiple_of(joint_heads) || !self.prior.d_model.is_multiple_of(self.prior.heads) {
            return bad("widths must be multiples of their head counts".into());
        }
        if !(0.0..1.0).contains(&s.masking.image_ratio) || !(0.0..1.0).contains(&s.masking.text_ratio) {
            return bad("mask ratios must be in [0, 1)".into());
        }
        if !(0.0..=1.0).contains(&s.masking.whole) {
            return bad(format!("masking.whole is a share of pairs, in [0, 1] (got {})", s.masking.whole));
        }
        if !IMAGE_SIZE.is_multiple_of(s.masking.patch) {
            return bad(format!("mask patch {} must divide {IMAGE_SIZE}", s.masking.patch));
        }
        Ok(())
    }

    /// Bounds every size before anything is built from it, so a hostile config (a bundle's,
    /// a checkpoint's) is refused by name instead of exhausting memory: each bound is well
    /// above the paper's sizes, and no bounded model's eagerly built tensors pass ~150 MB.
    fn check_bounds(&self) -> Result<(), Error> {
        let (s, p) = (&self.stage1, &self.prior);
        let mut sizes: Vec<(&str, usize, usize, usize)> = vec![
            ("stage1.image.hidden", s.image.hidden, 1, 1024),
            ("stage1.image.res_blocks", s.image.res_blocks, 0, 32),
            ("stage1.image.res_hidden", s.image.res_hidden, 1, 1024),
            ("stage1.text.token_length", s.text.token_length, 1, MAX_TOKEN_LENGTH),
            ("stage1.text.vocab_size", s.text.vocab_size, 4, 65536),
            ("stage1.text.embed", s.text.embed, 1, 1024),
            ("stage1.text.layers", s.text.layers, 0, 32),
            ("stage1.text.kernel", s.text.kernel, 1, 31),
            ("stage1.codebook.size", s.codebook.size, 2, 65536),
            ("stage1.codebook.dim", s.codebook.dim, 1, 512),
            ("stage1.masking.patch", s.masking.patch, 1, IMAGE_SIZE),
            ("prior.layers", p.layers, 1, 48),
            ("prior.heads", p.heads, 1, 64),
            ("prior.d_model", p.d_model, 1, 4096),
        ];
        sizes.extend(s.image.down_channels.iter().map(|&c| ("stage1.image.down_channels", c, 1, 1024)));
        if let Some(j) = s.joint() {
            sizes.extend([
                ("joint.layers", j.layers, 0, 32),
                ("joint.heads", j.heads, 1, 64),
                ("joint.ff", j.ff, 1, 8192),
            ]);
        }
        if let Some(m) = s.cross_maps() {
            sizes.push(("cross_maps.text_hidden", m.text_hidden, 1, 4096));
        }
        for (name, value, lo, hi) in sizes {
            if !(lo..=hi).contains(&value) {
                return Err(Error::Config(format!("{name} is {value}; it must be between {lo} and {hi}")));
            }
        }
        let ratios = [
            ("stage1.codebook.commitment", s.codebook.commitment, 0.0, 100.0),
            ("prior.dropout", p.dropout, 0.0, 0.999),
            ("prior.unconditional", p.unconditional, 0.0, 1.0),
        ];
        let joint_dropout = s.joint().map(|j| ("joint.dropout", j.dropout, 0.0, 0.999));
        for (name, value, lo, hi) in ratios.into_iter().chain(joint_dropout) {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return Err(Error::Config(format!("{name} is {value}; it must be between {lo} and {hi}")));
            }
        }
        Ok(())
    }
}

/// The flat config layout of bundle format 2 and the checkpoints written with it, read
/// and converted (never written).
pub mod legacy {
    use serde::Deserialize;

    /// Whether a config's JSON is the flat layout (`stage1.down_channels` at the top).
    pub fn is_flat(value: &serde_json::Value) -> bool {
        value.get("stage1").and_then(|s| s.get("down_channels")).is_some()
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct MxqConfig {
        pub preset: String,
        pub stage1: Stage1Config,
        pub prior: super::PriorConfig,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stage1Config {
        pub down_channels: [usize; 3],
        pub hidden: usize,
        pub res_blocks: usize,
        pub res_hidden: usize,
        pub token_length: usize,
        pub vocab_size: usize,
        pub text_embed: usize,
        pub text_layers: usize,
        pub text_kernel: usize,
        pub text_positions: usize,
        pub joint_layers: usize,
        pub joint_heads: usize,
        pub joint_ff: usize,
        pub dropout: f64,
        pub codebook_size: usize,
        pub code_dim: usize,
        pub commitment: f64,
        pub text_cross_hidden: usize,
        pub image_mask_ratio: f64,
        pub text_mask_ratio: f64,
        pub mask_patch: usize,
        #[serde(default = "yes")]
        pub joint: bool,
        #[serde(default)]
        pub separate_codebooks: bool,
    }

    fn yes() -> bool {
        true
    }

    impl From<MxqConfig> for super::MxqConfig {
        fn from(c: MxqConfig) -> Self {
            use super::*;
            let s = c.stage1;
            let quantizer = if s.separate_codebooks {
                Quantizer::Separate
            } else {
                Quantizer::Cross {
                    joint: s.joint.then_some(JointConfig {
                        layers: s.joint_layers,
                        heads: s.joint_heads,
                        ff: s.joint_ff,
                        dropout: s.dropout,
                    }),
                    cross_maps: CrossMapsConfig { text_hidden: s.text_cross_hidden },
                }
            };
            Self {
                preset: c.preset,
                stage1: Stage1Config {
                    image: ImageConfig {
                        down_channels: s.down_channels,
                        hidden: s.hidden,
                        res_blocks: s.res_blocks,
                        res_hidden: s.res_hidden,
                    },
                    text: TextConfig {
                        token_length: s.token_length,
                        vocab_size: s.vocab_size,
                        embed: s.text_embed,
                        layers: s.text_layers,
                        kernel: s.text_kernel,
                        positions: s.text_positions,
                        map_rank: None,
                    },
                    codebook: CodebookConfig { size: s.codebook_size, dim: s.code_dim, commitment: s.commitment },
                    quantizer,
                    masking: MaskingConfig {
                        image_ratio: s.image_mask_ratio,
                        text_ratio: s.text_mask_ratio,
                        patch: s.mask_patch,
                        whole: 0.0,
                    },
                },
                prior: c.prior,
            }
        }
    }
}
