//! Stage-1 reconstruction of a pairs folder: pair → codes → pair with a trained stage 1.
//! Prints JSON: image MSE and PSNR (on [0, 1]), token accuracy, exact captions, valid
//! captions, and codebook usage over the folder's codes.
//!
//! With `GRID=out.png`, also writes the first 8 test images above their reconstructions.
//!
//!     cargo run --release --example reconstruct -- RUN_DIR PAIRS_DIR [COUNT]

use mxq::cross_quantizer::CodebookUsage;
use mxq::data::batch::to_rgb;
use mxq::data::{parse_caption, read_pairs};
use mxq::tokenizer::CaptionTokenizer;
use mxq::train::{PairSet, load_stage1};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let run = std::path::Path::new(args.get(1).ok_or("RUN_DIR missing")?);
    let mut pairs = read_pairs(std::path::Path::new(args.get(2).ok_or("PAIRS_DIR missing")?))?;
    pairs.truncate(args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(500));
    let device = mxq::cpu();
    let (vae, state) = load_stage1(&run.join("stage1"), &device)?;
    let tokenizer = CaptionTokenizer::from_json(&state.tokenizer)?;
    let data = PairSet::new(&pairs, &tokenizer);
    let (mut sq, mut px, mut tok_ok, mut tok_n, mut exact, mut valid) = (0f64, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut examples = Vec::new();
    let mut shown: Vec<Vec<u8>> = Vec::new(); // first 8 originals, then their reconstructions
    let mut counts = vec![0u64; state.config.stage1.codebook_size];
    let ids: Vec<usize> = (0..data.len()).collect();
    for chunk in ids.chunks(50) {
        let (images, tokens) = data.batch(chunk, None, &device);
        let codes = vae.encode(images, tokens);
        for c in codes.clone().into_data().try_into_vec_as::<i64>()? {
            counts[c as usize] += 1;
        }
        let out = vae.decoder.decode(codes);
        let rgb = to_rgb(&out.image.into_data().try_into_vec_as::<f32>()?);
        let predicted = out.logits.argmax(2).into_data().try_into_vec_as::<i64>()?;
        for (k, &i) in chunk.iter().enumerate() {
            if shown.len() < 8 {
                shown.push(rgb[k].clone());
            }
            for (a, b) in rgb[k].iter().zip(&pairs[i].image) {
                sq += ((*a as f64 - *b as f64) / 255.0).powi(2);
                px += 1;
            }
            let want = &data.tokens[i * data.length..(i + 1) * data.length];
            let got: Vec<u32> = predicted[k * data.length..(k + 1) * data.length].iter().map(|&t| t as u32).collect();
            tok_ok += want.iter().zip(&got).filter(|(a, b)| a == b).count();
            tok_n += want.len();
            let caption = tokenizer.decode(&got);
            if examples.len() < 4 {
                examples.push(serde_json::json!([pairs[i].caption, caption]));
            }
            exact += usize::from(caption == pairs[i].caption);
            valid += usize::from(parse_caption(&caption).is_ok());
        }
    }
    if let Ok(path) = std::env::var("GRID") {
        let rows: Vec<&[u8]> = pairs.iter().take(shown.len()).map(|p| &p.image[..]).chain(shown.iter().map(|r| &r[..])).collect();
        std::fs::write(path, mxq::data::pairs::grid_png(&rows, shown.len(), 2))?;
    }
    let n = pairs.len() as f64;
    let mse = sq / px as f64;
    let usage = CodebookUsage::from_counts(&counts);
    println!(
        "{}",
        serde_json::json!({
            "pairs": pairs.len(), "image_mse": mse, "psnr_db": -10.0 * mse.log10(),
            "token_accuracy": tok_ok as f64 / tok_n as f64,
            "exact_captions": exact as f64 / n, "valid_captions": valid as f64 / n,
            "perplexity": usage.perplexity, "live_codes": usage.live_codes, "examples": examples,
        })
    );
    Ok(())
}
