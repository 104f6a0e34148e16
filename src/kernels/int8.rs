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
}

/// Symmetric int8 with one scale per block of `BLOCK` values.
pub fn quantize_blocks(values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len().div_ceil(BLOCK));
    for block in values.chunks(BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(block.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (q, scales)
}

pub fn dequantize_blocks(q: &[i8], scales: &[f32]) -> Vec<f32> {
    q.chunks(BLOCK).zip(scales).flat_map(|(block, s)| block.iter().map(move |&v| v as f32 * s)).collect()
}
