//! Reader for the MNIST IDX format (plain or gzip), for the 10k files shipped in
//! `data/mnist/` and the full 60k MNIST files alike.

use std::io::Read;
use std::path::Path;

use crate::Error;

/// MNIST's glyphs are this many pixels on each side.
pub const GLYPH_SIDE: usize = 28;
/// The largest IDX file read, unzipped (the full 60,000 MNIST training glyphs are 47 MB).
pub const MAX_IDX_BYTES: u64 = 256 << 20;

/// Digit glyphs and their labels.
#[derive(Debug, Clone)]
pub struct Digits {
    /// `count × rows × cols` bytes, 0 = background.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The glyph of digit `i`, `rows × cols` bytes.
    pub fn glyph(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Loads an images file and a labels file and checks they agree.
    pub fn load(images: &Path, labels_path: &Path) -> Result<Self, Error> {
        let (dims, pixels) = read_idx(images, 0x0803)?;
        let (ldims, labels) = read_idx(labels_path, 0x0801)?;
        let bad = |why: String| Error::Idx { path: images.display().to_string(), why };
        if dims.len() != 3 {
            return Err(bad(format!("expected 3 dimensions, found {}", dims.len())));
        }
        // Caption MNIST places 28×28 glyphs in 32×32 regions (docs/CAPTION_MNIST.md)
        if dims[1..] != [GLYPH_SIDE, GLYPH_SIDE] {
            return Err(bad(format!("glyphs of {}×{}, expected MNIST's {GLYPH_SIDE}×{GLYPH_SIDE}", dims[1], dims[2])));
        }
        if ldims[0] != dims[0] {
            return Err(bad(format!("{} images but {} labels in {}", dims[0], ldims[0], labels_path.display())));
        }
        if let Some(l) = labels.iter().find(|&&l| l > 9) {
            return Err(Error::Idx {
                path: labels_path.display().to_string(),
                why: format!("label {l} is not a digit"),
            });
        }
        Ok(Self { pixels, labels, rows: dims[1], cols: dims[2] })
    }

    /// Loads `DIR/*images-idx3-ubyte*` and `DIR/*labels-idx1-ubyte*` (gzip or not).
    pub fn load_dir(dir: &Path) -> Result<Self, Error> {
        let find = |tag: &str| -> Result<std::path::PathBuf, Error> {
            let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            let mut hits: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(tag)))
                .collect();
            hits.sort();
            hits.into_iter().next().ok_or_else(|| Error::Idx {
                path: dir.display().to_string(),
                why: format!("no file named *{tag}* in this folder"),
            })
        };
        Self::load(&find("images-idx3-ubyte")?, &find("labels-idx1-ubyte")?)
    }

    /// The digits `range` of this set (the train/test split of `docs/CAPTION_MNIST.md`).
    pub fn subset(&self, range: std::ops::Range<usize>) -> Self {
        let n = self.rows * self.cols;
        Self {
            pixels: self.pixels[range.start * n..range.end * n].to_vec(),
            labels: self.labels[range].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// Reads one IDX file of unsigned bytes: returns its dimensions and payload.
pub fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Error> {
    let raw = crate::error::read_bounded(path, MAX_IDX_BYTES)?;
    parse_idx(&raw, magic).map_err(|why| Error::Idx { path: path.display().to_string(), why })
}

/// Parses IDX bytes (gunzipping them first when they start with the gzip magic).
pub fn parse_idx(raw: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>), String> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("bad gzip stream: {e}"))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            return Err(format!("unzips to more than {MAX_IDX_BYTES} bytes"));
        }
        out
    } else {
        raw.to_vec()
    };
    if bytes.len() < 4 {
        return Err(format!("file is {} bytes, too short for an IDX header", bytes.len()));
    }
    let found = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    if found != magic {
        return Err(format!("magic number {found:#010x}, expected {magic:#010x}"));
    }
    let ndim = (found & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!("header promises {ndim} dimensions but the file ends at byte {}", bytes.len()));
    }
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let payload = bytes.len() - header;
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if expected != Some(payload) {
        let need = expected.map_or_else(|| "more".to_string(), |n| n.to_string());
        return Err(format!("dimensions {dims:?} need {need} bytes of data, the file has {payload}"));
    }
    Ok((dims, bytes[header..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
        v.extend(data);
        v
    }

    #[test]
    fn parses_plain_and_rejects_bad_files() {
        let ok = idx(0x0803, &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse_idx(&ok, 0x0803).unwrap(), (vec![2, 2, 2], vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(parse_idx(&ok, 0x0801).unwrap_err().contains("magic"));
        assert!(parse_idx(&ok[..ok.len() - 1], 0x0803).unwrap_err().contains("need 8 bytes"));
        assert!(parse_idx(&ok[..6], 0x0803).unwrap_err().contains("header"));
        assert!(parse_idx(&[0x1f, 0x8b, 0, 1], 0x0803).unwrap_err().contains("gzip"));
    }
}
