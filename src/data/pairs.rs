//! The on-disk pair layout that `data` and `generate` write and training reads:
//! `DIR/00000.png`, `DIR/00000.txt`, … and `DIR/pairs.jsonl` with one
//! `{"image": "00000.png", "caption": "…"}` per line (image paths relative to DIR).
//! Any image–caption set in this shape trains; images of another size are resized.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::IMAGE_SIZE;
use crate::error::{Error, write_atomic};

/// One line of `pairs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRecord {
    pub image: String,
    pub caption: String,
}

/// An image (RGB bytes, `IMAGE_SIZE²×3`) with its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub image: Vec<u8>,
    pub caption: String,
}

/// Reads `DIR/pairs.jsonl` (or a `.jsonl` file) and every image it names.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, Error> {
    let (jsonl, records) = read_records(path)?;
    let root = jsonl.parent().unwrap_or(Path::new("."));
    records
        .into_iter()
        .map(|(line, rec)| {
            let image = load_image(&root.join(&rec.image)).map_err(|e| bad_line(&jsonl, line, e.to_string()))?;
            Ok(Pair { image, caption: rec.caption })
        })
        .collect()
}

/// The captions of `DIR/pairs.jsonl` (or a `.jsonl` file), without loading the images.
pub fn read_captions(path: &Path) -> Result<Vec<String>, Error> {
    Ok(read_records(path)?.1.into_iter().map(|(_, rec)| rec.caption).collect())
}

fn bad_line(jsonl: &Path, line: usize, why: String) -> Error {
    Error::Dataset { path: format!("{}:{line}", jsonl.display()), why }
}

/// The listing's path and its records with their line numbers; at least one, none with an empty caption.
fn read_records(path: &Path) -> Result<(std::path::PathBuf, Vec<(usize, PairRecord)>), Error> {
    let jsonl = if path.is_dir() { path.join("pairs.jsonl") } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&jsonl).map_err(|e| Error::io(&jsonl, e))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: PairRecord = serde_json::from_str(line)
            .map_err(|e| bad_line(&jsonl, i + 1, format!("not a {{\"image\", \"caption\"}} object: {e}")))?;
        if rec.caption.trim().is_empty() {
            return Err(bad_line(&jsonl, i + 1, "empty caption".into()));
        }
        records.push((i + 1, rec));
    }
    if records.is_empty() {
        return Err(bad_line(&jsonl, 0, "no pairs".into()));
    }
    Ok((jsonl, records))
}

/// Loads any image the `image` crate reads as `IMAGE_SIZE`² RGB bytes.
pub fn load_image(path: &Path) -> Result<Vec<u8>, Error> {
    let bad = |why: String| Error::Image { path: path.display().to_string(), why };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let img = image::load_from_memory(&bytes).map_err(|e| bad(e.to_string()))?.to_rgb8();
    let side = IMAGE_SIZE as u32;
    let img = if img.dimensions() == (side, side) {
        img
    } else {
        image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle)
    };
    Ok(img.into_raw())
}

/// PNG bytes of an `IMAGE_SIZE`² RGB image.
pub fn png_bytes(rgb: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let side = IMAGE_SIZE as u32;
    image::RgbImage::from_raw(side, side, rgb.to_vec())
        .expect("image has IMAGE_SIZE² × 3 bytes")
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding to memory cannot fail");
    out.into_inner()
}

/// Writes pairs as `DIR/NNNNN.png` + `.txt` and, last, `pairs.jsonl`: every file is
/// written atomically and the listing appears only once all its files exist.
pub fn write_pairs<'a>(dir: &Path, pairs: impl IntoIterator<Item = (&'a [u8], &'a str)>) -> Result<usize, Error> {
    let mut listing = String::new();
    let mut n = 0;
    for (i, (image, caption)) in pairs.into_iter().enumerate() {
        let stem = format!("{i:05}");
        write_atomic(&dir.join(format!("{stem}.png")), &png_bytes(image))?;
        write_atomic(&dir.join(format!("{stem}.txt")), format!("{caption}\n").as_bytes())?;
        let rec = PairRecord { image: format!("{stem}.png"), caption: caption.to_string() };
        listing += &serde_json::to_string(&rec).expect("record serializes");
        listing.push('\n');
        n += 1;
    }
    write_atomic(&dir.join("pairs.jsonl"), listing.as_bytes())?;
    Ok(n)
}

/// A grid of images (`cols` per row, `scale`× each, 2-pixel gaps) as one PNG: for the README.
pub fn grid_png(images: &[&[u8]], cols: usize, scale: u32) -> Vec<u8> {
    let side = IMAGE_SIZE as u32 * scale;
    let rows = images.len().div_ceil(cols) as u32;
    let (w, h) = (cols as u32 * (side + 2), rows * (side + 2));
    let mut grid = image::RgbImage::from_pixel(w, h, image::Rgb([40, 40, 40]));
    for (k, img) in images.iter().enumerate() {
        let (gx, gy) = ((k % cols) as u32 * (side + 2), (k / cols) as u32 * (side + 2));
        for y in 0..side {
            for x in 0..side {
                let p = (((y / scale) * IMAGE_SIZE as u32 + x / scale) * 3) as usize;
                grid.put_pixel(gx + x, gy + y, image::Rgb([img[p], img[p + 1], img[p + 2]]));
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    grid.write_to(&mut out, image::ImageFormat::Png).expect("PNG encoding to memory cannot fail");
    out.into_inner()
}
