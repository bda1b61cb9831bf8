//! Loading weights: GGUF (quantized) and safetensors + config.json.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use super::kernels::{Kernel, QuantTiles};
use super::rope::Rope;
use super::transformer::{Attention, Layer, Linear, Model};

/// What to do with GGUF matrices in Q4_0/Q4_1, which candle multiplies on a
/// generic path more than 10x slower than its AVX kernels.
///
/// The benchmark binaries take it as `--weights`, and `pie-eval` records it
/// in `run.json` to refuse resuming a run under other weights, so its names
/// are kept stable for scripts and old runs; `q8-0` is `pie-bench`'s former
/// name for `q8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowQuant {
    /// Q4_1 (and Q8_0) matrices stay as stored, on our tile kernel (AVX2
    /// or AVX512-VNNI, see [`Kernel`]) where their shape tiles; Q4_0 and
    /// Q5 as Q8_0 on the tiles; anything else, or with
    /// [`Kernel::Generic`], as q8.
    #[default]
    Native,
    /// Re-quantize to Q8_0 at load (candle's fast kernel, more precise than Q4).
    #[value(name = "q8", alias = "q8-0")]
    #[serde(rename = "q8")]
    ToQ8_0,
    /// Dequantize to f32 (fastest prefill, 8x the memory).
    #[value(name = "f32")]
    #[serde(rename = "f32")]
    ToF32,
    /// Leave as stored.
    Keep,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub slow_quant: SlowQuant,
    /// Pad Q8_0 matrices whose input width is not a multiple of 256 with zero
    /// columns, so that candle's repacked kernel applies (see [`Linear`]).
    pub pad_for_fast_kernels: bool,
    /// Force a kernel; `None` takes `PIE_EDIT_KERNEL`, else the fastest
    /// this CPU has (see [`Kernel::resolve`]).
    pub kernel: Option<Kernel>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            slow_quant: SlowQuant::default(),
            pad_for_fast_kernels: true,
            kernel: None,
        }
    }
}

const SUPERBLOCK: usize = 256;

fn is_slow(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
    )
}

/// Biases for a stack of projections (see [`Linear::stack`]): zeros where
/// one has none, `None` where none has any.
fn stack_biases<const N: usize>(
    biases: [Option<Tensor>; N],
    widths: [usize; N],
) -> Result<Option<Tensor>> {
    if biases.iter().all(Option::is_none) {
        return Ok(None);
    }
    let parts = biases
        .into_iter()
        .zip(widths)
        .map(|(b, width)| match b {
            Some(b) if b.dims() == [width] => Ok(b),
            Some(b) => bail!("bias of shape {:?} for a projection of {width}", b.dims()),
            None => Ok(Tensor::zeros(width, DType::F32, &Device::Cpu)?),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Tensor::cat(&parts, 0)?))
}

fn matmul_from_qtensor(
    q: QTensor,
    options: &LoadOptions,
    kernel: Kernel,
    device: &Device,
) -> Result<Linear> {
    let cols = *q.shape().dims().last().unwrap_or(&0);
    if options.slow_quant == SlowQuant::Native
        && QuantTiles::fits(&q)
        && QuantTiles::runs_on(kernel)
    {
        return Ok(Linear::Tiled(QuantTiles::from_qtensor(&q, kernel)?));
    }
    if options.slow_quant == SlowQuant::Native
        && is_slow(q.dtype())
        && QuantTiles::runs_on(kernel)
        && cols.is_multiple_of(GgmlDType::Q8_0.block_size())
    {
        // Q4_0 and Q5 have no tiles of their own, but as Q8_0 (finer than
        // they are) they take the tile kernel, unpadded. Llama.cpp's Q4_K_M
        // stores most of Qwen2.5-0.5B's matrices as Q5_0 (rows of 896 do
        // not fit its k-quants); on candle's kernel they were padded to
        // 1024 columns, 14% more work, and resident memory of that model
        // fell from 1.59 to 1.27 GB with tiles (BENCHMARKS.md, issue 16).
        let q8 = QTensor::quantize(&q.dequantize(device)?, GgmlDType::Q8_0)?;
        if QuantTiles::fits(&q8) {
            return Ok(Linear::Tiled(QuantTiles::from_qtensor(&q8, kernel)?));
        }
    }
    let target = if is_slow(q.dtype()) {
        match options.slow_quant {
            SlowQuant::Keep => return Ok(Linear::new(QMatMul::from_qtensor(q)?)),
            SlowQuant::ToQ8_0 | SlowQuant::Native
                if cols.is_multiple_of(GgmlDType::Q8_0.block_size()) =>
            {
                GgmlDType::Q8_0
            }
            _ => return Ok(Linear::new(QMatMul::Tensor(q.dequantize(device)?))),
        }
    } else if q.dtype() == GgmlDType::Q8_0 {
        GgmlDType::Q8_0
    } else {
        return Ok(Linear::new(QMatMul::from_qtensor(q)?));
    };
    let pad_in = if options.pad_for_fast_kernels {
        cols.next_multiple_of(SUPERBLOCK) - cols
    } else {
        0
    };
    if pad_in == 0 && q.dtype() == target {
        return Ok(Linear::new(QMatMul::from_qtensor(q)?));
    }
    let dense = q.dequantize(device)?.pad_with_zeros(1, 0, pad_in)?;
    Ok(Linear::Candle {
        weight: QMatMul::from_qtensor(QTensor::quantize(&dense, target)?)?,
        pad_in,
    })
}

/// Where [`read_layers`] gets a layer's tensors: each format stores them its
/// own way, and only GGUF matrices need converting (see [`LoadOptions`]).
trait TensorSource {
    fn matrix(&mut self, name: &str) -> Result<Linear>;
    fn vector(&mut self, name: &str) -> Result<Tensor>;
    /// `None` where the file has no such tensor: only Qwen2 has biases.
    fn bias(&mut self, name: &str) -> Result<Option<Tensor>>;
}

/// What a format calls a layer's tensors: layer `i`'s are
/// `{prefix}.{i}.{name}.weight` (and `.bias`).
struct LayerNames {
    prefix: &'static str,
    attn_norm: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    ffn_norm: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
}

const GGUF_LAYER: LayerNames = LayerNames {
    prefix: "blk",
    attn_norm: "attn_norm",
    q: "attn_q",
    k: "attn_k",
    v: "attn_v",
    o: "attn_output",
    ffn_norm: "ffn_norm",
    gate: "ffn_gate",
    up: "ffn_up",
    down: "ffn_down",
};

const SAFETENSORS_LAYER: LayerNames = LayerNames {
    prefix: "model.layers",
    attn_norm: "input_layernorm",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    ffn_norm: "post_attention_layernorm",
    gate: "mlp.gate_proj",
    up: "mlp.up_proj",
    down: "mlp.down_proj",
};

/// Every layer, assembled the same way whatever the format, so that the
/// stacking the forward pass relies on (see [`Linear::stack`]) lives in one
/// place.
fn read_layers(
    config: &ModelConfig,
    names: &LayerNames,
    src: &mut impl TensorSource,
) -> Result<Vec<Layer>> {
    (0..config.n_layers)
        .map(|i| {
            let p = format!("{}.{i}", names.prefix);
            let weight = |name: &str| format!("{p}.{name}.weight");
            let bias = |name: &str| format!("{p}.{name}.bias");
            let qkv = Linear::stack(vec![
                src.matrix(&weight(names.q))?,
                src.matrix(&weight(names.k))?,
                src.matrix(&weight(names.v))?,
            ])?;
            let o = src.matrix(&weight(names.o))?;
            let gate_up = Linear::stack(vec![
                src.matrix(&weight(names.gate))?,
                src.matrix(&weight(names.up))?,
            ])?;
            let down = src.matrix(&weight(names.down))?;
            let qkv_bias = stack_biases(
                [
                    src.bias(&bias(names.q))?,
                    src.bias(&bias(names.k))?,
                    src.bias(&bias(names.v))?,
                ],
                config.qkv_widths(),
            )?;
            Ok(Layer {
                attn_norm: src.vector(&weight(names.attn_norm))?,
                attn: Attention { qkv, qkv_bias, o },
                ffn_norm: src.vector(&weight(names.ffn_norm))?,
                gate_up,
                down,
            })
        })
        .collect()
}

struct GgufTensors<'a> {
    content: &'a gguf_file::Content,
    reader: BufReader<File>,
    options: &'a LoadOptions,
    kernel: Kernel,
    device: &'a Device,
}

impl GgufTensors<'_> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            bail!("GGUF lacks tensor `{name}`");
        }
        self.content
            .tensor(&mut self.reader, name, self.device)
            .with_context(|| format!("cannot read tensor `{name}` (truncated or corrupt file?)"))
    }
}

impl TensorSource for GgufTensors<'_> {
    fn matrix(&mut self, name: &str) -> Result<Linear> {
        matmul_from_qtensor(self.read(name)?, self.options, self.kernel, self.device)
    }

    fn vector(&mut self, name: &str) -> Result<Tensor> {
        Ok(self
            .read(name)?
            .dequantize(self.device)?
            .to_dtype(DType::F32)?)
    }

    fn bias(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.has(name) {
            Ok(Some(self.vector(name)?))
        } else {
            Ok(None)
        }
    }
}

/// All of a directory's safetensors, handed out once each, in f32.
struct SafetensorsTensors(HashMap<String, Tensor>);

impl SafetensorsTensors {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        let t = self
            .0
            .remove(name)
            .with_context(|| format!("safetensors lack `{name}`"))?;
        Ok(t.to_dtype(DType::F32)?)
    }
}

impl TensorSource for SafetensorsTensors {
    fn matrix(&mut self, name: &str) -> Result<Linear> {
        Ok(Linear::new(QMatMul::Tensor(self.take(name)?)))
    }

    fn vector(&mut self, name: &str) -> Result<Tensor> {
        self.take(name)
    }

    fn bias(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.0.contains_key(name) {
            Ok(Some(self.take(name)?))
        } else {
            Ok(None)
        }
    }
}

impl Model {
    /// Load a `.gguf` file (llama or qwen2 architecture).
    pub fn from_gguf(path: &Path, options: &LoadOptions) -> Result<Self> {
        Self::from_gguf_inner(path, options)
            .with_context(|| format!("cannot load model from {}", path.display()))
    }

    fn from_gguf_inner(path: &Path, options: &LoadOptions) -> Result<Self> {
        let device = Device::Cpu;
        let (content, reader) = super::gguf::open(path)?;
        let config = ModelConfig::from_gguf(&content)?;
        let kernel = Kernel::resolve(options.kernel)?;
        let mut src = GgufTensors {
            content: &content,
            reader,
            options,
            kernel,
            device: &device,
        };
        let embed_q = src.read("token_embd.weight")?;
        let embed = embed_q.dequantize(&device)?.to_dtype(DType::F32)?;
        let output = if src.has("output.weight") {
            src.matrix("output.weight")?
        } else {
            matmul_from_qtensor(embed_q, options, kernel, &device)?
        };
        let norm = src.vector("output_norm.weight")?;
        let layers = read_layers(&config, &GGUF_LAYER, &mut src)?;
        Self::assemble(config, embed, layers, norm, output, kernel, device)
    }

    /// The model from its parts, with rope tables for its config and the
    /// tensor shapes checked against the config.
    fn assemble(
        config: ModelConfig,
        embed: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Linear,
        kernel: Kernel,
        device: Device,
    ) -> Result<Self> {
        let model = Self {
            rope: Rope::for_config(&config, &device),
            config,
            embed,
            layers,
            norm,
            output,
            kernel,
            device,
        };
        model.check_shapes()?;
        Ok(model)
    }

    /// Load a Hugging Face model directory: `config.json` plus one or more
    /// `*.safetensors` files (f32, f16 or bf16; computed in f32).
    pub fn from_safetensors_dir(dir: &Path) -> Result<Self> {
        Self::from_safetensors_inner(dir)
            .with_context(|| format!("cannot load model from {}", dir.display()))
    }

    fn from_safetensors_inner(dir: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let json = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let config = ModelConfig::from_hf_json(&json)
            .with_context(|| format!("in {}", config_path.display()))?;
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no .safetensors file in the directory");
        }
        let mut src = SafetensorsTensors(HashMap::new());
        for f in &files {
            let loaded = candle_core::safetensors::load(f, &device)
                .with_context(|| format!("cannot read {}", f.display()))?;
            src.0.extend(loaded);
        }
        let embed = src.take("model.embed_tokens.weight")?;
        let output = match src.take("lm_head.weight") {
            Ok(w) => Linear::new(QMatMul::Tensor(w)),
            Err(_) => Linear::new(QMatMul::Tensor(embed.clone())),
        };
        let norm = src.take("model.norm.weight")?;
        let layers = read_layers(&config, &SAFETENSORS_LAYER, &mut src)?;
        // f32 matrices: candle's gemm, whatever the CPU.
        Self::assemble(config, embed, layers, norm, output, Kernel::Generic, device)
    }

    /// Load a `.gguf` file or a safetensors directory, by what `path` is.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        if path.is_dir() {
            Self::from_safetensors_dir(path)
        } else if path.exists() {
            Self::from_gguf(path, options)
        } else {
            bail!("model file {} does not exist", path.display())
        }
    }

    /// A mismatch between the config and the tensors would otherwise surface
    /// as a shape error (or a panic in a kernel) at the first forward pass.
    fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        let e = self.embed.dims();
        if e != [c.vocab_size, c.hidden] {
            bail!(
                "token embedding has shape {e:?}, config says [{}, {}]",
                c.vocab_size,
                c.hidden
            );
        }
        let probe = Tensor::zeros((1, c.hidden), DType::F32, &self.device)?;
        for (i, l) in self.layers.iter().enumerate() {
            let shape_of = |m: &Linear, x: &Tensor| -> Result<Vec<usize>> {
                Ok(m.forward(x)?.dims().to_vec())
            };
            let qkv =
                shape_of(&l.attn.qkv, &probe).with_context(|| format!("layer {i} attn_q/k/v"))?;
            if qkv != [1, c.qkv_widths().iter().sum()] {
                bail!(
                    "layer {i}: q/k/v projections give {qkv:?} together, config expects heads {}x{} and kv heads {}x{}",
                    c.n_heads,
                    c.head_dim,
                    c.n_kv_heads,
                    c.head_dim
                );
            }
            if l.attn_norm.dims() != [c.hidden] || l.ffn_norm.dims() != [c.hidden] {
                bail!(
                    "layer {i}: norm weights do not match hidden size {}",
                    c.hidden
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_names_match_old_scripts_and_runs() {
        for (name, quant) in [
            ("native", SlowQuant::Native),
            ("q8", SlowQuant::ToQ8_0),
            ("q8-0", SlowQuant::ToQ8_0),
            ("f32", SlowQuant::ToF32),
            ("keep", SlowQuant::Keep),
        ] {
            assert_eq!(SlowQuant::from_str(name, false), Ok(quant), "{name}");
        }
        for (quant, json) in [
            (SlowQuant::Native, "\"native\""),
            (SlowQuant::ToQ8_0, "\"q8\""),
            (SlowQuant::ToF32, "\"f32\""),
        ] {
            assert_eq!(serde_json::to_string(&quant).unwrap(), json);
            assert_eq!(serde_json::from_str::<SlowQuant>(json).unwrap(), quant);
        }
    }
}
