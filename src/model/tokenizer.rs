//! The tokenizer: text <-> token ids, plus the raw bytes of every token.
//!
//! Two sources: a `tokenizer.json` (the `tokenizers` crate's own format), or
//! the vocabulary and merges stored in a GGUF file's metadata, from which a
//! gpt2-style byte-level BPE is rebuilt. The per-token byte table exists
//! because alignment and token healing reason about bytes, and a token's text
//! alone cannot express a token that holds half of a UTF-8 character.
//!
//! Special tokens written literally in the text (e.g. `<|endoftext|>` inside a
//! file) are encoded as plain text for GGUF tokenizers: a document must never
//! be able to smuggle an end-of-sequence into the prompt. A `tokenizer.json`
//! keeps whatever added tokens it declares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::gguf_file;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, PreTokenizerWrapper};

/// Token strings that end a generation in the model families we support, in
/// addition to the file's declared end-of-sequence id.
const END_TOKEN_NAMES: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|EOT|>",
    "<｜end▁of▁sentence｜>",
];

/// Qwen2's pre-tokenizer split (from its published tokenizer config); the
/// byte-level step then runs without its own regex.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Raw bytes of each token id, indexed by id.
    bytes_of_token: Vec<Vec<u8>>,
    eos_ids: Vec<u32>,
    /// When true, decoding is the concatenation of `bytes_of_token`, which is
    /// exact by construction.
    byte_level: bool,
    /// All token ids ordered by their bytes, so that the tokens starting with
    /// given bytes form one contiguous run (token healing needs this).
    ids_by_bytes: Vec<u32>,
    /// True when the pre-tokenizer is one whose boundaries alignment can
    /// predict from the text (see `predict::align`).
    regex_boundaries: bool,
    source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Load a `tokenizer.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        if !path.is_file() {
            bail!("tokenizer file {} does not exist", path.display());
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let vocab = inner.get_vocab(true);
        let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        let mut names = vec![String::new(); size];
        for (name, id) in vocab {
            names[id as usize] = name;
        }
        let bytes_of_token = if byte_level {
            byte_level_table(&names)
        } else {
            names.iter().map(|name| sentencepiece_bytes(name)).collect()
        };
        let eos_ids = END_TOKEN_NAMES
            .iter()
            .filter_map(|name| inner.token_to_id(name))
            .collect();
        let regex_boundaries = json_has_regex_boundaries(&inner);
        Ok(Tokenizer::with_byte_index(Tokenizer {
            inner,
            bytes_of_token,
            eos_ids,
            byte_level,
            regex_boundaries,
            ids_by_bytes: Vec::new(),
            source: path.to_path_buf(),
        }))
    }

    /// The tokenizer for a resolved model: its `tokenizer.json` when it has
    /// one, else the GGUF metadata; checked against the model's embedding
    /// table so that a tokenizer from another model is an error, not garbage.
    pub fn for_model(files: &crate::model::source::ModelFiles) -> Result<Tokenizer> {
        let tokenizer = match &files.tokenizer_json {
            Some(json) => Tokenizer::from_json_file(json)?,
            None if files.is_gguf() => Tokenizer::from_gguf(&files.weights)?,
            None => bail!(
                "model {} has no tokenizer.json and is not a GGUF file",
                files.weights.display()
            ),
        };
        if let Some(rows) = model_vocab_rows(&files.weights)? {
            tokenizer.check_model_vocab(rows, &files.weights)?;
        }
        Ok(tokenizer)
    }

    /// Rebuild the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let (content, _) = super::gguf::open(path)?;
        Self::from_gguf_metadata(&content.metadata, path)
    }

    /// Build from already-read GGUF metadata; `path` names the file in errors.
    pub fn from_gguf_metadata(
        metadata: &HashMap<String, gguf_file::Value>,
        path: &Path,
    ) -> Result<Tokenizer> {
        let get_str = |key: &str| -> Option<&String> { metadata.get(key)?.to_string().ok() };
        let get_list = |key: &str| -> Result<Vec<String>> {
            let value = metadata.get(key).ok_or_else(|| {
                anyhow!(
                    "{} has no tokenizer data (metadata key {key} is missing)",
                    path.display()
                )
            })?;
            let list = value
                .to_vec()
                .map_err(|_| anyhow!("{}: metadata {key} is not a list", path.display()))?;
            list.iter()
                .map(|v| {
                    v.to_string().cloned().map_err(|_| {
                        anyhow!(
                            "{}: metadata {key} holds a non-string entry",
                            path.display()
                        )
                    })
                })
                .collect()
        };

        let model = get_str("tokenizer.ggml.model").ok_or_else(|| {
            anyhow!(
                "{} has no tokenizer data (tokenizer.ggml.model is missing)",
                path.display()
            )
        })?;
        if model != "gpt2" {
            bail!(
                "{}: tokenizer model '{model}' is not supported from GGUF metadata \
                 (only gpt2-style BPE); pass a tokenizer.json instead",
                path.display()
            );
        }
        let tokens = get_list("tokenizer.ggml.tokens")?;
        let merge_lines = get_list("tokenizer.ggml.merges")?;
        let mut merges = Vec::with_capacity(merge_lines.len());
        for line in &merge_lines {
            let (left, right) = line.split_once(' ').ok_or_else(|| {
                anyhow!(
                    "{}: malformed merge rule {line:?} in tokenizer.ggml.merges",
                    path.display()
                )
            })?;
            merges.push((left.to_string(), right.to_string()));
        }
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow!("{}: invalid BPE vocabulary or merges: {e}", path.display()))?;

        let pre = get_str("tokenizer.ggml.pre")
            .map(String::as_str)
            .unwrap_or("default");
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            "qwen2" => Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow!("qwen2 split regex: {e}"))?
                .into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            "default" | "gpt2" | "gpt-2" => ByteLevel::new(false, true, true).into(),
            other => bail!(
                "{}: pre-tokenizer '{other}' is not supported from GGUF metadata; \
                 pass a tokenizer.json instead",
                path.display()
            ),
        };
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let bytes_of_token = byte_level_table(&tokens);
        let mut eos_ids: Vec<u32> = END_TOKEN_NAMES
            .iter()
            .filter_map(|name| tokens.iter().position(|t| t == name).map(|id| id as u32))
            .collect();
        if let Some(id) = metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            && !eos_ids.contains(&id)
        {
            eos_ids.push(id);
        }
        Ok(Tokenizer::with_byte_index(Tokenizer {
            inner,
            bytes_of_token,
            eos_ids,
            byte_level: true,
            regex_boundaries: true,
            ids_by_bytes: Vec::new(),
            source: path.to_path_buf(),
        }))
    }

    fn with_byte_index(mut self) -> Tokenizer {
        let mut ids: Vec<u32> = (0..self.bytes_of_token.len() as u32)
            .filter(|&id| !self.token_bytes(id).is_empty())
            .collect();
        ids.sort_by(|&a, &b| self.token_bytes(a).cmp(self.token_bytes(b)));
        self.ids_by_bytes = ids;
        self
    }

    /// Ids of all tokens whose bytes start with `prefix` (all tokens for an
    /// empty prefix).
    pub fn tokens_starting_with(&self, prefix: &[u8]) -> &[u32] {
        let first = self
            .ids_by_bytes
            .partition_point(|&id| self.token_bytes(id) < prefix);
        let len = self.ids_by_bytes[first..]
            .partition_point(|&id| self.token_bytes(id).starts_with(prefix));
        &self.ids_by_bytes[first..first + len]
    }

    /// The id of a token whose bytes are exactly `bytes`, if any.
    pub fn token_with_bytes(&self, bytes: &[u8]) -> Option<u32> {
        self.tokens_starting_with(bytes)
            .iter()
            .copied()
            .find(|&id| self.token_bytes(id) == bytes)
    }

    /// Token ids of `text`: no BOS, no special tokens added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if text.is_empty() {
            return Vec::new();
        }
        match self.inner.encode_fast(text, false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            // The BPE model has no failure mode on valid UTF-8 with a complete
            // byte alphabet; an error here means a broken tokenizer file, which
            // loading would have rejected. Returning nothing keeps the editor up.
            Err(e) => {
                tracing::error!("tokenizer {} failed to encode: {e}", self.source.display());
                Vec::new()
            }
        }
    }

    /// Text of `ids`. Exact inverse of [`Tokenizer::encode`] for byte-level
    /// tokenizers; a sequence that ends inside a UTF-8 character decodes with
    /// a replacement character there.
    pub fn decode(&self, ids: &[u32]) -> String {
        if self.byte_level {
            String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
        } else {
            self.inner.decode(ids, false).unwrap_or_default()
        }
    }

    /// Concatenated raw bytes of `ids` (unknown ids contribute nothing).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// The raw bytes token `id` stands for; empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes_of_token
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether pre-token boundaries follow the GPT-2/Qwen2 byte-level regex
    /// rules, which lets alignment re-tokenize a window instead of the text.
    pub fn has_regex_boundaries(&self) -> bool {
        self.regex_boundaries
    }

    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn vocab_size(&self) -> usize {
        self.bytes_of_token.len()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Write this tokenizer as a `tokenizer.json`.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner
            .save(path, false)
            .map_err(|e| anyhow!("cannot write tokenizer {}: {e}", path.display()))
    }

    /// The file this tokenizer came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Fail with a message naming both files when a tokenizer cannot serve a
    /// model whose embedding table has `model_vocab_size` rows.
    pub fn check_model_vocab(&self, model_vocab_size: usize, model_path: &Path) -> Result<()> {
        // Models often pad the embedding table past the tokenizer's vocabulary;
        // the reverse means ids the model cannot embed.
        if self.vocab_size() > model_vocab_size {
            bail!(
                "tokenizer {} has {} tokens but model {} has only {} embeddings: \
                 they do not belong together",
                self.source.display(),
                self.vocab_size(),
                model_path.display(),
                model_vocab_size
            );
        }
        Ok(())
    }
}

/// Rows of the model's embedding table: from `token_embd.weight` in a GGUF,
/// or `vocab_size` in a safetensors directory's config.json.
fn model_vocab_rows(weights: &Path) -> Result<Option<usize>> {
    if weights.is_dir() {
        let config_path = weights.join("config.json");
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
        return Ok(config
            .get("vocab_size")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize));
    }
    let (content, _) = super::gguf::open(weights)?;
    // candle lists GGUF dims outermost first: [vocab, hidden].
    Ok(content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|info| info.shape.dims().first().copied()))
}

/// Whether a loaded `tokenizer.json` is one of the byte-level regex
/// pre-tokenizers whose boundaries `predict::align` reasons about: no
/// normalizer, optional digit splitting, then GPT-2's regex (or Qwen2's split
/// followed by a plain byte-level step), and no added token containing
/// whitespace (an added token is matched before pre-tokenization).
fn json_has_regex_boundaries(inner: &tokenizers::Tokenizer) -> bool {
    if inner.get_normalizer().is_some() {
        return false;
    }
    let added_tokens_ok = inner
        .get_added_tokens_decoder()
        .values()
        .all(|t| !t.content.chars().any(char::is_whitespace));
    let steps: Vec<&PreTokenizerWrapper> = match inner.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::Sequence(sequence)) => sequence.as_ref().iter().collect(),
        Some(single) => vec![single],
        None => return false,
    };
    let steps: Vec<&PreTokenizerWrapper> = steps
        .into_iter()
        .filter(|step| !matches!(step, PreTokenizerWrapper::Digits(d) if d.individual_digits))
        .collect();
    let known_shape = match steps.as_slice() {
        [PreTokenizerWrapper::ByteLevel(b)] => b.use_regex && !b.add_prefix_space,
        [
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(b),
        ] => {
            split.pattern == SplitPattern::Regex(QWEN2_SPLIT.to_string())
                && split.behavior == SplitDelimiterBehavior::Isolated
                && !split.invert
                && !b.use_regex
                && !b.add_prefix_space
        }
        _ => false,
    };
    known_shape && added_tokens_ok
}

/// GPT-2's reversible byte <-> printable char mapping: printable Latin-1 bytes
/// map to themselves, the other bytes to code points from U+0100 upward.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_free = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[byte as usize] = if printable {
            byte as char
        } else {
            let c = char::from_u32(next_free).expect("U+0100..U+0143 are valid chars");
            next_free += 1;
            c
        };
    }
    table
}

fn byte_level_table(tokens: &[String]) -> Vec<Vec<u8>> {
    let char_to_byte: HashMap<char, u8> = byte_to_char_table()
        .iter()
        .enumerate()
        .map(|(byte, &c)| (c, byte as u8))
        .collect();
    tokens
        .iter()
        .map(|token| {
            // A token with any char outside the byte alphabet is a special
            // token stored verbatim (e.g. `<｜end▁of▁sentence｜>`).
            let mapped: Option<Vec<u8>> = token
                .chars()
                .map(|c| char_to_byte.get(&c).copied())
                .collect();
            mapped.unwrap_or_else(|| token.as_bytes().to_vec())
        })
        .collect()
}

/// Bytes of a sentencepiece-style token: `▁` is a space, `<0xNN>` a raw byte.
fn sentencepiece_bytes(token: &str) -> Vec<u8> {
    if let Some(hex) = token.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'))
        && hex.len() == 2
        && let Ok(byte) = u8::from_str_radix(hex, 16)
    {
        return vec![byte];
    }
    token.replace('▁', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let table = byte_to_char_table();
        let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn sentencepiece_tokens_map_to_bytes() {
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_bytes("▁def"), b" def");
    }

    #[test]
    fn missing_files_are_named_in_errors() {
        let err = Tokenizer::from_gguf("/nonexistent/model.gguf").unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/model.gguf"),
            "{err:#}"
        );
        let err = Tokenizer::from_json_file("/nonexistent/tokenizer.json").unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/tokenizer.json"),
            "{err:#}"
        );
    }
}
