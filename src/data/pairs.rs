//! The on-disk pair layout that `data` and `generate` write and training reads:
//! `DIR/00000.png`, `DIR/00000.txt`, … and `DIR/pairs.jsonl` with one
//! `{"image": "00000.png", "caption": "…"}` per line (image paths relative to DIR).
//! Any image–caption set in this shape trains; images of another size are resized.
//! Image paths must stay inside DIR (no absolute paths, no `..`, no symlink out of it) and
//! name regular files of at most [`MAX_IMAGE_BYTES`].

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::IMAGE_SIZE;
use crate::error::{Error, read_bounded, write_atomic};

/// The largest image file a pairs folder may name.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// The widest and tallest image read, in pixels (it is resized to `IMAGE_SIZE` anyway).
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// The largest `pairs.jsonl`.
pub const MAX_LISTING_BYTES: u64 = 1 << 30;

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

/// What reading a pairs folder changed so that its images fit the models, counted so that
/// the CLI says so instead of changing them without a word.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    /// Images of another size, resized to `IMAGE_SIZE`².
    pub resized: usize,
    /// Images not stored as 8-bit RGB (grayscale, an alpha channel — dropped, so a fully
    /// transparent image shows its colour values —, 16-bit), converted to it.
    pub converted: usize,
}

/// Reads `DIR/pairs.jsonl` (or a `.jsonl` file) and every image it names.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, Error> {
    Ok(read_pairs_fitted(path)?.0)
}

/// [`read_pairs`], with the count of images it had to fit.
pub fn read_pairs_fitted(path: &Path) -> Result<(Vec<Pair>, Fitted), Error> {
    let (jsonl, records) = read_records(path)?;
    let root = jsonl.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let inside = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let mut fitted = Fitted::default();
    let pairs = records
        .into_iter()
        .map(|(line, rec)| {
            let path = image_path(root, &inside, &rec.image).map_err(|why| bad_line(&jsonl, line, why))?;
            let (image, f) = load_image_fitted(&path).map_err(|e| bad_line(&jsonl, line, e.to_string()))?;
            fitted.resized += f.resized;
            fitted.converted += f.converted;
            Ok(Pair { image, caption: rec.caption })
        })
        .collect::<Result<_, Error>>()?;
    Ok((pairs, fitted))
}

/// `image` (a listing's path) under `root`, refused unless it stays inside the folder
/// (`inside`: the folder's canonical path, so a symlink out of it is caught too).
fn image_path(root: &Path, inside: &Path, image: &str) -> Result<PathBuf, String> {
    let rel = Path::new(image);
    if !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!("image path '{image}' must be relative and inside the folder (no '..', no absolute path)"));
    }
    let path = root.join(rel);
    let real = path.canonicalize().map_err(|e| format!("image {}: {e}", path.display()))?;
    if !real.starts_with(inside) {
        return Err(format!("image path '{image}' leads out of the folder (to {})", real.display()));
    }
    Ok(path)
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
    let bytes = read_bounded(&jsonl, MAX_LISTING_BYTES)?;
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes); // a UTF-8 byte-order mark
    let mut records = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| bad_line(&jsonl, i + 1, format!("not UTF-8 text: {e}")))?;
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
    Ok(load_image_fitted(path)?.0)
}

/// [`load_image`], with what it changed (each count 0 or 1).
fn load_image_fitted(path: &Path) -> Result<(Vec<u8>, Fitted), Error> {
    let bytes = read_bounded(path, MAX_IMAGE_BYTES)?;
    decode_image_fitted(&bytes, &path.display().to_string())
}

/// An encoded image (PNG; natively JPEG too, the `native` feature) as `IMAGE_SIZE`² RGB
/// bytes, resized as in training; `name` says which image in an error.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<Vec<u8>, Error> {
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(Error::Image {
            path: name.into(),
            why: format!("{} bytes, more than {MAX_IMAGE_BYTES}", bytes.len()),
        });
    }
    Ok(decode_image_fitted(bytes, name)?.0)
}

fn decode_image_fitted(bytes: &[u8], name: &str) -> Result<(Vec<u8>, Fitted), Error> {
    let bad = |why: String| Error::Image { path: name.into(), why };
    // the sides are bounded before decoding: a small PNG can declare gigapixels
    let mut limits = image::Limits::default();
    (limits.max_image_width, limits.max_image_height) = (Some(MAX_IMAGE_SIDE), Some(MAX_IMAGE_SIDE));
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            bad(format!("{e}: images up to {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} pixels are read"))
        }
        e => bad(e.to_string()),
    })?;
    let converted = usize::from(img.color() != image::ColorType::Rgb8);
    let img = img.to_rgb8();
    let side = IMAGE_SIZE as u32;
    let resized = usize::from(img.dimensions() != (side, side));
    let img = if resized == 0 {
        img
    } else {
        image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle)
    };
    Ok((img.into_raw(), Fitted { resized, converted }))
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

/// Writes pairs as `DIR/NNNNN.png` + `.txt`, one pair at a time (nothing held but the
/// listing, so a long generation streams to disk), and `pairs.jsonl` last, at
/// [`Self::finish`]: every file is written atomically and the listing appears only once all
/// its files exist.
pub struct PairWriter {
    dir: PathBuf,
    listing: String,
    count: usize,
}

impl PairWriter {
    /// Opens `dir` for pairs: created if absent and checked writable before any work. A
    /// folder that already holds files is refused, unless `replace`: then an earlier pairs
    /// layout there (`pairs.jsonl`, `NNNNN.png`, `NNNNN.txt`) is removed first, and a
    /// folder holding anything else is still refused (nothing but old pairs is deleted).
    pub fn create(dir: &Path, replace: bool) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .and_then(|it| it.map(|e| e.map(|e| e.path())).collect())
            .map_err(|e| Error::io(dir, e))?;
        let refuse = |why: String| Error::Dataset { path: dir.display().to_string(), why };
        if !entries.is_empty() {
            if !replace {
                return Err(refuse(format!(
                    "holds {} files already; give an empty folder (or --force to replace earlier pairs there)",
                    entries.len()
                )));
            }
            if let Some(other) = entries.iter().find(|p| !is_pairs_file(p)) {
                return Err(refuse(format!(
                    "holds {}, which is not part of a pairs layout; not replacing",
                    other.display()
                )));
            }
            // the listing first, so no listing ever names a removed image
            let listing = dir.join("pairs.jsonl");
            for path in
                std::iter::once(&listing).filter(|p| p.exists()).chain(entries.iter().filter(|p| **p != listing))
            {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        let probe = dir.join(".mxq-write-check");
        write_atomic(&probe, b"")?;
        std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))?;
        Ok(Self { dir: dir.to_path_buf(), listing: String::new(), count: 0 })
    }

    /// Writes one pair's PNG and TXT.
    pub fn push(&mut self, image: &[u8], caption: &str) -> Result<(), Error> {
        let stem = format!("{:05}", self.count);
        write_atomic(&self.dir.join(format!("{stem}.png")), &png_bytes(image))?;
        write_atomic(&self.dir.join(format!("{stem}.txt")), format!("{caption}\n").as_bytes())?;
        let rec = PairRecord { image: format!("{stem}.png"), caption: caption.to_string() };
        self.listing += &serde_json::to_string(&rec).expect("record serializes");
        self.listing.push('\n');
        self.count += 1;
        Ok(())
    }

    /// Writes `pairs.jsonl`; returns the number of pairs.
    pub fn finish(self) -> Result<usize, Error> {
        write_atomic(&self.dir.join("pairs.jsonl"), self.listing.as_bytes())?;
        Ok(self.count)
    }
}

/// Whether `path` is a file a pairs layout consists of: `pairs.jsonl`, or digits `.png`/`.txt`.
fn is_pairs_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name.strip_suffix(".png").or_else(|| name.strip_suffix(".txt"));
    path.is_file()
        && (name == "pairs.jsonl" || stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
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
