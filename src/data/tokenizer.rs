//! Caption tokenizer: byte-level BPE trained with the `tokenizers` crate, padded and
//! truncated to a fixed length. The same `tokenizer.json` runs natively and in wasm, so
//! both tokenize identically.

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection, TruncationParams,
};

use crate::Error;

/// Padding: fills captions up to the fixed length. A target of the text loss like any
/// token: the decoder must say where the caption ends.
pub const PAD: &str = "[PAD]";
/// Unknown token: bytes never seen in the training captions map to it.
pub const UNK: &str = "[UNK]";
/// Input masking replaces tokens with this (paper §3.2).
pub const MASK: &str = "[MASK]";
/// The specials take ids 0, 1, 2 in this order.
pub const SPECIALS: [&str; 3] = [PAD, UNK, MASK];
pub const PAD_ID: u32 = 0;
pub const MASK_ID: u32 = 2;

/// A trained tokenizer that turns captions into exactly `length` ids and back.
#[derive(Clone)]
pub struct CaptionTokenizer {
    inner: Tokenizer,
    length: usize,
    /// Bytes in the vocabulary's longest entry: a caption of more than `length` times
    /// this many bytes cannot fit, whatever it says.
    longest: usize,
}

impl std::fmt::Debug for CaptionTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaptionTokenizer(vocab {}, length {})", self.vocab_size(), self.length)
    }
}

impl CaptionTokenizer {
    /// Trains byte-level BPE on `captions` with at most `vocab_size` entries (specials included).
    pub fn train<'a>(
        captions: impl Iterator<Item = &'a str> + Send,
        vocab_size: usize,
        length: usize,
    ) -> Result<Self, Error> {
        let tk = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
        let bpe = BPE::builder().unk_token(UNK.into()).build().map_err(tk)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let specials = SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
        let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .build()
            .into();
        inner.train(&mut trainer, captions).map_err(tk)?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: PAD_ID,
            pad_type_id: 0,
            pad_token: PAD.into(),
        }));
        inner.with_truncation(Some(TruncationParams { max_length: length, ..Default::default() })).map_err(tk)?;
        Self::checked(inner)
    }

    /// Reads a `tokenizer.json` (as written by [`Self::to_json`]).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let inner = Tokenizer::from_bytes(json.as_bytes()).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Self::checked(inner)
    }

    fn checked(inner: Tokenizer) -> Result<Self, Error> {
        for (id, s) in SPECIALS.iter().enumerate() {
            if inner.token_to_id(s) != Some(id as u32) {
                return Err(Error::Tokenizer(format!("special token {s} must have id {id}")));
            }
        }
        let length = match inner.get_padding().map(|p| &p.strategy) {
            Some(PaddingStrategy::Fixed(n)) => *n,
            _ => return Err(Error::Tokenizer("tokenizer has no fixed padding length".into())),
        };
        if !(1..=crate::config::MAX_TOKEN_LENGTH).contains(&length) {
            return Err(Error::Tokenizer(format!(
                "padding length {length} must be between 1 and {}",
                crate::config::MAX_TOKEN_LENGTH
            )));
        }
        match inner.get_truncation() {
            Some(t) if t.max_length == length && t.stride == 0 && t.direction == TruncationDirection::Right => {}
            _ => {
                return Err(Error::Tokenizer(format!(
                    "captions must be truncated at the end to the padding length {length}, with no stride"
                )));
            }
        }
        // what `encode` relies on, which a hand-edited tokenizer.json could change: padding at
        // the end with PAD to exactly `length`, byte-level BPE with [UNK] (so encoding
        // cannot fail), and every id within the vocabulary (the model's embedding rows)
        match inner.get_padding() {
            Some(p)
                if p.pad_id == PAD_ID
                    && p.pad_to_multiple_of.is_none()
                    && matches!(p.direction, PaddingDirection::Right) => {}
            _ => {
                return Err(Error::Tokenizer(format!(
                    "captions must be padded at the end with {PAD} (id {PAD_ID}) to exactly the padding length"
                )));
            }
        }
        match inner.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) if bpe.unk_token.as_deref() == Some(UNK) => {}
            _ => {
                return Err(Error::Tokenizer(format!(
                    "the tokenizer must be BPE with {UNK} (mxq trains byte-level BPE)"
                )));
            }
        }
        if inner.get_post_processor().is_some() {
            return Err(Error::Tokenizer("the tokenizer must add no tokens after encoding (no post-processor)".into()));
        }
        let (vocab, size) = (inner.get_vocab(true), inner.get_vocab_size(true));
        if let Some((token, id)) = vocab.iter().find(|(_, id)| **id as usize >= size) {
            return Err(Error::Tokenizer(format!("token {token:?} has id {id}, past the vocabulary's {size} entries")));
        }
        let longest = vocab.keys().map(|t| t.len()).max().unwrap_or(1);
        Ok(Self { inner, length, longest })
    }

    /// Whether this tokenizer is the one `text` was built for: the same vocabulary size and
    /// caption length (a foreign tokenizer would index past the model's embeddings).
    pub fn check_fits(&self, text: &crate::config::TextConfig) -> Result<(), Error> {
        if self.vocab_size() != text.vocab_size || self.length() != text.token_length {
            return Err(Error::Tokenizer(format!(
                "{} entries padding captions to {} tokens, but the config says {} entries and {} tokens",
                self.vocab_size(),
                self.length(),
                text.vocab_size,
                text.token_length
            )));
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        self.inner.to_string(false).expect("a trained tokenizer serializes")
    }
    /// Entries in the vocabulary, specials included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// Ids per caption.
    pub fn length(&self) -> usize {
        self.length
    }

    /// A caption as exactly `length` ids (padded with [`PAD_ID`], truncated if longer).
    pub fn encode(&self, caption: &str) -> Vec<u32> {
        match self.inner.encode(caption, false) {
            Ok(enc) => enc.get_ids().to_vec(),
            // BPE with an unknown token (checked at load) encodes every string
            Err(_) => vec![PAD_ID; self.length],
        }
    }

    /// A caption given by a user (to draw images for), as ids: refused when it is empty, holds
    /// characters the tokenizer never saw (they would read as `[UNK]`), or is cut to
    /// [`Self::length`] tokens — each a caption the model would not be drawing.
    pub fn encode_given(&self, caption: &str) -> Result<Vec<u32>, Error> {
        if caption.trim().is_empty() {
            return Err(Error::Tokenizer("the caption is empty".into()));
        }
        // bounded before anything is encoded: a caption from a page's address may be megabytes
        if caption.len() > self.length * self.longest {
            return Err(Error::Tokenizer(format!("the caption is longer than {} tokens", self.length)));
        }
        let unk = SPECIALS.iter().position(|s| *s == UNK).expect("UNK is a special") as u32;
        // a space is the words' separator; any other whitespace (a tab, a no-break space) is
        // a character like the rest
        let distinct: std::collections::BTreeSet<char> = caption.chars().filter(|c| *c != ' ').collect();
        let unknown: Vec<String> = distinct
            .into_iter()
            .filter(|c| self.encode(&c.to_string()).contains(&unk))
            .map(|c| format!("{c:?}"))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Tokenizer(format!(
                "the caption has characters this tokenizer never saw in training: {}",
                unknown.join(", ")
            )));
        }
        if self.truncates(caption) {
            return Err(Error::Tokenizer(format!("the caption is longer than {} tokens", self.length)));
        }
        Ok(self.encode(caption))
    }

    /// Whether `caption` has more tokens than [`Self::length`] (the rest is cut off).
    pub fn truncates(&self, caption: &str) -> bool {
        // the encoding keeps no overflow after padding, so: do the kept ids give it all back?
        // (byte-level BPE is lossless, so they do exactly when nothing was cut)
        let ids = self.encode(caption);
        !ids.contains(&PAD_ID) && self.decode(&ids) != caption.trim()
    }

    /// Ids back to text, dropping the specials.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default().trim().to_string()
    }
}
