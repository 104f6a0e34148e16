//! Stage-1 reconstruction of a pairs folder: pair → codes → pair with a trained stage 1.
//! Prints the figures of `mxq::reconstruction` as JSON. With `GRID=out.png`, also writes
//! the first 8 images above their reconstructions.
//!
//!     cargo run --release --example reconstruct -- RUN_DIR PAIRS_DIR [COUNT]

use mxq::data::read_pairs;
use mxq::data::tokenizer::CaptionTokenizer;
use mxq::train::stage1::load_stage1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let run = std::path::Path::new(args.get(1).ok_or("RUN_DIR missing")?);
    let mut pairs = read_pairs(std::path::Path::new(args.get(2).ok_or("PAIRS_DIR missing")?))?;
    pairs.truncate(args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(500));
    let device = mxq::cpu();
    let (vae, state) = load_stage1(&run.join("stage1"), &device)?;
    let tokenizer = CaptionTokenizer::from_json(&state.tokenizer)?;
    let figures = mxq::eval::reconstruction::reconstruct(&vae, &tokenizer, &pairs, None, &device);
    if let Ok(path) = std::env::var("GRID") {
        let shown = figures.images.len().min(8);
        let rows: Vec<&[u8]> =
            pairs[..shown].iter().map(|p| &p.image[..]).chain(figures.images[..shown].iter().map(|r| &r[..])).collect();
        std::fs::write(path, mxq::data::pairs::grid_png(&rows, shown, 2))?;
    }
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
