//! One typed configuration for both stages, with the `paper` and `demo` presets.
//! Saved as JSON inside checkpoints and bundles, so a model is always rebuilt from the
//! exact sizes it was trained with; unknown keys are rejected, never ignored.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Image side: the paper's 64×64, in every preset (the 8×8 code grid depends on it).
pub const IMAGE_SIZE: usize = 64;

/// Stage 1: encoders, cross quantizer, cross maps and decoders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Config {
    /// Channels of the three stride-2 convolutions (64 → 32 → 16 → 8).
    pub down_channels: [usize; 3],
    /// Width of the 3×3 conv and residual trunk at 8×8.
    pub hidden: usize,
    /// Residual blocks in the encoder's and the decoder's trunk.
    pub res_blocks: usize,
    /// Inner width of each residual block.
    pub res_hidden: usize,
    /// Tokens per caption (padded or truncated).
    pub token_length: usize,
    /// Caption vocabulary, specials included (set from the trained tokenizer).
    pub vocab_size: usize,
    /// Token embedding width.
    pub text_embed: usize,
    /// 1-D conv layers of the text encoder (and of the text decoder).
    pub text_layers: usize,
    /// Kernel of the length-preserving 1-D convs (odd).
    pub text_kernel: usize,
    /// Text codes per pair (8 in the paper): the encoder maps the tokens to this many.
    pub text_positions: usize,
    /// Transformer layers of the joint encoder over the 72 positions.
    pub joint_layers: usize,
    pub joint_heads: usize,
    pub joint_ff: usize,
    pub dropout: f64,
    /// Entries in the shared codebook.
    pub codebook_size: usize,
    /// Width of each code (and of the joint encoder).
    pub code_dim: usize,
    /// Weight of the commitment loss (β of VQ-VAE).
    pub commitment: f64,
    /// Hidden width of the text cross map (72 → this → 8).
    pub text_cross_hidden: usize,
    /// Share of 8×8 image patches zeroed during training.
    pub image_mask_ratio: f64,
    /// Share of caption tokens replaced by `[MASK]` during training.
    pub text_mask_ratio: f64,
    /// Side of a masked image patch.
    pub mask_patch: usize,
    /// Whether the joint Transformer encoder runs (off: an ablation of issue 4).
    #[serde(default = "yes")]
    pub joint: bool,
    /// The separate-quantizers baseline (issue 4), the DALL·E-style way to model pairs:
    /// image and text each get their own `codebook_size` codes (image codes first, text
    /// codes after them, so the prior's vocabulary doubles) and each decoder reads only its
    /// own modality's codes (no cross maps). Needs `joint: false`.
    #[serde(default)]
    pub separate_codebooks: bool,
}

fn yes() -> bool {
    true
}

/// Stage 2: the GPT-style prior over `[start, 72 codes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    pub dropout: f64,
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

impl Stage1Config {
    /// Side of the image code grid (8 for 64×64 and three halvings).
    pub fn grid(&self) -> usize {
        IMAGE_SIZE >> 3
    }
    /// Image codes per pair (64).
    pub fn image_positions(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Codes per pair: the unified sequence (72 in the paper).
    pub fn positions(&self) -> usize {
        self.image_positions() + self.text_positions
    }
    /// Rows of the codebook, which is also the prior's vocabulary: `codebook_size`, or
    /// twice that with separate codebooks.
    pub fn codes(&self) -> usize {
        if self.separate_codebooks { 2 * self.codebook_size } else { self.codebook_size }
    }
    /// Which positions draw from which codebook rows: one group (all positions, all codes)
    /// for the cross quantizer; image positions → first half and text positions → second
    /// half with separate codebooks.
    pub fn code_groups(&self) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let (n, k) = (self.image_positions(), self.codebook_size);
        if self.separate_codebooks {
            vec![(0..n, 0..k), (n..self.positions(), k..2 * k)]
        } else {
            vec![(0..self.positions(), 0..k)]
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
                down_channels: [64, 128, 256],
                hidden: 256,
                res_blocks: 6,
                res_hidden: 256,
                token_length: 64,
                vocab_size: 64,
                text_embed: 128,
                text_layers: 4,
                text_kernel: 5,
                text_positions: 8,
                joint_layers: 4,
                joint_heads: 2,
                joint_ff: 512,
                dropout: 0.1,
                codebook_size: 256,
                code_dim: 128,
                commitment: 0.25,
                text_cross_hidden: 32,
                image_mask_ratio: 0.3,
                text_mask_ratio: 0.3,
                mask_patch: 8,
                joint: true,
                separate_codebooks: false,
            },
            prior: PriorConfig { layers: 8, heads: 8, d_model: 512, dropout: 0.1 },
        }
    }

    /// Same 64×64 images, 8×8 + 8 code grid and 256-entry codebook as `paper`, with
    /// narrower convs, two residual blocks, two joint layers and a 4-layer prior of
    /// width 256, so that both stages train on two CPU cores in about an hour.
    pub fn demo() -> Self {
        let paper = Self::paper();
        Self {
            preset: "demo".into(),
            stage1: Stage1Config {
                down_channels: [32, 64, 128],
                hidden: 128,
                res_blocks: 2,
                res_hidden: 64,
                text_embed: 64,
                joint_layers: 2,
                joint_ff: 256,
                code_dim: 64,
                dropout: 0.0,
                ..paper.stage1
            },
            prior: PriorConfig { layers: 4, heads: 4, d_model: 256, dropout: 0.0 },
        }
    }

    /// A very small model for tests: same grid and sequence, everything narrow.
    pub fn tiny() -> Self {
        let demo = Self::demo();
        Self {
            preset: "tiny".into(),
            stage1: Stage1Config {
                down_channels: [8, 8, 16],
                hidden: 16,
                res_blocks: 1,
                res_hidden: 8,
                text_embed: 16,
                joint_layers: 1,
                joint_ff: 32,
                code_dim: 16,
                codebook_size: 32,
                text_cross_hidden: 16,
                ..demo.stage1
            },
            prior: PriorConfig { layers: 1, heads: 2, d_model: 32, dropout: 0.0 },
        }
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

    /// The paper's comparison (issue 4) as configs of the same code: `mxq` (unchanged),
    /// `no-masking` (mask ratios 0), `no-joint` (no joint Transformer encoder) and
    /// `separate` (an image VQ-VAE and a text VQ-VAE with their own codebooks, no joint
    /// encoder, no cross maps, no masking: the DALL·E-style baseline).
    pub fn variant(mut self, name: &str) -> Result<Self, Error> {
        let s = &mut self.stage1;
        match name {
            "mxq" => {}
            "no-masking" => (s.image_mask_ratio, s.text_mask_ratio) = (0.0, 0.0),
            "no-joint" => s.joint = false,
            "separate" => {
                (s.image_mask_ratio, s.text_mask_ratio) = (0.0, 0.0);
                s.joint = false;
                s.separate_codebooks = true;
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

    /// Parses and checks a config.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects sizes the model cannot be built with.
    pub fn check(&self) -> Result<(), Error> {
        let s = &self.stage1;
        let bad = |why: String| Err(Error::Config(why));
        if s.text_kernel.is_multiple_of(2) {
            return bad(format!("text convs need an odd kernel (got {})", s.text_kernel));
        }
        if s.text_positions == 0 || s.text_positions > s.token_length {
            return bad(format!("{} text positions for {} tokens", s.text_positions, s.token_length));
        }
        if s.text_cross_hidden < 2 * s.text_positions {
            return bad(format!(
                "text cross map hidden width {} is under twice the {} text positions (its identity start needs both signs)",
                s.text_cross_hidden, s.text_positions
            ));
        }
        if !s.code_dim.is_multiple_of(s.joint_heads) || !self.prior.d_model.is_multiple_of(self.prior.heads) {
            return bad("widths must be multiples of their head counts".into());
        }
        if s.vocab_size < 4 || s.codebook_size < 2 {
            return bad(format!("vocab {} / codebook {} too small", s.vocab_size, s.codebook_size));
        }
        if !(0.0..1.0).contains(&s.image_mask_ratio) || !(0.0..1.0).contains(&s.text_mask_ratio) {
            return bad("mask ratios must be in [0, 1)".into());
        }
        if s.separate_codebooks && s.joint {
            return bad("separate codebooks code each modality on its own: set joint to false".into());
        }
        if s.mask_patch == 0 || !IMAGE_SIZE.is_multiple_of(s.mask_patch) {
            return bad(format!("mask patch {} must divide {IMAGE_SIZE}", s.mask_patch));
        }
        Ok(())
    }
}
