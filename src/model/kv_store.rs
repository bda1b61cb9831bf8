//! A session's tokens and KV cache as bytes, so that a cache can outlive the
//! process: reopening a file then costs a read instead of a prefill.
//!
//! The layout is a magic number, a format version, then blocks, each
//! `tag (4 bytes) | length (u64 LE) | payload | SHA-256 of tag, length and
//! payload`. Each block is checked on its own, so a cut or a flipped bit is
//! found in the block it hit, and a length field read from a damaged file is
//! never trusted for more than the bytes that are there.
//!
//! Blocks, in order: `HEAD` (JSON [`Header`]: model identity and shape, rope
//! parameters, token count, staleness, storage type), the caller's own
//! blocks (the editor's text and window, say), `TOKS` (u32 LE), per layer
//! `KEYS` and `VALS` (`[n_kv_heads, tokens, head_dim]`), `HIDN` (the kept
//! last hidden states, `[tokens, hidden]`), `END.`. Keys are stored as
//! cached, already rotated to their positions; restoring them needs no rope.
//!
//! Decoding builds a new [`Session`] and hands it over only when every block
//! has been read and checked: a bad entry leaves nothing half-loaded.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{Arch, ModelConfig, RopeLayout};
use super::kv_cache::KvCache;
use super::session::Session;
use super::transformer::Model;

pub const MAGIC: [u8; 8] = *b"PIE-KV\r\n";
/// Bumped whenever the layout or the meaning of a field changes: an entry of
/// another version is dropped, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

pub type Tag = [u8; 4];
/// Caller blocks, in the order they were written.
pub type Extras = Vec<(Tag, Vec<u8>)>;
const HEAD: Tag = *b"HEAD";
const TOKS: Tag = *b"TOKS";
const KEYS: Tag = *b"KEYS";
const VALS: Tag = *b"VALS";
const HIDN: Tag = *b"HIDN";
const END: Tag = *b"END.";
const OWN_TAGS: [Tag; 6] = [HEAD, TOKS, KEYS, VALS, HIDN, END];

const CHECKSUM_LEN: usize = 32;
/// Caller blocks (text, window) larger than this in a header read by
/// [`peek`] mean a damaged length field, not a real block.
const MAX_PEEKED_BLOCK: u64 = 256 << 20;

/// How K/V and hidden states are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// As computed: a load gives the cache back bit for bit.
    #[default]
    F32,
    /// Half the size; predictions may differ slightly from a fresh encoding.
    F16,
}

impl Storage {
    fn bytes_per_value(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }
}

/// Why a stored cache was not used. Every case means the same to the
/// editor (drop the entry, encode cold); tests tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum BadEntry {
    #[error("not a pie-edit KV cache (bad magic number)")]
    Magic,
    #[error("format version {0}; this build reads version {FORMAT_VERSION}")]
    Version(u32),
    #[error("cut short in block {0}")]
    Truncated(String),
    #[error("checksum mismatch in block {0}")]
    Checksum(String),
    #[error("expected block {expected}, found {found}")]
    Layout { expected: String, found: String },
    #[error("made for another model or model shape ({0})")]
    OtherModel(String),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("cannot rebuild the cache: {0}")]
    Rebuild(String),
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// What identifies the weights a cache was computed with: a SHA-256 over
/// the file's size, its first 4 MiB (the GGUF header: metadata, tokenizer,
/// tensor table) and its last 1 MiB (weights). Hashing the whole file would
/// cost a second per 100 MB at every start; a re-quantized or retrained
/// model changes the size, the metadata or the last weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity(String);

const IDENTITY_HEAD: u64 = 4 << 20;
const IDENTITY_TAIL: u64 = 1 << 20;

impl ModelIdentity {
    /// The identity of a `.gguf` file, or of a safetensors directory (every
    /// file in it, by name).
    pub fn of_path(path: &Path) -> std::io::Result<ModelIdentity> {
        let mut hasher = Sha256::new();
        hasher.update(b"pie-edit model identity 1\0");
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                hasher.update(file.file_name().unwrap_or_default().as_encoded_bytes());
                hasher.update([0]);
                hash_file_ends(&mut hasher, &file)?;
            }
        } else {
            hash_file_ends(&mut hasher, path)?;
        }
        Ok(ModelIdentity(hex(&hasher.finalize())))
    }

    /// An identity given by name (tests, and models that are not files).
    pub fn named(name: &str) -> ModelIdentity {
        ModelIdentity(hex(&Sha256::digest(name.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hash_file_ends(hasher: &mut Sha256, path: &Path) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    hasher.update(size.to_le_bytes());
    let mut buf = Vec::new();
    (&mut file).take(IDENTITY_HEAD).read_to_end(&mut buf)?;
    if size > IDENTITY_HEAD {
        let tail_start = size.saturating_sub(IDENTITY_TAIL).max(IDENTITY_HEAD);
        file.seek(SeekFrom::Start(tail_start))?;
        file.take(IDENTITY_TAIL).read_to_end(&mut buf)?;
    }
    hasher.update(&buf);
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `HEAD` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub model: String,
    pub arch: String,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub rope_scaling: f64,
    pub rope_layout: String,
    pub tokens: usize,
    /// First stale slot (see `Staleness`), if any.
    pub stale_from: Option<usize>,
    /// First slot not encoded yet (an open encodes lazily), if any: its
    /// stored K/V mean nothing, and a restored session encodes them.
    #[serde(default)]
    pub unencoded_from: Option<usize>,
    pub storage: Storage,
}

impl Header {
    fn new(
        config: &ModelConfig,
        identity: &ModelIdentity,
        tokens: usize,
        stale_from: Option<usize>,
        storage: Storage,
    ) -> Header {
        Header {
            model: identity.0.clone(),
            arch: match config.arch {
                Arch::Llama => "llama",
                Arch::Qwen2 => "qwen2",
            }
            .into(),
            n_layers: config.n_layers,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            hidden: config.hidden,
            vocab_size: config.vocab_size,
            rope_theta: config.rope_theta,
            rope_scaling: config.rope_scaling,
            rope_layout: match config.rope_layout {
                RopeLayout::Interleaved => "interleaved",
                RopeLayout::NeoX => "neox",
            }
            .into(),
            tokens,
            stale_from,
            unencoded_from: None,
            storage,
        }
    }

    /// Whether this header was written for the same model, and shape.
    fn same_model(&self, other: &Header) -> Result<(), BadEntry> {
        fn model_of(h: &Header) -> (&str, &str, [usize; 5], [u64; 2], &str) {
            (
                &h.model,
                &h.arch,
                [h.n_layers, h.n_kv_heads, h.head_dim, h.hidden, h.vocab_size],
                [h.rope_theta.to_bits(), h.rope_scaling.to_bits()],
                &h.rope_layout,
            )
        }
        if model_of(self) != model_of(other) {
            let what = if self.model != other.model {
                format!(
                    "model {} is not {}",
                    short(&self.model),
                    short(&other.model)
                )
            } else {
                "same file identity, different shape or rope".to_string()
            };
            return Err(BadEntry::OtherModel(what));
        }
        Ok(())
    }

    /// Bytes of K/V and hidden states per token, as stored.
    pub fn bytes_per_token(&self) -> usize {
        (2 * self.n_layers * self.n_kv_heads * self.head_dim + self.hidden)
            * self.storage.bytes_per_value()
            + 4
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn tag_name(tag: &Tag) -> String {
    String::from_utf8_lossy(tag).into_owned()
}

fn checksum(tag: &Tag, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher.update((payload.len() as u64).to_le_bytes());
    hasher.update(payload);
    hasher.finalize().into()
}

fn push_block(out: &mut Vec<u8>, tag: Tag, payload: &[u8]) {
    out.extend_from_slice(&tag);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(&tag, payload));
}

fn float_bytes(t: &Tensor, storage: Storage) -> Result<Vec<u8>> {
    let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
    let mut out = Vec::with_capacity(values.len() * storage.bytes_per_value());
    match storage {
        Storage::F32 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Storage::F16 => {
            for v in values {
                out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// Decode stored values into `out` (as many as it holds).
fn floats_into(bytes: &[u8], storage: Storage, out: &mut [f32]) {
    match storage {
        Storage::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Storage::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
    }
}

/// Stored rows (`groups` groups of `rows` rows of `width` values) laid out
/// in a buffer of `capacity` rows per group, as the cache keeps them. The
/// buffer is allocated zeroed (pages the OS hands out lazily), and each
/// value is written once: no zero-fill pass, no intermediate copies.
fn rows_into_capacity(
    payload: &[u8],
    storage: Storage,
    groups: usize,
    rows: usize,
    width: usize,
    capacity: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; groups * capacity * width];
    let stored_group = rows * width * storage.bytes_per_value();
    for g in 0..groups {
        let src = &payload[g * stored_group..(g + 1) * stored_group];
        let dst = &mut out[g * capacity * width..(g * capacity + rows) * width];
        floats_into(src, storage, dst);
    }
    out
}

/// Serialize `session` with `extras` (caller blocks, tags other than this
/// format's own) after the header.
pub fn encode(
    session: &Session,
    identity: &ModelIdentity,
    storage: Storage,
    extras: &[(Tag, &[u8])],
) -> Result<Vec<u8>> {
    if let Some((tag, _)) = extras.iter().find(|(t, _)| OWN_TAGS.contains(t)) {
        anyhow::bail!("caller block tag {} is reserved", tag_name(tag));
    }
    let model = session.model();
    let config = model.config();
    let tokens = session.tokens();
    let n = tokens.len();
    let mut header = Header::new(
        config,
        identity,
        n,
        session.staleness().map(|s| s.from),
        storage,
    );
    header.unencoded_from = (session.unencoded_len() > 0).then(|| n - session.unencoded_len());
    let extra_len: usize = extras.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(header.bytes_per_token() * n + extra_len + 4096);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    push_block(&mut out, HEAD, &serde_json::to_vec(&header)?);
    for (tag, payload) in extras {
        push_block(&mut out, *tag, payload);
    }
    let token_bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    push_block(&mut out, TOKS, &token_bytes);
    let cache = session.cache();
    for layer in 0..config.n_layers {
        let (k, v) = cache.view(layer, n)?;
        push_block(&mut out, KEYS, &float_bytes(&k, storage)?);
        push_block(&mut out, VALS, &float_bytes(&v, storage)?);
    }
    push_block(
        &mut out,
        HIDN,
        &float_bytes(&cache.hidden_view(n)?, storage)?,
    );
    push_block(&mut out, END, &[]);
    Ok(out)
}

/// Blocks of an entry held in memory, each checked as it is read.
struct Blocks<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Blocks<'a> {
    fn open(bytes: &'a [u8]) -> Result<Blocks<'a>, BadEntry> {
        if bytes.len() < MAGIC.len() + 4 {
            return Err(BadEntry::Truncated("magic".into()));
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(BadEntry::Magic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(BadEntry::Version(version));
        }
        Ok(Blocks { bytes, pos: 12 })
    }

    fn next(&mut self) -> Result<(Tag, &'a [u8]), BadEntry> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < 12 {
            return Err(BadEntry::Truncated(format!("after byte {}", self.pos)));
        }
        let tag: Tag = rest[..4].try_into().expect("4 bytes");
        let len = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
        let available = (rest.len() - 12) as u64;
        if len > available || available - len < CHECKSUM_LEN as u64 {
            return Err(BadEntry::Truncated(tag_name(&tag)));
        }
        let len = len as usize;
        let payload = &rest[12..12 + len];
        let stored = &rest[12 + len..12 + len + CHECKSUM_LEN];
        if checksum(&tag, payload) != stored {
            return Err(BadEntry::Checksum(tag_name(&tag)));
        }
        self.pos += 12 + len + CHECKSUM_LEN;
        Ok((tag, payload))
    }

    fn expect(&mut self, expected: Tag) -> Result<&'a [u8], BadEntry> {
        let (tag, payload) = self.next()?;
        if tag != expected {
            return Err(BadEntry::Layout {
                expected: tag_name(&expected),
                found: tag_name(&tag),
            });
        }
        Ok(payload)
    }
}

/// A decoded entry.
pub struct Decoded {
    pub session: Session,
    pub header: Header,
    pub extras: Extras,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Rebuild a session for `model` from `bytes`; every block is checked, and
/// the entry must have been written for this model (`identity`) and shape.
pub fn decode(
    bytes: &[u8],
    model: &Arc<Model>,
    identity: &ModelIdentity,
) -> Result<Decoded, BadEntry> {
    let mut blocks = Blocks::open(bytes)?;
    let header: Header = serde_json::from_slice(blocks.expect(HEAD)?)
        .map_err(|e| BadEntry::Malformed(format!("header: {e}")))?;
    let config = model.config();
    header.same_model(&Header::new(config, identity, 0, None, header.storage))?;
    let n = header.tokens;
    let mut extras = Vec::new();
    let token_bytes = loop {
        let (tag, payload) = blocks.next()?;
        if tag == TOKS {
            break payload;
        }
        if OWN_TAGS.contains(&tag) {
            return Err(BadEntry::Layout {
                expected: tag_name(&TOKS),
                found: tag_name(&tag),
            });
        }
        extras.push((tag, payload.to_vec()));
    };
    if token_bytes.len() != 4 * n {
        return Err(BadEntry::Malformed(format!(
            "{} token bytes for {n} tokens",
            token_bytes.len()
        )));
    }
    let tokens: Vec<u32> = token_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
        return Err(BadEntry::Malformed(format!(
            "token id {bad} out of vocabulary"
        )));
    }
    let rebuild = |e: anyhow::Error| BadEntry::Rebuild(format!("{e:#}"));
    let storage = header.storage;
    let device = model.device();
    // The room a session that encoded these tokens would have grown to
    // (by doubling), with some left for the edits that follow a load:
    // growing a full cache copies all of it.
    let capacity = (n + 256).next_power_of_two();
    let (heads, head_dim) = (config.n_kv_heads, config.head_dim);
    let tensor = |payload: &[u8], groups: usize, width: usize, what: Tag| {
        let expected = groups * n * width * storage.bytes_per_value();
        if payload.len() != expected {
            return Err(BadEntry::Malformed(format!(
                "block {} holds {} bytes, expected {expected}",
                tag_name(&what),
                payload.len(),
            )));
        }
        let values = rows_into_capacity(payload, storage, groups, n, width, capacity);
        Tensor::from_vec(values, (groups, capacity, width), device).map_err(|e| rebuild(e.into()))
    };
    let mut layers = Vec::with_capacity(config.n_layers);
    for _ in 0..config.n_layers {
        let k = tensor(blocks.expect(KEYS)?, heads, head_dim, KEYS)?;
        let v = tensor(blocks.expect(VALS)?, heads, head_dim, VALS)?;
        layers.push((k, v));
    }
    let hidden = tensor(blocks.expect(HIDN)?, 1, config.hidden, HIDN)?
        .squeeze(0)
        .map_err(|e| rebuild(e.into()))?;
    blocks.expect(END)?;
    if blocks.pos != bytes.len() {
        return Err(BadEntry::Malformed(format!(
            "{} bytes after the end block",
            bytes.len() - blocks.pos
        )));
    }
    let cache = KvCache::from_tensors(layers, hidden, n).map_err(rebuild)?;
    let session = Session::from_cache(
        model.clone(),
        cache,
        tokens,
        header.stale_from,
        header.unencoded_from,
    )
    .map_err(rebuild)?;
    Ok(Decoded {
        session,
        header,
        extras,
    })
}

/// The header and caller blocks of an entry, read from its start without
/// loading its K/V (for listing a cache directory).
pub fn peek(mut reader: impl Read) -> Result<(Header, Extras), BadEntry> {
    let mut start = [0u8; 12];
    reader
        .read_exact(&mut start)
        .map_err(|_| BadEntry::Truncated("magic".into()))?;
    Blocks::open(&start)?;
    let read_block = |reader: &mut dyn Read| -> Result<(Tag, Vec<u8>), BadEntry> {
        let mut head = [0u8; 12];
        reader
            .read_exact(&mut head)
            .map_err(|_| BadEntry::Truncated("block header".into()))?;
        let tag: Tag = head[..4].try_into().expect("4 bytes");
        let len = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
        if tag == TOKS {
            return Ok((tag, Vec::new()));
        }
        if len > MAX_PEEKED_BLOCK {
            return Err(BadEntry::Malformed(format!(
                "block {} claims {len} bytes",
                tag_name(&tag)
            )));
        }
        let mut payload = vec![0u8; len as usize + CHECKSUM_LEN];
        reader
            .read_exact(&mut payload)
            .map_err(|_| BadEntry::Truncated(tag_name(&tag)))?;
        let stored = payload.split_off(len as usize);
        if checksum(&tag, &payload) != stored.as_slice() {
            return Err(BadEntry::Checksum(tag_name(&tag)));
        }
        Ok((tag, payload))
    };
    let (tag, payload) = read_block(&mut reader)?;
    if tag != HEAD {
        return Err(BadEntry::Layout {
            expected: tag_name(&HEAD),
            found: tag_name(&tag),
        });
    }
    let header: Header = serde_json::from_slice(&payload)
        .map_err(|e| BadEntry::Malformed(format!("header: {e}")))?;
    let mut extras = Vec::new();
    loop {
        let (tag, payload) = read_block(&mut reader)?;
        if tag == TOKS {
            return Ok((header, extras));
        }
        extras.push((tag, payload));
    }
}
