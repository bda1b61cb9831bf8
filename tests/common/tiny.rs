//! Small random-weight llama/qwen2 models, written as GGUF inside a test.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The shape of a tiny model. `heads * head_dim == hidden`, as candle's GGUF
/// readers assume.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub vocab: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub layers: usize,
    pub rope_theta: f32,
}

/// The model of the PIE exactness tests.
pub const TINY: Shape = Shape {
    vocab: 61,
    hidden: 32,
    heads: 4,
    kv_heads: 2,
    head_dim: 8,
    ffn: 64,
    layers: 3,
    rope_theta: 10_000.0,
};

/// Weights drawn with a fixed per-name seed so every variant is reproducible.
pub fn random(shape: &[usize], scale: f64, offset: f64, seed: u64) -> Tensor {
    // A tiny LCG keeps the weights independent of candle's global RNG.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // The top 32 bits, as a uniform draw from [-1, 1).
            let u = ((state >> 32) as f64) / ((1u64 << 31) as f64) - 1.0;
            (offset + scale * u) as f32
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Weights by short name (`embed`, `norm`, `{layer}.q`, ...; see
/// [`gguf_name`]).
pub struct TinyWeights {
    pub shape: Shape,
    pub tensors: Vec<(String, Tensor)>,
}

/// Random weights for `s`, with q/k/v biases when `with_bias` (qwen2). The
/// matrices' scales shrink with their input width (as `1/sqrt(width)`,
/// relative to [`TINY`]) so that activations stay in range in wider models.
pub fn tiny_weights(s: Shape, with_bias: bool) -> TinyWeights {
    let mut tensors = Vec::new();
    let mut seed = 1;
    let mut add = |name: String, shape: &[usize], scale: f64, offset: f64| {
        seed += 1;
        tensors.push((name, random(shape, scale, offset, seed)));
    };
    let width = |ref_width: usize, width: usize| (ref_width as f64 / width as f64).sqrt();
    let (q_dim, kv_dim) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let in_hidden = width(TINY.hidden, s.hidden);
    let in_q = width(TINY.heads * TINY.head_dim, q_dim);
    let in_ffn = width(TINY.ffn, s.ffn);
    add("embed".into(), &[s.vocab, s.hidden], 1.0, 0.0);
    add("norm".into(), &[s.hidden], 0.1, 1.0);
    for l in 0..s.layers {
        add(format!("{l}.q"), &[q_dim, s.hidden], 0.4 * in_hidden, 0.0);
        add(format!("{l}.k"), &[kv_dim, s.hidden], 0.4 * in_hidden, 0.0);
        add(format!("{l}.v"), &[kv_dim, s.hidden], 0.4 * in_hidden, 0.0);
        add(format!("{l}.o"), &[s.hidden, q_dim], 0.3 * in_q, 0.0);
        add(
            format!("{l}.gate"),
            &[s.ffn, s.hidden],
            0.3 * in_hidden,
            0.0,
        );
        add(format!("{l}.up"), &[s.ffn, s.hidden], 0.3 * in_hidden, 0.0);
        add(format!("{l}.down"), &[s.hidden, s.ffn], 0.3 * in_ffn, 0.0);
        add(format!("{l}.attn_norm"), &[s.hidden], 0.1, 1.0);
        add(format!("{l}.ffn_norm"), &[s.hidden], 0.1, 1.0);
        if with_bias {
            add(format!("{l}.bq"), &[q_dim], 0.2, 0.0);
            add(format!("{l}.bk"), &[kv_dim], 0.2, 0.0);
            add(format!("{l}.bv"), &[kv_dim], 0.2, 0.0);
        }
    }
    TinyWeights { shape: s, tensors }
}

/// The GGUF tensor name of a short weight name.
pub fn gguf_name(short: &str) -> String {
    match short {
        "embed" => "token_embd.weight".into(),
        "norm" => "output_norm.weight".into(),
        _ => {
            let (l, what) = short.split_once('.').unwrap();
            let name = match what {
                "q" => "attn_q.weight",
                "k" => "attn_k.weight",
                "v" => "attn_v.weight",
                "o" => "attn_output.weight",
                "gate" => "ffn_gate.weight",
                "up" => "ffn_up.weight",
                "down" => "ffn_down.weight",
                "attn_norm" => "attn_norm.weight",
                "ffn_norm" => "ffn_norm.weight",
                "bq" => "attn_q.bias",
                "bk" => "attn_k.bias",
                "bv" => "attn_v.bias",
                other => panic!("unknown {other}"),
            };
            format!("blk.{l}.{name}")
        }
    }
}

/// Write `weights` as a GGUF of architecture `arch`, matrices in `dtype` (the
/// output layer is the tied embedding), vectors in f32, no tokenizer. A
/// llama gets linear rope scaling by 2.
pub fn write_gguf(path: &Path, arch: &str, weights: &TinyWeights, dtype: GgmlDType) {
    let s = weights.shape;
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (format!("{arch}.block_count"), u(s.layers)),
        (format!("{arch}.attention.head_count"), u(s.heads)),
        (format!("{arch}.attention.head_count_kv"), u(s.kv_heads)),
        (format!("{arch}.embedding_length"), u(s.hidden)),
        (format!("{arch}.feed_forward_length"), u(s.ffn)),
        (format!("{arch}.rope.dimension_count"), u(s.head_dim)),
        (format!("{arch}.rope.freq_base"), Value::F32(s.rope_theta)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{arch}.context_length"), u(4096)),
        ("tokenizer.ggml.eos_token_id".into(), u(s.vocab + 10)),
    ];
    if arch == "llama" {
        md.push((
            format!("{arch}.rope.scaling.type"),
            Value::String("linear".into()),
        ));
        md.push((format!("{arch}.rope.scaling.factor"), Value::F32(2.0)));
    }
    let qt: Vec<(String, QTensor)> = weights
        .tensors
        .iter()
        .map(|(n, t)| {
            let dt = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
            (gguf_name(n), QTensor::quantize(t, dt).unwrap())
        })
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qt.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}
