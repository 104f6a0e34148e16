//! Host-side conversions between RGB bytes and the models' image layout: `[3, 64, 64]`
//! planes in [-1, 1].

use crate::config::IMAGE_SIZE;

const PLANE: usize = IMAGE_SIZE * IMAGE_SIZE;

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
