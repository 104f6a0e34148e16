//! Input masking (paper §3.2): during training, a share of the 8×8 image patches is zeroed
//! and a share of the caption tokens is replaced by `[MASK]`; the model must rebuild the
//! full pair, so each modality's codes learn to carry what the other one lost.
//! Masks are drawn on the CPU with the run's seeded generator, so runs are reproducible.

use crate::config::{IMAGE_SIZE, MaskingConfig};
use crate::data::tokenizer::{MASK_ID, PAD_ID};
use crate::rng::Rng;

/// Masks a batch as `masking` says: image patches of `images` (`[batch, 3, 64, 64]`), then
/// tokens of `tokens` (`length` per caption) — or, for a `masking.whole` share of pairs,
/// one modality entirely ([`mask_whole`]).
pub fn mask_batch(images: &mut [f32], tokens: &mut [u32], length: usize, masking: &MaskingConfig, rng: &mut Rng) {
    if masking.whole == 0.0 {
        // the paper's masking, drawn exactly as before the whole-modality share existed
        mask_image_patches(images, IMAGE_SIZE, masking.patch, masking.image_ratio, rng);
        mask_tokens(tokens, length, masking.text_ratio, rng);
        return;
    }
    let px = 3 * IMAGE_SIZE * IMAGE_SIZE;
    for (image, caption) in images.chunks_mut(px).zip(tokens.chunks_mut(length)) {
        let draw = rng.unit_f32() as f64;
        if draw < masking.whole / 2.0 {
            mask_whole(Some(image), None);
        } else if draw < masking.whole {
            mask_whole(None, Some(caption));
        } else {
            mask_image_patches(image, IMAGE_SIZE, masking.patch, masking.image_ratio, rng);
            mask_tokens(caption, length, masking.text_ratio, rng);
        }
    }
}

/// One half of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Half {
    Image,
    Caption,
}
crate::config::serde_names!(Half, "a half", "image, caption");

/// Masks a modality entirely, as a conditional mode gives the encoder a pair with one half
/// unknown: every pixel of `image` zeroed (as a masked patch is), every position of
/// `caption` set to `[MASK]`, padding included (an unknown caption has no known length).
pub fn mask_whole(image: Option<&mut [f32]>, caption: Option<&mut [u32]>) {
    if let Some(image) = image {
        image.fill(0.0);
    }
    if let Some(caption) = caption {
        caption.fill(MASK_ID);
    }
}

/// Zeroes `floor(n_patches × ratio)` distinct `patch × patch` squares of each image.
/// `images` is `[batch, 3, side, side]` in row-major order. Returns the patches zeroed.
pub fn mask_image_patches(images: &mut [f32], side: usize, patch: usize, ratio: f64, rng: &mut Rng) -> usize {
    let per_side = side / patch;
    let n_patches = per_side * per_side;
    let k = (n_patches as f64 * ratio).floor() as usize;
    let plane = side * side;
    let mut zeroed = 0;
    for image in images.chunks_mut(3 * plane) {
        let mut order: Vec<usize> = (0..n_patches).collect();
        rng.shuffle(&mut order);
        for &p in &order[..k] {
            let (py, px) = (p / per_side * patch, p % per_side * patch);
            for ch in 0..3 {
                for y in py..py + patch {
                    let row = ch * plane + y * side;
                    image[row + px..row + px + patch].fill(0.0);
                }
            }
            zeroed += 1;
        }
    }
    zeroed
}

/// Replaces `floor(n × ratio)` distinct non-pad tokens of each caption by `[MASK]`
/// (`n` = the caption's non-pad tokens). Returns the tokens masked.
pub fn mask_tokens(tokens: &mut [u32], length: usize, ratio: f64, rng: &mut Rng) -> usize {
    let mut masked = 0;
    for caption in tokens.chunks_mut(length) {
        let mut real: Vec<usize> = (0..length).filter(|&i| caption[i] != PAD_ID).collect();
        let k = (real.len() as f64 * ratio).floor() as usize;
        rng.shuffle(&mut real);
        for &i in &real[..k] {
            caption[i] = MASK_ID;
        }
        masked += k;
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn masks_the_configured_share() {
        let mut rng = Rng::new(1, Stream::Test(0));
        let mut images = vec![1.0f32; 2 * 3 * 64 * 64];
        assert_eq!(mask_image_patches(&mut images, 64, 8, 0.3, &mut rng), 2 * 19); // floor(64 × 0.3)
        let zero = images.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(zero, 2 * 19 * 64 * 3);

        let mut tokens = vec![5u32; 2 * 64];
        tokens[20..64].fill(PAD_ID); // first caption: 20 real tokens
        let masked = mask_tokens(&mut tokens, 64, 0.3, &mut rng);
        assert_eq!(masked, 6 + 19); // floor(20 × 0.3) + floor(64 × 0.3)
        assert_eq!(tokens[..64].iter().filter(|&&t| t == MASK_ID).count(), 6);
        assert!(tokens[20..64].iter().all(|&t| t == PAD_ID), "padding is never masked");
        assert_eq!(mask_tokens(&mut tokens, 64, 0.0, &mut rng), 0);
    }

    #[test]
    fn a_whole_share_masks_one_modality_entirely_and_leaves_the_other() {
        let (n, px) = (400, 3 * 64 * 64);
        let masking = MaskingConfig { image_ratio: 0.3, text_ratio: 0.3, patch: 8, whole: 0.5 };
        let mut images = vec![1.0f32; n * px];
        let mut tokens = vec![5u32; n * 64];
        mask_batch(&mut images, &mut tokens, 64, &masking, &mut Rng::new(3, Stream::Test(1)));
        let (mut no_image, mut no_caption, mut partial) = (0, 0, 0);
        for (image, caption) in images.chunks(px).zip(tokens.chunks(64)) {
            let dark = image.iter().filter(|&&v| v == 0.0).count();
            let masked = caption.iter().filter(|&&t| t == MASK_ID).count();
            match (dark, masked) {
                (d, 0) if d == px => no_image += 1,
                (0, 64) => no_caption += 1,
                (d, 19) if d == 19 * 64 * 3 => partial += 1,
                other => panic!("pair masked {other:?}: neither whole nor the ratios"),
            }
        }
        assert_eq!(no_image + no_caption + partial, n);
        // a quarter each, half partial: binomial over 400 pairs, far inside 6 sigma
        assert!((60..140).contains(&no_image) && (60..140).contains(&no_caption), "{no_image} {no_caption}");
        assert!((140..260).contains(&partial), "{partial}");
    }
}
