//! GGUF files of real models' exact shapes with random weights, for speed
//! measurements on machines that cannot download the real ones: speed does
//! not depend on the weights' values, only on the shapes and the storage
//! types. The files load in our engine and in llama.cpp alike.
//!
//! The writer streams: each matrix is drawn, quantized and written a slab of
//! rows at a time, so memory stays at a few slabs whatever the model's size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// A qwen2-family model's shape, as its GGUF metadata states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context: usize,
}

/// Qwen2.5-Coder-0.5B (its config.json: tied embeddings, q/k/v biases).
pub const QWEN25_CODER_0_5B: Shape = Shape {
    name: "qwen2.5-coder-0.5b",
    hidden: 896,
    layers: 24,
    heads: 14,
    kv_heads: 2,
    head_dim: 64,
    ffn: 4864,
    vocab: 151_936,
    rope_theta: 1e6,
    rms_eps: 1e-6,
    context: 32_768,
};

/// Qwen2.5-Coder-1.5B (its config.json: tied embeddings, q/k/v biases).
pub const QWEN25_CODER_1_5B: Shape = Shape {
    name: "qwen2.5-coder-1.5b",
    hidden: 1536,
    layers: 28,
    heads: 12,
    kv_heads: 2,
    head_dim: 128,
    ffn: 8960,
    vocab: 151_936,
    rope_theta: 1e6,
    rms_eps: 1e-6,
    context: 32_768,
};

pub const PRESETS: &[Shape] = &[QWEN25_CODER_0_5B, QWEN25_CODER_1_5B];

/// The preset called `name` (case-insensitive).
pub fn preset(name: &str) -> Result<Shape> {
    PRESETS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .copied()
        .with_context(|| {
            let names: Vec<&str> = PRESETS.iter().map(|s| s.name).collect();
            format!("no model shape `{name}` (known: {})", names.join(", "))
        })
}

/// How the matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every matrix Q8_0 (llama.cpp's `Q8_0` file type).
    Q8_0,
    /// llama.cpp's `Q4_K_M` choice, from `llama_tensor_get_type` in
    /// llama-quant.cpp: Q4_K, but Q6_K for the tied embedding/output and for
    /// `attn_v` and `ffn_down` in the layers `use_more_bits` picks; a matrix
    /// whose rows are not a multiple of 256 falls back as llama.cpp does
    /// (Q4_K to Q5_0, Q6_K to Q8_0). So the 0.5B shape (hidden 896) gets
    /// mostly Q5_0, as the published Q4_K_M file of that model has.
    Q4KM,
}

impl std::str::FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Mix::Q8_0),
            "q4_k_m" => Ok(Mix::Q4KM),
            other => bail!("unknown dtype `{other}` (known: q8_0, q4_k_m)"),
        }
    }
}

impl Mix {
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`).
    fn file_type(self) -> u32 {
        match self {
            Mix::Q8_0 => 7,
            Mix::Q4KM => 15,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mix::Q8_0 => "Q8_0",
            Mix::Q4KM => "Q4_K_M",
        }
    }
}

/// llama.cpp's layers that get more bits in Q4_K_M.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8
        || layer >= 7 * layers / 8
        || (layer as isize - (layers / 8) as isize) % 3 == 2
}

/// A k-quant needs rows of whole 256-element super-blocks.
fn fit(dtype: GgmlDType, cols: usize) -> GgmlDType {
    if cols.is_multiple_of(dtype.block_size()) {
        return dtype;
    }
    match dtype {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        other => other,
    }
}

/// Where the tokenizer metadata comes from.
pub enum Vocab<'a> {
    /// Copy `tokenizer.ggml.*` from another GGUF (its tokens, merges and
    /// pre-tokenizer), padded with unused tokens to the shape's vocabulary,
    /// so that real text tokenizes as that model's tokenizer would.
    FromGguf(&'a Path),
    /// The 256 byte tokens, one merge and `<|endoftext|>`: enough for both
    /// engines to load and tokenize, with no file needed.
    Bytes,
}

/// One tensor of the file, as its header lists it.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    /// Rows then columns (candle's order; GGUF stores them reversed).
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
    /// Uniform draws in `[-scale, scale)` around `offset`.
    scale: f32,
    offset: f32,
}

impl TensorEntry {
    fn bytes(&self) -> usize {
        let n: usize = self.dims.iter().product();
        n / self.dtype.block_size() * self.dtype.type_size()
    }
}

/// The tensors of `shape` stored as `mix`, in the order llama.cpp writes them.
pub fn tensors(shape: &Shape, mix: Mix) -> Vec<TensorEntry> {
    let s = shape;
    let (q_dim, kv_dim) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let base = match mix {
        Mix::Q8_0 => GgmlDType::Q8_0,
        Mix::Q4KM => GgmlDType::Q4K,
    };
    let more = |layer: usize| match mix {
        Mix::Q4KM if use_more_bits(layer, s.layers) => GgmlDType::Q6K,
        _ => base,
    };
    let output = match mix {
        Mix::Q8_0 => GgmlDType::Q8_0,
        Mix::Q4KM => GgmlDType::Q6K,
    };
    // Scales as 1/sqrt(fan-in) keep the activations in range through the
    // layers, so neither engine meets infinities or NaNs.
    let fan_in = |n: usize| 1.0 / (n as f32).sqrt();
    let mut out = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize, dtype: GgmlDType, scale: f32| {
        out.push(TensorEntry {
            name,
            dims: vec![rows, cols],
            dtype: fit(dtype, cols),
            scale,
            offset: 0.0,
        });
    };
    matrix("token_embd.weight".into(), s.vocab, s.hidden, output, 0.05);
    let mut rest = Vec::new();
    for l in 0..s.layers {
        let p = format!("blk.{l}");
        let h = fan_in(s.hidden);
        rest.push((format!("{p}.attn_q.weight"), q_dim, s.hidden, base, h));
        rest.push((format!("{p}.attn_k.weight"), kv_dim, s.hidden, base, h));
        rest.push((format!("{p}.attn_v.weight"), kv_dim, s.hidden, more(l), h));
        rest.push((
            format!("{p}.attn_output.weight"),
            s.hidden,
            q_dim,
            base,
            fan_in(q_dim),
        ));
        rest.push((format!("{p}.ffn_gate.weight"), s.ffn, s.hidden, base, h));
        rest.push((format!("{p}.ffn_up.weight"), s.ffn, s.hidden, base, h));
        rest.push((
            format!("{p}.ffn_down.weight"),
            s.hidden,
            s.ffn,
            more(l),
            fan_in(s.ffn),
        ));
    }
    for (name, rows, cols, dtype, scale) in rest {
        matrix(name, rows, cols, dtype, scale);
    }
    let mut vector = |name: String, len: usize, scale: f32, offset: f32| {
        out.push(TensorEntry {
            name,
            dims: vec![len],
            dtype: GgmlDType::F32,
            scale,
            offset,
        });
    };
    vector("output_norm.weight".into(), s.hidden, 0.1, 1.0);
    for l in 0..s.layers {
        let p = format!("blk.{l}");
        vector(format!("{p}.attn_norm.weight"), s.hidden, 0.1, 1.0);
        vector(format!("{p}.ffn_norm.weight"), s.hidden, 0.1, 1.0);
        vector(format!("{p}.attn_q.bias"), q_dim, 0.2, 0.0);
        vector(format!("{p}.attn_k.bias"), kv_dim, 0.2, 0.0);
        vector(format!("{p}.attn_v.bias"), kv_dim, 0.2, 0.0);
    }
    out
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    pub tensors: Vec<TensorEntry>,
    pub bytes: u64,
    /// Tokens copied from the vocabulary source before the padding.
    pub real_tokens: usize,
}

/// Write a GGUF of `shape` with random weights stored as `mix` to `path`.
pub fn write(path: &Path, shape: &Shape, mix: Mix, vocab: Vocab) -> Result<Written> {
    let tensors = tensors(shape, mix);
    let (tokenizer, real_tokens) = tokenizer_metadata(&vocab, shape.vocab)?;
    let a = "qwen2";
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (
            "general.name".into(),
            Value::String(format!("{} random weights {}", shape.name, mix.label())),
        ),
        ("general.file_type".into(), Value::U32(mix.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        (format!("{a}.block_count"), u(shape.layers)),
        (format!("{a}.context_length"), u(shape.context)),
        (format!("{a}.embedding_length"), u(shape.hidden)),
        (format!("{a}.feed_forward_length"), u(shape.ffn)),
        (format!("{a}.attention.head_count"), u(shape.heads)),
        (format!("{a}.attention.head_count_kv"), u(shape.kv_heads)),
        (format!("{a}.rope.freq_base"), Value::F32(shape.rope_theta)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(shape.rms_eps),
        ),
    ];
    md.extend(tokenizer);

    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write_header(&mut w, &md, &tensors)?;
    for (index, t) in tensors.iter().enumerate() {
        write_tensor(&mut w, t, index as u64)
            .with_context(|| format!("writing {} to {}", t.name, path.display()))?;
    }
    w.flush()?;
    let bytes = w.stream_position()?;
    Ok(Written {
        tensors,
        bytes,
        real_tokens,
    })
}

const ALIGNMENT: u64 = 32;

fn padding(len: u64) -> usize {
    (len.next_multiple_of(ALIGNMENT) - len) as usize
}

fn write_header(w: &mut impl Write, md: &[(String, Value)], tensors: &[TensorEntry]) -> Result<()> {
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(md.len() as u64).to_le_bytes())?;
    let mut at = 24u64;
    for (key, value) in md {
        at += write_string(w, key)?;
        w.write_all(&value_type(value)?.to_le_bytes())?;
        at += 4 + write_value(w, value)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        at += write_string(w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for &d in t.dims.iter().rev() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&ggml_type_id(t.dtype)?.to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        at += 4 + 8 * t.dims.len() as u64 + 4 + 8;
        let bytes = t.bytes() as u64;
        offset += bytes + padding(bytes) as u64;
    }
    w.write_all(&vec![0u8; padding(at)])?;
    Ok(())
}

/// Rows per slab: about 4M weights, split among the threads.
const SLAB_WEIGHTS: usize = 1 << 22;

fn write_tensor(w: &mut impl Write, t: &TensorEntry, index: u64) -> Result<()> {
    let (rows, cols) = match t.dims[..] {
        [rows, cols] => (rows, cols),
        [len] => (1, len),
        _ => bail!("{} is neither a matrix nor a vector", t.name),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slab = (SLAB_WEIGHTS / cols).clamp(1, rows);
    let mut written = 0;
    for start in (0..rows).step_by(slab) {
        let end = (start + slab).min(rows);
        let per = (end - start).div_ceil(threads);
        let parts: Vec<Result<Vec<u8>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (start..end)
                .step_by(per)
                .map(|from| {
                    let to = (from + per).min(end);
                    scope.spawn(move || quantized_rows(t, index, from, to, cols))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a quantizing thread panicked"))
                })
                .collect()
        });
        for part in parts {
            let part = part?;
            w.write_all(&part)?;
            written += part.len();
        }
    }
    ensure!(
        written == t.bytes(),
        "{}: wrote {written} bytes, expected {}",
        t.name,
        t.bytes()
    );
    w.write_all(&vec![0u8; padding(written as u64)])?;
    Ok(())
}

/// Rows `from..to` of tensor number `index`, drawn and quantized. Each row's
/// draws depend only on (index, row), so the file is the same whatever the
/// slab size and thread count.
fn quantized_rows(
    t: &TensorEntry,
    index: u64,
    from: usize,
    to: usize,
    cols: usize,
) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity((to - from) * cols);
    for row in from..to {
        let mut state = (index << 40 ^ row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        data.extend((0..cols).map(|_| {
            // xorshift64*: cheap, and good enough to look like weights.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            let u = bits as f32 / (1u64 << 23) as f32 - 1.0;
            t.offset + t.scale * u
        }));
    }
    let dims = if t.dims.len() == 1 {
        vec![cols]
    } else {
        vec![to - from, cols]
    };
    let tensor = Tensor::from_vec(data, dims, &Device::Cpu)?;
    let q = QTensor::quantize(&tensor, t.dtype)?;
    Ok(q.data()?.into_owned())
}

/// GGUF's type ids (`enum ggml_type`); candle keeps its mapping private.
fn ggml_type_id(dtype: GgmlDType) -> Result<u32> {
    Ok(match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
        #[allow(unreachable_patterns)]
        other => bail!("no GGUF type id for {other:?}"),
    })
}

fn value_type(v: &Value) -> Result<u32> {
    Ok(match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    })
}

fn write_string(w: &mut impl Write, s: &str) -> Result<u64> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())?;
    Ok(8 + s.len() as u64)
}

/// Bytes written for `v`'s payload (its type id not included).
fn write_value(w: &mut impl Write, v: &Value) -> Result<u64> {
    Ok(match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()).map(|_| 1)?,
        Value::I8(x) => w.write_all(&x.to_le_bytes()).map(|_| 1)?,
        Value::U16(x) => w.write_all(&x.to_le_bytes()).map(|_| 2)?,
        Value::I16(x) => w.write_all(&x.to_le_bytes()).map(|_| 2)?,
        Value::U32(x) => w.write_all(&x.to_le_bytes()).map(|_| 4)?,
        Value::I32(x) => w.write_all(&x.to_le_bytes()).map(|_| 4)?,
        Value::F32(x) => w.write_all(&x.to_le_bytes()).map(|_| 4)?,
        Value::U64(x) => w.write_all(&x.to_le_bytes()).map(|_| 8)?,
        Value::I64(x) => w.write_all(&x.to_le_bytes()).map(|_| 8)?,
        Value::F64(x) => w.write_all(&x.to_le_bytes()).map(|_| 8)?,
        Value::Bool(x) => w.write_all(&[u8::from(*x)]).map(|_| 1)?,
        Value::String(s) => write_string(w, s)?,
        Value::Array(items) => {
            let elem = match items.first() {
                Some(first) => value_type(first)?,
                None => 4,
            };
            w.write_all(&elem.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            let mut n = 12;
            for item in items {
                ensure!(value_type(item)? == elem, "an array mixes value types");
                n += write_value(w, item)?;
            }
            n
        }
    })
}

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_UNUSED: i32 = 5;

/// The `tokenizer.ggml.*` entries for a vocabulary of `size` tokens, and how
/// many of them are real (the rest are `[PAD{id}]`, unused, as llama.cpp's
/// converter pads a vocabulary to the embedding's rows).
fn tokenizer_metadata(vocab: &Vocab, size: usize) -> Result<(Vec<(String, Value)>, usize)> {
    let mut md: HashMap<String, Value> = HashMap::new();
    match vocab {
        Vocab::FromGguf(path) => {
            let (content, _) = super::gguf::open(path)?;
            for (key, value) in content.metadata {
                if key.starts_with("tokenizer.ggml.") {
                    md.insert(key, value);
                }
            }
            ensure!(
                md.contains_key("tokenizer.ggml.tokens")
                    && md.contains_key("tokenizer.ggml.merges"),
                "{} has no tokenizer tokens and merges to copy",
                path.display()
            );
        }
        Vocab::Bytes => {
            let mut tokens: Vec<String> = (0..=255u8).map(byte_char).map(String::from).collect();
            tokens.push(format!("{0}{0}", byte_char(b' ')));
            let eos = tokens.len() as u32;
            tokens.push("<|endoftext|>".into());
            let mut types = vec![TOKEN_NORMAL; tokens.len()];
            types[eos as usize] = TOKEN_CONTROL;
            let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
            md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
            md.insert("tokenizer.ggml.pre".into(), Value::String("qwen2".into()));
            md.insert("tokenizer.ggml.tokens".into(), strings(tokens));
            md.insert(
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            );
            let space = byte_char(b' ');
            md.insert(
                "tokenizer.ggml.merges".into(),
                strings(vec![format!("{space} {space}")]),
            );
            md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(eos));
            md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(eos));
        }
    }
    let Some(Value::Array(tokens)) = md.get_mut("tokenizer.ggml.tokens") else {
        bail!("tokenizer.ggml.tokens is not a list");
    };
    let real = tokens.len();
    ensure!(
        real <= size,
        "the vocabulary has {real} tokens, more than the shape's {size}"
    );
    tokens.extend((real..size).map(|id| Value::String(format!("[PAD{id}]"))));
    if let Some(Value::Array(types)) = md.get_mut("tokenizer.ggml.token_type") {
        let pad = match types.first() {
            Some(Value::U32(_)) => Value::U32(TOKEN_UNUSED as u32),
            _ => Value::I32(TOKEN_UNUSED),
        };
        types.resize(size, pad);
    }
    if let Some(Value::Array(scores)) = md.get_mut("tokenizer.ggml.scores") {
        scores.resize(size, Value::F32(0.0));
    }
    let mut md: Vec<(String, Value)> = md.into_iter().collect();
    md.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((md, real))
}

/// GPT-2's byte-level alphabet: printable bytes stand for themselves, the
/// rest map to code points from U+0100 up.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A qwen2 shape small enough to write and load in a test, with rows of
    /// 256 (k-quants fit) and 96 (they fall back) columns.
    const SMALL: Shape = Shape {
        name: "small",
        hidden: 256,
        layers: 8,
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        ffn: 96 * 4,
        vocab: 1000,
        rope_theta: 1e6,
        rms_eps: 1e-6,
        context: 4096,
    };

    #[test]
    fn q4_k_m_follows_llama_cpp_choice() {
        let by_name = |shape: &Shape| -> HashMap<String, GgmlDType> {
            tensors(shape, Mix::Q4KM)
                .into_iter()
                .map(|t| (t.name, t.dtype))
                .collect()
        };
        let big = by_name(&QWEN25_CODER_1_5B);
        assert_eq!(big["token_embd.weight"], GgmlDType::Q6K);
        assert_eq!(big["blk.5.attn_q.weight"], GgmlDType::Q4K);
        // use_more_bits(28 layers): 0..3, 24.., and every third from 5.
        assert_eq!(big["blk.0.ffn_down.weight"], GgmlDType::Q6K);
        assert_eq!(big["blk.5.attn_v.weight"], GgmlDType::Q6K);
        assert_eq!(big["blk.6.attn_v.weight"], GgmlDType::Q4K);
        assert_eq!(big["blk.27.ffn_down.weight"], GgmlDType::Q6K);
        // Rows of 896 do not fit 256-element super-blocks.
        let small = by_name(&QWEN25_CODER_0_5B);
        assert_eq!(small["token_embd.weight"], GgmlDType::Q8_0);
        assert_eq!(small["blk.5.attn_q.weight"], GgmlDType::Q5_0);
        assert_eq!(small["blk.1.attn_output.weight"], GgmlDType::Q5_0);
        assert_eq!(small["blk.0.ffn_down.weight"], GgmlDType::Q6K);
        assert_eq!(small["blk.6.ffn_down.weight"], GgmlDType::Q4K);
        assert_eq!(small["blk.0.attn_q.bias"], GgmlDType::F32);
    }

    #[test]
    fn presets_have_the_published_shapes() {
        let count = |s: &Shape| -> usize {
            tensors(s, Mix::Q8_0)
                .iter()
                .map(|t| t.dims.iter().product::<usize>())
                .sum()
        };
        // The model cards: 0.49B and 1.54B parameters (tied embeddings).
        assert_eq!(count(&QWEN25_CODER_0_5B) / 10_000_000, 49);
        assert_eq!(count(&QWEN25_CODER_1_5B) / 10_000_000, 154);
        assert_eq!(preset("Qwen2.5-Coder-1.5B").unwrap(), QWEN25_CODER_1_5B);
        assert!(preset("qwen9").is_err());
    }

    fn written_model_loads(mix: Mix) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.gguf");
        let written = write(&path, &SMALL, mix, Vocab::Bytes).unwrap();
        assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(written.real_tokens, 258);

        let (content, _) = crate::model::gguf::open(&path).unwrap();
        for t in &written.tensors {
            let info = &content.tensor_infos[&t.name];
            assert_eq!(info.shape.dims(), &t.dims[..], "{}", t.name);
            assert_eq!(info.ggml_dtype, t.dtype, "{}", t.name);
        }
        assert_eq!(content.tensor_infos.len(), 2 + 12 * SMALL.layers);

        let model =
            crate::model::Model::load(&path, &crate::model::LoadOptions::default()).unwrap();
        let c = model.config();
        assert_eq!(c.arch, crate::model::Arch::Qwen2);
        assert_eq!(
            (
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                c.hidden,
                c.intermediate
            ),
            (8, 4, 2, 64, 256, 384)
        );
        assert_eq!((c.vocab_size, c.context_length), (1000, 4096));
        assert_eq!(c.rope_theta, 1e6);
        assert!((c.rms_eps - 1e-6).abs() < 1e-12);
        assert_eq!(c.eos_id, Some(257));

        let tokenizer = crate::model::Tokenizer::from_gguf(&path).unwrap();
        assert_eq!(tokenizer.vocab_size(), 1000);
        let ids = tokenizer.encode("def f(x):  return x\n");
        assert_eq!(tokenizer.decode(&ids), "def f(x):  return x\n");

        // The random weights give finite logits, so both engines run as on
        // a real model.
        let mut session = crate::model::Session::new(std::sync::Arc::new(model)).unwrap();
        session.reset(&ids).unwrap();
        let logits = session.next_logits(ids.len()).unwrap();
        assert!(logits.iter().all(|x| x.is_finite()));
        assert!(logits.iter().any(|&x| x != logits[0]));
    }

    #[test]
    fn a_written_q8_0_model_loads_with_its_shape() {
        written_model_loads(Mix::Q8_0);
    }

    #[test]
    fn a_written_q4_k_m_model_loads_with_its_shape() {
        written_model_loads(Mix::Q4KM);
    }

    #[test]
    fn writing_does_not_depend_on_slabs_or_threads() {
        let t = &tensors(&SMALL, Mix::Q4KM)[1];
        let whole = quantized_rows(t, 1, 0, 8, t.dims[1]).unwrap();
        let mut parts = quantized_rows(t, 1, 0, 3, t.dims[1]).unwrap();
        parts.extend(quantized_rows(t, 1, 3, 8, t.dims[1]).unwrap());
        assert_eq!(whole, parts);
    }
}
