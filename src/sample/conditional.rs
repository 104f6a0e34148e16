//! Drawing a caption, captioning an image: one half of a pair given, the other drawn, from
//! the same stage 1 that makes unconditional pairs.
//! `caption → text codes → the prior draws the image codes → decode`, and the mirror
//! `image → image codes → an image-first prior draws the text codes → decode`.
//!
//! Stage 1 encodes the caption with the image masked entirely — the input that
//! whole-modality masking (`masking.whole`) trains it on; a caption's text codes are then
//! almost those of its whole pair (95.5% of them for the demo stage 1, `mxq eval --run`). A
//! caption-first prior takes them as the first codes of its sequence, as if it had drawn
//! them itself, and draws the image codes after them.

use burn::prelude::*;

use crate::Error;
use crate::bundle::{Bundle, EncoderFile};
use crate::config::{IMAGE_SIZE, MxqConfig, SequenceOrder};
use crate::data::batch::PairSet;
use crate::data::masking::Half;
use crate::data::pairs::Pair;
use crate::model::mxq_vae::MxqCoder;
use crate::sample::generate::GeneratedPair;

/// The encode half a bundle's conditional modes need: the stage 1 of an encoder file
/// (`mxq export --encoder`) or a stage-1 file (`--stage1`) whose decoders are the bundle's
/// (checked by [`Bundle::check_encoder`] before each use). One encoder serves every bundle of
/// its stage 1 (the demo bundle and the captioner).
pub struct Encoder {
    coder: MxqCoder,
    config: MxqConfig,
    tokenizer_json: String,
    codebook: Vec<f32>,
}

impl Encoder {
    pub fn new(file: EncoderFile) -> Self {
        let tokenizer_json = file.tokenizer.to_json();
        Encoder { coder: file.coder, config: file.config, tokenizer_json, codebook: file.codebook }
    }
}

/// How captions are drawn unless told otherwise (`mxq caption`, `mxq eval --captioner`, the
/// page's "caption this"): [`CAPTION_CANDIDATES`] captions at [`CAPTION_TEMPERATURE`] from a
/// fixed seed, the one the caption-first prior finds most likely with the image kept
/// ([`crate::sample::rerank`]) — so an image gets the same caption every time. Chosen on 1,000
/// test images (docs/consistency.md, "Best of K"): 45.8% / 44.6% of captions right (two seeds) against
/// 40.0% greedily; temperatures 0.3 and 0.7 within a point of it, 16 candidates no better.
pub const CAPTION_CANDIDATES: usize = 8;
pub const CAPTION_TEMPERATURE: f32 = 0.5;

impl Bundle {
    /// Refuses to draw whole pairs (nothing `given`) from a conditional prior
    /// (`prior.conditional`): it never learned the first part of a sequence.
    pub fn check_given(&self, given: &Given) -> Result<(), Error> {
        let p = &self.config.prior;
        if p.conditional && given.prefix.is_empty() {
            let (needs, draws) = match p.order {
                SequenceOrder::ImageFirst => ("an image to caption (mxq caption)", "captions"),
                SequenceOrder::TextFirst => ("a caption to draw (mxq generate --caption)", "images"),
            };
            return Err(Error::Options(format!(
                "this bundle's prior is conditional (mxq train prior --conditional): it draws {draws} for what it \
                 is given and cannot draw whole pairs; give it {needs}"
            )));
        }
        Ok(())
    }

    /// An encoder (or stage-1) file as this bundle's encoder, refused where its stage 1 is not
    /// the bundle's.
    pub fn encoder(&self, file: EncoderFile) -> Result<Encoder, Error> {
        let encoder = Encoder::new(file);
        self.check_encoder(&encoder)?;
        Ok(encoder)
    }

    /// Refuses an encoder whose stage 1 is not this bundle's (another config, tokenizer or
    /// codebook): its codes would mean nothing to this prior and these decoders. Compared on
    /// the host, from the files: no read-back from the bundle's device.
    pub fn check_encoder(&self, encoder: &Encoder) -> Result<(), Error> {
        self.check_stage1(&encoder.config.stage1, &encoder.tokenizer_json, &encoder.codebook).map_err(|differs| {
            Error::Bundle(format!(
                "the encoder (or stage-1) file is not this bundle's stage 1 ({differs} differs): export both from one run"
            ))
        })
    }

    /// What to draw images for `caption` from: its text codes, encoded with the image masked
    /// entirely, and the caption itself for every pair. A caption the tokenizer cannot take
    /// whole (empty, unknown characters, too long) is refused, as is an image-first prior,
    /// which draws the image before it could read a caption.
    pub fn given_caption(&self, encoder: &Encoder, caption: &str, device: &Device) -> Result<Given, Error> {
        if self.config.prior.order != SequenceOrder::TextFirst {
            return Err(Error::Options(
                "this bundle's prior draws the image codes first, so it cannot start from a caption: drawing a caption \
                 needs a caption-first prior (mxq train prior --order text-first)"
                    .into(),
            ));
        }
        self.check_encoder(encoder)?;
        self.tokenizer.encode_given(caption)?;
        let blank = Pair { image: vec![0; 3 * IMAGE_SIZE * IMAGE_SIZE], caption: caption.to_string() };
        let pairs = PairSet::new(&[blank], &self.tokenizer);
        let codes = crate::on_cpu_pool(|| encoder.coder.encode(pairs.batch_without(&[0], Half::Image, device)));
        let codes: Vec<u32> = codes.into_data().iter::<i64>().map(|c| c as u32).collect();
        let text = self.config.stage1.text_positions();
        Ok(Given {
            prefix: self.config.to_prior_order(&codes)[..text].to_vec(),
            caption: Some(caption.to_string()),
            image: None,
        })
    }

    /// What to caption `image` (RGB bytes, `IMAGE_SIZE`² × 3, as [`crate::data::pairs::load_image`]
    /// gives) from: its image codes, encoded with the caption masked entirely, and the image
    /// itself for every pair. Needs an image-first prior (a captioner bundle: `mxq train prior
    /// --order image-first` on the same stage 1): a caption-first one draws the caption before
    /// it could look at the image.
    pub fn given_image(&self, encoder: &Encoder, image: &[u8], device: &Device) -> Result<Given, Error> {
        if self.config.prior.order != SequenceOrder::ImageFirst {
            return Err(Error::Options(
                "this bundle's prior draws the caption codes first, so it cannot start from an image: captioning \
                 needs an image-first prior (mxq train prior --order image-first; the shipped one is \
                 assets/captioner.mxq.safetensors)"
                    .into(),
            ));
        }
        self.check_encoder(encoder)?;
        let want = 3 * IMAGE_SIZE * IMAGE_SIZE;
        if image.len() != want {
            return Err(Error::Options(format!(
                "an image to caption has {want} bytes ({IMAGE_SIZE}×{IMAGE_SIZE} RGB), not {}",
                image.len()
            )));
        }
        let pair = Pair { image: image.to_vec(), caption: String::new() };
        let pairs = PairSet::new(&[pair], &self.tokenizer);
        let codes = crate::on_cpu_pool(|| encoder.coder.encode(pairs.batch_without(&[0], Half::Caption, device)));
        let codes: Vec<u32> = codes.into_data().iter::<i64>().map(|c| c as u32).collect();
        let image_codes = self.config.stage1.sequence_length() - self.config.stage1.text_positions();
        Ok(Given {
            prefix: self.config.to_prior_order(&codes)[..image_codes].to_vec(),
            caption: None,
            image: Some(image.to_vec()),
        })
    }
}

/// What every pair of a generation starts from: nothing (whole pairs, the default), a
/// caption ([`Bundle::given_caption`]) or an image ([`Bundle::given_image`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    /// The first codes of every sequence, in the prior's order.
    pub prefix: Vec<u32>,
    /// The caption every pair carries instead of the one its codes decode to.
    pub caption: Option<String>,
    /// The image every pair carries instead of the one its codes decode to.
    pub image: Option<Vec<u8>>,
}

impl Given {
    /// Puts the given half in place of the decoded one in each pair.
    pub fn apply(&self, pairs: &mut [GeneratedPair]) {
        for pair in pairs {
            if let Some(caption) = &self.caption {
                pair.caption = caption.clone();
            }
            if let Some(image) = &self.image {
                pair.image = image.clone();
            }
        }
    }
}
