//! One error type for the core crate: every failure names the file or field at fault.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // `cause`, not `source`: as an error source it would be printed a second time by every
    // reporter that walks the chain (anyhow's `{:#}`)
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("IDX file {path}: {why}")]
    Idx { path: String, why: String },
    #[error("dataset {path}: {why}")]
    Dataset { path: String, why: String },
    #[error("image {path}: {why}")]
    Image { path: String, why: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("config: {0}")]
    Config(String),
    #[error("bundle: {0}")]
    Bundle(String),
    #[error("judge: {0}")]
    Judge(String),
    /// Options out of their range (sampling, generation).
    #[error("{0}")]
    Options(String),
    #[error("checkpoint {path}: {why}")]
    Checkpoint { path: String, why: String },
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), cause: source }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed, then renamed
/// over the target, so a crash never leaves a half-written checkpoint, bundle or dataset.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

/// Reads a regular file of at most `limit` bytes. A FIFO, a device, a directory or a larger
/// file is refused before anything is read, so a hostile path cannot hang or exhaust memory.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let refuse = |why: String| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.len() > limit {
        return Err(refuse(format!("{} bytes, more than the {limit} allowed", meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // the file may grow between the check and the read: read one byte past the limit at most
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(refuse(format!("grew past the {limit} bytes allowed while being read")));
    }
    Ok(bytes)
}
