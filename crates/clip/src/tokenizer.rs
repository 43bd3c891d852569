//! CLIP's byte-level BPE tokenizer, assembled from the `tokenizers` crate exactly as transformers'
//! `CLIPTokenizer` assembles it: NFC, whitespace runs collapsed to one space, lower-casing; CLIP's
//! pre-tokenisation regex; byte-level mapping; BPE with the `</w>` word-end suffix;
//! `<|startoftext|>` + ids + `<|endoftext|>`; truncation to 77 that keeps the end token; padding
//! with `<|endoftext|>` to 77.
//!
//! Text cleaning: OpenAI's tokenizer (and transformers' old Python one when `ftfy` is installed)
//! also runs `ftfy.fix_text` and `html.unescape`. Like transformers' fast/current tokenizer we do
//! not; the ids differ only for captions with mojibake or HTML entities (`&amp;` stays three tokens).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::ClipError;

/// The start-of-text token.
pub const BOS_TOKEN: &str = "<|startoftext|>";
/// The end-of-text token, also used for padding.
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// CLIP's context length.
pub const CONTEXT_LENGTH: usize = 77;
/// Number of merges OpenAI's `SimpleTokenizer` takes from `bpe_simple_vocab_16e6.txt.gz`
/// (49152 - 256 - 2), giving the 49,408-entry vocabulary.
pub const OPENAI_MERGES: usize = 49152 - 256 - 2;

const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

fn tok_err(e: impl std::fmt::Display) -> ClipError {
    ClipError::Tokenizer(e.to_string())
}

/// GPT-2/CLIP's table from bytes to printable characters, in the order CLIP's vocabulary lists them.
fn byte_unicode_table() -> Vec<char> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    chars.into_iter().filter_map(char::from_u32).collect()
}

/// CLIP's tokenizer: text in, 77 token ids out.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos_id: u32,
    eos_id: u32,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// Builds the tokenizer from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped in the PyPI
    /// packages `clip`/`open_clip_torch`): the vocabulary is derived from the merges exactly as
    /// OpenAI's `SimpleTokenizer` derives it (256 byte characters, the same with `</w>`, one entry
    /// per merge, then the two special tokens: ids 49406 and 49407).
    pub fn from_bpe_gz(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), error: source })?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .map_err(|source| ClipError::Io { path: path.to_path_buf(), error: source })?;
        // OpenAI skips the first line (a header) unconditionally.
        let body = text.split_once('\n').map_or("", |(_, rest)| rest);
        let merges =
            parse_merges(body, OPENAI_MERGES).map_err(|m| ClipError::invalid(path.display().to_string(), m))?;
        if merges.len() != OPENAI_MERGES {
            return Err(ClipError::invalid(
                path.display().to_string(),
                format!("{} merges, expected {OPENAI_MERGES}", merges.len()),
            ));
        }
        Self::from_merges(merges)
    }

    /// Builds the tokenizer from a merge list alone, deriving the vocabulary as OpenAI does.
    pub fn from_merges(merges: Vec<(String, String)>) -> Result<Self, ClipError> {
        let bytes = byte_unicode_table();
        let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
        tokens.extend(bytes.iter().map(|c| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(BOS_TOKEN.to_string());
        tokens.push(EOS_TOKEN.to_string());
        let vocab: HashMap<String, u32> = tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        Self::from_vocab_and_merges(vocab, merges)
    }

    /// Builds the tokenizer from Hugging Face's `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges_files(
        vocab_json: impl AsRef<Path>,
        merges_txt: impl AsRef<Path>,
    ) -> Result<Self, ClipError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| ClipError::Io { path: p.to_path_buf(), error: source })
        };
        let (vp, mp) = (vocab_json.as_ref(), merges_txt.as_ref());
        let vocab: HashMap<String, u32> = serde_json::from_str(&read(vp)?)
            .map_err(|e| ClipError::invalid(vp.display().to_string(), format!("not a token -> id JSON map: {e}")))?;
        let merges =
            parse_merges(&read(mp)?, usize::MAX).map_err(|m| ClipError::invalid(mp.display().to_string(), m))?;
        Self::from_vocab_and_merges(vocab, merges)
    }

    /// Builds the tokenizer from a vocabulary and merges already in memory.
    pub fn from_vocab_and_merges(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
    ) -> Result<Self, ClipError> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| ClipError::Tokenizer(format!("vocabulary lacks {t}")));
        let (bos_id, eos_id) = (id(BOS_TOKEN)?, id(EOS_TOKEN)?);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
            .unk_token(EOS_TOKEN.to_string())
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".to_string())
            .fuse_unk(false)
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_normalizer(Some(NormalizerSequence::new(vec![
            NFC.into(),
            Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(tok_err)?.into(),
            Lowercase.into(),
        ])));
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true)
                .map_err(tok_err)?
                .into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_post_processor(Some(
            RobertaProcessing::new((EOS_TOKEN.into(), eos_id), (BOS_TOKEN.into(), bos_id))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        inner.add_special_tokens(&[
            AddedToken::from(BOS_TOKEN, true).normalized(false),
            AddedToken::from(EOS_TOKEN, true).normalized(false),
        ]);
        Self::finish(inner, bos_id, eos_id)
    }

    /// Loads a Hugging Face `tokenizer.json` (its own normaliser and pre-tokeniser are kept) and
    /// applies CLIP's truncation and padding.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let inner = Tokenizer::from_file(path).map_err(|e| ClipError::Tokenizer(format!("{}: {e}", path.display())))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| ClipError::Tokenizer(format!("{}: vocabulary lacks {t}", path.display())))
        };
        let (bos_id, eos_id) = (id(BOS_TOKEN)?, id(EOS_TOKEN)?);
        Self::finish(inner, bos_id, eos_id)
    }

    /// Loads the tokenizer files of a Hugging Face folder: `tokenizer.json` if present, else
    /// `vocab.json` + `merges.txt`, else `bpe_simple_vocab_16e6.txt.gz`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, ClipError> {
        let dir = dir.as_ref();
        if dir.join("tokenizer.json").is_file() {
            Self::from_tokenizer_json(dir.join("tokenizer.json"))
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            Self::from_vocab_merges_files(dir.join("vocab.json"), dir.join("merges.txt"))
        } else if dir.join("bpe_simple_vocab_16e6.txt.gz").is_file() {
            Self::from_bpe_gz(dir.join("bpe_simple_vocab_16e6.txt.gz"))
        } else {
            Err(ClipError::invalid(
                dir.display().to_string(),
                "no tokenizer.json, vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz",
            ))
        }
    }

    fn finish(mut inner: Tokenizer, bos_id: u32, eos_id: u32) -> Result<Self, ClipError> {
        let mut this = Self {
            inner: {
                inner.with_truncation(None).map_err(tok_err)?;
                inner
            },
            bos_id,
            eos_id,
            context_length: 0,
        };
        this.set_context_length(CONTEXT_LENGTH)?;
        Ok(this)
    }

    /// Changes the padded/truncated length (77 by default; at least 2 for BOS and EOS).
    pub fn set_context_length(&mut self, length: usize) -> Result<(), ClipError> {
        if length < 2 {
            return Err(ClipError::invalid("context length", format!("{length}, expected at least 2")));
        }
        self.inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(tok_err)?;
        self.inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.eos_id,
            pad_type_id: 0,
            pad_token: EOS_TOKEN.to_string(),
        }));
        self.context_length = length;
        Ok(())
    }

    /// Id of `<|startoftext|>` (49406 with CLIP's vocabulary).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// Id of `<|endoftext|>` (49407), also the padding id.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The padded length of every encoded caption.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Number of entries in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes one caption: BOS, at most `context_length - 2` BPE tokens, EOS, padding with EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ClipError> {
        let enc = self.inner.encode(text, true).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes captions into one row-major `[captions, context_length]` id buffer (i64, as
    /// embedding lookups take).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<i64>, ClipError> {
        let mut out = Vec::with_capacity(texts.len() * self.context_length);
        for t in texts {
            out.extend(self.encode(t)?.into_iter().map(i64::from));
        }
        Ok(out)
    }

    /// [`Self::encode_batch`] as a `[captions, context_length]` int64 tensor on the CPU.
    pub fn encode_tensor(&self, texts: &[&str]) -> Result<tch::Tensor, ClipError> {
        let ids = self.encode_batch(texts)?;
        Ok(tch::Tensor::from_slice(&ids).f_view([texts.len() as i64, self.context_length as i64])?)
    }

    /// The underlying `tokenizers` tokenizer (e.g. to decode ids).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Parses merge lines ("a b"), skipping a `#version` header and blank lines; stops after `limit`.
fn parse_merges(text: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
    let mut merges = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if merges.len() == limit {
            break;
        }
        if (n == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => merges.push((a.to_string(), b.to_string())),
            _ => return Err(format!("line {}: {line:?} is not a merge \"a b\"", n + 1)),
        }
    }
    Ok(merges)
}
