//! Block int8: weights as int8 with one f32 scale per block of [`BLOCK`] consecutive values
//! (symmetric, scale = max|x| / 127). The bundle stores weights this way and the packed
//! layers read them as stored; it decodes identically on every backend (WebGPU has no i8,
//! so burn's own quantized tensors would not).

/// Values per int8 scale.
pub const BLOCK: usize = 64;

/// How weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Int8,
    /// The text decoder's map (dense: half of an int8 bundle's bytes; factored: its
    /// `rank × tokens` factor) and the text encoder's map (4.2 M of an encoder file's 5.0 M
    /// weights) in 4-bit blocks, every other weight in int8 blocks: no measured loss (README).
    /// Decoded to f32 at load like int8, so every backend runs it unchanged. The prior stays
    /// int8: in 4 bits it agreed on measurably fewer pairs.
    Int4,
}

/// The weights [`Precision::Int4`] stores in 4 bits: the two text maps.
pub const INT4_WEIGHTS: [&str; 2] = ["decoder.text.to_tokens.weight", "encoder.text.to_codes.weight"];

/// Whether [`Precision::Int4`] stores this weight in 4 bits: one of [`INT4_WEIGHTS`] whose
/// last axis is even (it is stored at half its length).
pub fn stored_in_int4(name: &str, shape: &[usize]) -> bool {
    INT4_WEIGHTS.contains(&name) && shape.len() >= 2 && shape.last().is_some_and(|n| n % 2 == 0)
}

/// Symmetric 4-bit with one scale per block of [`BLOCK`] values (scale = max|x| / 7), two
/// values per byte, the first in the low nibble (two's complement, -7..=7). The blocks are
/// int8's.
pub fn quantize_int4_blocks(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let (q, scales) = symmetric_blocks(values, 7);
    let packed = q.chunks(2).map(|p| (p[0] as u8 & 0x0f) | ((*p.get(1).unwrap_or(&0) as u8) << 4)).collect();
    (packed, scales)
}

/// The 4-bit values (-7..=7) of [`quantize_int4_blocks`]' bytes, unpacked.
fn unpack_int4(packed: &[u8], len: usize) -> Vec<i8> {
    let mut q = Vec::with_capacity(len.min(packed.len() * 2));
    for &b in packed {
        // sign-extend a nibble: shift it into the top of an i8, then back arithmetically
        q.extend_from_slice(&[((b << 4) as i8) >> 4, (b as i8) >> 4]);
    }
    q.truncate(len);
    q
}

/// The `len` values of [`quantize_int4_blocks`]' bytes and scales.
pub fn dequantize_int4_blocks(packed: &[u8], len: usize, scales: &[f32]) -> Vec<f32> {
    dequantize_blocks(&unpack_int4(packed, len), scales)
}

/// Symmetric int8 with one scale per block of `BLOCK` values.
pub fn quantize_blocks(values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    symmetric_blocks(values, 127)
}

/// Values in `-levels..=levels` steps, one scale (max|x| / levels) per block of `BLOCK`.
fn symmetric_blocks(values: &[f32], levels: i8) -> (Vec<i8>, Vec<f32>) {
    let top = f32::from(levels);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len().div_ceil(BLOCK));
    for block in values.chunks(BLOCK) {
        // a comparison, not `f32::max`: wasm has no instruction with its NaN rule and calls
        // `fmaxf` per value (a NaN is skipped either way)
        let max = block.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let scale = if max > 0.0 { max / top } else { 1.0 };
        q.extend(block.iter().map(|v| (v / scale).round().clamp(-top, top) as i8));
        scales.push(scale);
    }
    (q, scales)
}

pub fn dequantize_blocks(q: &[i8], scales: &[f32]) -> Vec<f32> {
    // sized up front (a `flat_map` collect reallocates as it grows: the page's load pays it)
    let mut values = Vec::with_capacity(q.len());
    for (block, s) in q.chunks(BLOCK).zip(scales) {
        values.extend(block.iter().map(|&v| v as f32 * s));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_blocks_round_trip_within_half_a_step() {
        // an odd length (the last byte half used) and blocks of very different magnitudes
        let values: Vec<f32> =
            (0..101).map(|i| ((i * 37 % 23) as f32 - 11.0) * if i < 64 { 1e-3 } else { 2.5 }).collect();
        let (packed, scales) = quantize_int4_blocks(&values);
        assert_eq!((packed.len(), scales.len()), (51, 2));
        let back = dequantize_int4_blocks(&packed, values.len(), &scales);
        assert_eq!(back.len(), values.len());
        for (i, (v, b)) in values.iter().zip(&back).enumerate() {
            let step = scales[i / BLOCK];
            assert!((v - b).abs() <= step / 2.0 + 1e-6, "value {i}: {v} came back as {b} (step {step})");
        }
        // each block's largest magnitude is exact, with its sign: ±7 steps
        let max = values[64..].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(back[64..].iter().any(|b| (b.abs() - max).abs() < 1e-5));
        assert!(back.iter().zip(&values).all(|(b, v)| *b == 0.0 || b.signum() == v.signum()));
    }
}
