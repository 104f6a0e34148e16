//! How much int8 weights change generation: loads an f32 and an int8 bundle of the same
//! run and prints JSON with (1) file sizes, (2) the same sampled codes decoded by both —
//! mean/max pixel difference and caption agreement — and (3) sampling with the same seed
//! in each — share of identical code sequences and captions.
//!
//!     cargo run --release --example int8_vs_f32 -- F32_BUNDLE INT8_BUNDLE [COUNT]

use mxq::bundle;
use mxq::sample::SampleOptions;
use mxq::sample::sampler::sample_codes;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (f32_path, int8_path) = (args.get(1).ok_or("F32_BUNDLE missing")?, args.get(2).ok_or("INT8_BUNDLE missing")?);
    let count: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let device = mxq::cpu();
    let (fb, ib) = (std::fs::read(f32_path)?, std::fs::read(int8_path)?);
    let load = |bytes: &[u8]| bundle::load(bytes, &device, bundle::LoadOptions::default());
    let (full, int8) = (load(&fb)?, load(&ib)?);
    let positions = full.config.stage1.sequence_length();
    let opts = SampleOptions { seed: 7, ..Default::default() };

    let codes = sample_codes(&full.generator.prior, count, positions, 0, &[], opts, &device);
    let a = full.decode_codes(codes.clone(), &device);
    let b = int8.decode_codes(codes, &device);
    let diffs: Vec<f64> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| x.image.iter().zip(&y.image).map(|(p, q)| (*p as f64 - *q as f64).abs()))
        .collect();
    let same_caption = a.iter().zip(&b).filter(|(x, y)| x.caption == y.caption).count();

    let c = sample_codes(&int8.generator.prior, count, positions, 0, &[], opts, &device);
    let d = sample_codes(&full.generator.prior, count, positions, 0, &[], opts, &device);
    let same_codes = c.iter().zip(&d).filter(|(x, y)| x == y).count();
    let same_prefix: f64 =
        c.iter().zip(&d).map(|(x, y)| x.iter().zip(y).take_while(|(p, q)| p == q).count() as f64).sum::<f64>()
            / count as f64;

    println!(
        "{}",
        serde_json::json!({
            "f32_bytes": fb.len(), "int8_bytes": ib.len(), "pairs": count,
            "same_codes_decoded": {
                "mean_abs_pixel_diff": diffs.iter().sum::<f64>() / diffs.len() as f64,
                "max_abs_pixel_diff": diffs.iter().cloned().fold(0.0, f64::max),
                "identical_captions": same_caption as f64 / count as f64,
            },
            "same_seed_sampled": {
                "identical_code_sequences": same_codes as f64 / count as f64,
                "mean_identical_prefix": same_prefix,
            }
        })
    );
    Ok(())
}
