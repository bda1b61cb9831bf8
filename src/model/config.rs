//! Model hyper-parameters, read from GGUF metadata or a Hugging Face
//! `config.json`.

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

/// How rope pairs up the coordinates of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs `(x[2i], x[2i+1])`: GGUF llama, whose converter permuted the
    /// Q/K weight rows so that this layout matches the original model.
    Interleaved,
    /// Pairs `(x[i], x[i + d/2])` (`rotate_half`): Qwen2, and Hugging Face
    /// safetensors llama.
    NeoX,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    /// Linear rope scaling: positions are divided by this factor (1.0 = none).
    pub rope_scaling: f64,
    pub rope_layout: RopeLayout,
    pub vocab_size: usize,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub context_length: usize,
}

impl ModelConfig {
    /// Tests check this before building anything, so a bad file fails with a
    /// message instead of a shape error deep in the forward pass.
    pub fn validate(&self) -> Result<()> {
        if self.n_layers == 0 || self.n_heads == 0 || self.n_kv_heads == 0 {
            bail!("model has zero layers or heads");
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            bail!(
                "head count {} is not a multiple of kv head count {}",
                self.n_heads,
                self.n_kv_heads
            );
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim == 0 {
            bail!("head dimension {} must be even", self.head_dim);
        }
        if self.rope_scaling <= 0.0 {
            bail!("rope scaling factor {} must be positive", self.rope_scaling);
        }
        Ok(())
    }

    /// Widths of the q, k and v projections, in the order the loaders stack
    /// them into one matrix and the forward pass splits its output.
    pub fn qkv_widths(&self) -> [usize; 3] {
        let kv = self.n_kv_heads * self.head_dim;
        [self.n_heads * self.head_dim, kv, kv]
    }

    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let get = |key: &str| {
            md.get(key)
                .with_context(|| format!("GGUF metadata lacks `{key}`"))
        };
        let arch_name = get("general.architecture")?.to_string()?.clone();
        let (arch, rope_layout) = match arch_name.as_str() {
            "llama" => (Arch::Llama, RopeLayout::Interleaved),
            "qwen2" => (Arch::Qwen2, RopeLayout::NeoX),
            other => bail!("unsupported architecture `{other}` (supported: llama, qwen2)"),
        };
        let a = arch_name.as_str();
        let u = |key: &str| -> Result<usize> {
            Ok(get(&format!("{a}.{key}"))?
                .to_u32()
                .with_context(|| format!("`{a}.{key}`"))? as usize)
        };
        let opt_f = |key: &str| md.get(&format!("{a}.{key}")).and_then(|v| v.to_f32().ok());
        let n_heads = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let head_dim = match md.get(&format!("{a}.rope.dimension_count")) {
            Some(v) => v.to_u32()? as usize,
            None => hidden / n_heads.max(1),
        };
        let scaling_type = md
            .get(&format!("{a}.rope.scaling.type"))
            .and_then(|v| v.to_string().ok().cloned());
        let rope_scaling = match scaling_type.as_deref() {
            None | Some("none") => 1.0,
            Some("linear") => opt_f("rope.scaling.factor").unwrap_or(1.0) as f64,
            Some(other) => bail!("unsupported rope scaling `{other}` (supported: linear)"),
        };
        let token_id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let vocab_size = match md.get("tokenizer.ggml.tokens") {
            Some(v) => v.to_vec()?.len(),
            None => content
                .tensor_infos
                .get("token_embd.weight")
                .context("GGUF has neither tokens nor token_embd.weight")?
                .shape
                .dims()[0],
        };
        let config = Self {
            arch,
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads: md
                .get(&format!("{a}.attention.head_count_kv"))
                .map(|v| v.to_u32())
                .transpose()?
                .map_or(n_heads, |v| v as usize),
            head_dim,
            hidden,
            intermediate: u("feed_forward_length")?,
            rms_eps: opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
            rope_theta: opt_f("rope.freq_base").unwrap_or(10_000.0) as f64,
            rope_scaling,
            rope_layout,
            vocab_size,
            bos_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_id: token_id("tokenizer.ggml.eos_token_id"),
            context_length: u("context_length").unwrap_or(2048),
        };
        config.validate()?;
        Ok(config)
    }

    /// Parse a Hugging Face `config.json` (llama or qwen2 model types).
    pub fn from_hf_json(json: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Scaling {
            #[serde(rename = "type", alias = "rope_type")]
            kind: String,
            factor: Option<f64>,
        }
        #[derive(Deserialize)]
        struct Hf {
            model_type: Option<String>,
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            head_dim: Option<usize>,
            rms_norm_eps: Option<f64>,
            rope_theta: Option<f64>,
            rope_scaling: Option<Scaling>,
            vocab_size: usize,
            bos_token_id: Option<u32>,
            eos_token_id: Option<serde_json::Value>,
            max_position_embeddings: Option<usize>,
        }
        let hf: Hf =
            serde_json::from_str(json).context("config.json is not a valid model config")?;
        let arch = match hf.model_type.as_deref() {
            Some("llama") | None => Arch::Llama,
            Some("qwen2") => Arch::Qwen2,
            Some(other) => bail!("unsupported model_type `{other}` (supported: llama, qwen2)"),
        };
        let rope_scaling = match &hf.rope_scaling {
            None => 1.0,
            Some(s) if s.kind == "linear" => s.factor.unwrap_or(1.0),
            Some(s) => bail!("unsupported rope scaling `{}` (supported: linear)", s.kind),
        };
        let eos_id = match &hf.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|v| v.as_u64()).map(|v| v as u32)
            }
            _ => None,
        };
        let config = Self {
            arch,
            n_layers: hf.num_hidden_layers,
            n_heads: hf.num_attention_heads,
            n_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf
                .head_dim
                .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            hidden: hf.hidden_size,
            intermediate: hf.intermediate_size,
            rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: hf.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rope_layout: RopeLayout::NeoX,
            vocab_size: hf.vocab_size,
            bos_id: hf.bos_token_id,
            eos_id,
            context_length: hf.max_position_embeddings.unwrap_or(2048),
        };
        config.validate()?;
        Ok(config)
    }
}
