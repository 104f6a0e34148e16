//! Stage-1 reconstruction figures: `pair → codes → pair` with a trained stage 1
//! on held-out pairs — image MSE and PSNR on [0, 1], token accuracy, exact and valid
//! captions, and codebook usage over the pairs' codes.

use burn::prelude::*;

use crate::data::batch::{PairSet, to_rgb};
use crate::data::grammar::parse_caption;
use crate::data::masking::Half;
use crate::data::pairs::Pair;
use crate::data::tokenizer::CaptionTokenizer;
use crate::model::codebook_upkeep::CodebookUsage;
use crate::model::mxq_vae::MxqVae;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Reconstruction {
    pub pairs: usize,
    pub image_mse: f64,
    pub psnr_db: f64,
    pub token_accuracy_pct: f64,
    pub exact_captions_pct: f64,
    pub valid_captions_pct: f64,
    pub perplexity: f64,
    pub live_codes: usize,
    /// The sum over text positions of each position's code entropy, in bits: at most what
    /// the text codes can tell about a caption (a four-unit Caption MNIST caption holds ~35).
    pub text_code_bits: f64,
    /// (caption, reconstructed caption) of the first four pairs.
    pub examples: Vec<(String, String)>,
    /// The reconstructed images (RGB bytes), in order.
    #[serde(skip)]
    pub images: Vec<Vec<u8>>,
    /// The reconstructed captions, in order.
    #[serde(skip)]
    pub captions: Vec<String>,
    /// Every pair's codes, in stage 1's order, back to back.
    #[serde(skip)]
    pub codes: Vec<i64>,
}

/// Encodes and decodes `pairs` (in batches of 50) and scores the result against them;
/// with `without`, that half of every pair is masked entirely before encoding, so the
/// result shows what stage 1 makes of the other half alone.
pub fn reconstruct(
    vae: &MxqVae,
    tokenizer: &CaptionTokenizer,
    pairs: &[Pair],
    without: Option<Half>,
    device: &Device,
) -> Reconstruction {
    let data = PairSet::new(pairs, tokenizer);
    let (mut squared, mut pixels, mut tokens_right, mut tokens, mut exact, mut valid) = (0f64, 0usize, 0, 0, 0, 0);
    let entries = vae.decoder.quantizer.codebook.dims()[0];
    let mut counts = vec![0u64; entries];
    // per text position, how often each code
    let mut text_counts: Vec<Vec<u64>> = Vec::new();
    let (mut examples, mut images, mut captions, mut all_codes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ids: Vec<usize> = (0..data.len()).collect();
    for chunk in ids.chunks(50) {
        let batch = match without {
            None => data.batch(chunk, None, device),
            Some(half) => data.batch_without(chunk, half, device),
        };
        let codes = vae.encode(batch);
        let [_, length] = codes.dims();
        // the image's grid comes first
        let text_from = crate::config::GRID * crate::config::GRID;
        text_counts.resize(length.saturating_sub(text_from), vec![0; entries]);
        let flat = codes.clone().into_data().try_into_vec_as::<i64>().expect("int codes");
        all_codes.extend_from_slice(&flat);
        for (i, &c) in flat.iter().enumerate() {
            counts[c as usize] += 1;
            if i % length >= text_from {
                text_counts[i % length - text_from][c as usize] += 1;
            }
        }
        let out = vae.decoder.decode(codes);
        let rgb = to_rgb(&out.image.into_data().try_into_vec_as::<f32>().expect("f32 image"));
        let predicted = out.logits.argmax(2).into_data().try_into_vec_as::<i64>().expect("int tokens");
        for (k, (&i, rgb)) in chunk.iter().zip(rgb).enumerate() {
            for (a, b) in rgb.iter().zip(&pairs[i].image) {
                squared += ((*a as f64 - *b as f64) / 255.0).powi(2);
                pixels += 1;
            }
            images.push(rgb);
            let want = data.tokens_of(i);
            let got: Vec<u32> = predicted[k * data.length..(k + 1) * data.length].iter().map(|&t| t as u32).collect();
            tokens_right += want.iter().zip(&got).filter(|(a, b)| a == b).count();
            tokens += want.len();
            let caption = tokenizer.decode(&got);
            exact += usize::from(caption == pairs[i].caption);
            valid += usize::from(parse_caption(&caption).is_ok());
            if examples.len() < 4 {
                examples.push((pairs[i].caption.clone(), caption.clone()));
            }
            captions.push(caption);
        }
    }
    let n = pairs.len().max(1) as f64;
    let mse = squared / pixels.max(1) as f64;
    let usage = CodebookUsage::from_counts(&counts);
    Reconstruction {
        pairs: pairs.len(),
        image_mse: mse,
        psnr_db: -10.0 * mse.log10(),
        token_accuracy_pct: 100.0 * tokens_right as f64 / tokens.max(1) as f64,
        exact_captions_pct: 100.0 * exact as f64 / n,
        valid_captions_pct: 100.0 * valid as f64 / n,
        perplexity: usage.perplexity,
        live_codes: usage.live_codes,
        text_code_bits: text_counts.iter().map(|c| CodebookUsage::from_counts(c).perplexity.log2()).sum(),
        examples,
        images,
        captions,
        codes: all_codes,
    }
}
