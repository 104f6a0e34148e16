//! Batching: pairs as RGB bytes and token ids ([`PairSet`]), turned into the models' input
//! tensors ([`Batch`]: `[B, 3, 64, 64]` planes in [-1, 1] and `[B, L]` ids), masked or not;
//! and the way back from image planes to RGB bytes.

use burn::prelude::*;

use crate::config::{IMAGE_SIZE, MaskingConfig};
use crate::data::masking::{Half, mask_batch, mask_whole};
use crate::data::pairs::Pair;
use crate::data::tokenizer::CaptionTokenizer;
use crate::rng::Rng;

const PLANE: usize = IMAGE_SIZE * IMAGE_SIZE;

/// A batch of pairs as the models read them.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, 3, 64, 64]`, in [-1, 1]
    pub images: Tensor<4>,
    /// `[batch, token_length]`
    pub tokens: Tensor<2, Int>,
}

/// Pairs ready for batching: RGB bytes and token ids, back to back.
pub struct PairSet {
    pub images: Vec<u8>,
    pub tokens: Vec<u32>,
    /// Tokens per caption.
    pub length: usize,
}

impl PairSet {
    pub fn new(pairs: &[Pair], tokenizer: &CaptionTokenizer) -> Self {
        // sized up front: a collect that grows by doubling would hold up to twice the images
        let mut images = Vec::with_capacity(pairs.iter().map(|p| p.image.len()).sum());
        pairs.iter().for_each(|p| images.extend_from_slice(&p.image));
        Self {
            images,
            tokens: pairs.iter().flat_map(|p| tokenizer.encode(&p.caption)).collect(),
            length: tokenizer.length(),
        }
    }
    pub fn len(&self) -> usize {
        self.tokens.len() / self.length
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// The token ids of pair `i`.
    pub fn tokens_of(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.length..(i + 1) * self.length]
    }

    /// The pairs `ids`, masked as `mask` says when it is given.
    pub fn batch(&self, ids: &[usize], mask: Option<(&MaskingConfig, &mut Rng)>, device: &Device) -> Batch {
        let px = IMAGE_SIZE * IMAGE_SIZE * 3;
        let mut images = Vec::with_capacity(ids.len() * px);
        let mut tokens = Vec::with_capacity(ids.len() * self.length);
        for &i in ids {
            push_image(&self.images[i * px..(i + 1) * px], &mut images);
            tokens.extend_from_slice(self.tokens_of(i));
        }
        if let Some((masking, rng)) = mask {
            mask_batch(&mut images, &mut tokens, self.length, masking, rng);
        }
        let b = ids.len();
        let tokens: Vec<i64> = tokens.into_iter().map(i64::from).collect();
        Batch {
            images: Tensor::from_data(TensorData::new(images, [b, 3, IMAGE_SIZE, IMAGE_SIZE]), device),
            tokens: Tensor::from_data(TensorData::new(tokens, [b, self.length]), device),
        }
    }

    /// The pairs `ids` with `half` of each masked entirely (what stage 1 sees when asked
    /// for the other half alone: a caption for an image, an image for a caption).
    pub fn batch_without(&self, ids: &[usize], half: Half, device: &Device) -> Batch {
        let batch = self.batch(ids, None, device);
        let b = ids.len();
        match half {
            Half::Image => {
                let mut images = batch.images.into_data().try_into_vec_as::<f32>().expect("f32 images");
                mask_whole(Some(&mut images), None);
                Batch {
                    images: Tensor::from_data(TensorData::new(images, [b, 3, IMAGE_SIZE, IMAGE_SIZE]), device),
                    ..batch
                }
            }
            Half::Caption => {
                let mut tokens: Vec<u32> = vec![0; b * self.length];
                mask_whole(None, Some(&mut tokens));
                let tokens: Vec<i64> = tokens.into_iter().map(i64::from).collect();
                Batch { tokens: Tensor::from_data(TensorData::new(tokens, [b, self.length]), device), ..batch }
            }
        }
    }
}

/// RGB bytes (HWC) → CHW floats in [-1, 1], appended to `out`.
pub fn push_image(rgb: &[u8], out: &mut Vec<f32>) {
    for ch in 0..3 {
        out.extend((0..PLANE).map(|p| rgb[p * 3 + ch] as f32 / 127.5 - 1.0));
    }
}

/// CHW floats (≈ [-1, 1], a batch of them back to back) → RGB bytes per image.
pub fn to_rgb(values: &[f32]) -> Vec<Vec<u8>> {
    values
        .chunks(3 * PLANE)
        .map(|img| {
            let mut rgb = vec![0u8; 3 * PLANE];
            for ch in 0..3 {
                for p in 0..PLANE {
                    rgb[p * 3 + ch] = ((img[ch * PLANE + p] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                }
            }
            rgb
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokenizer::MASK_ID;

    #[test]
    fn a_batch_without_one_half_masks_all_of_it_and_none_of_the_other() {
        let set = PairSet { images: vec![200; 2 * 3 * PLANE], tokens: (0..2 * 8).collect(), length: 8 };
        let device = crate::cpu();
        let full = set.batch(&[0, 1], None, &device);
        let no_image = set.batch_without(&[0, 1], Half::Image, &device);
        assert!(no_image.images.into_data().try_into_vec_as::<f32>().unwrap().iter().all(|&v| v == 0.0));
        assert_eq!(no_image.tokens.into_data(), full.tokens.clone().into_data());
        let no_caption = set.batch_without(&[0, 1], Half::Caption, &device);
        let tokens = no_caption.tokens.into_data().try_into_vec_as::<i64>().unwrap();
        assert!(tokens.len() == 16 && tokens.iter().all(|&t| t == MASK_ID as i64));
        assert_eq!(no_caption.images.into_data(), full.images.into_data());
    }
}
