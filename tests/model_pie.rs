//! PIE exactness on tiny random-weight models written to disk inside the
//! test: GGUF llama (interleaved rope, linear scaling), GGUF qwen2 (NeoX rope,
//! QKV bias) and safetensors llama (NeoX rope).

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use common::tiny::{TINY, TinyWeights, tiny_weights, write_gguf};
use pie_edit::model::{
    Attend, GenerateOptions, LoadOptions, Logits, Model, Sampling, Session, TokenEdit, UpdateMode,
};

const VOCAB: usize = TINY.vocab;
const HIDDEN: usize = TINY.hidden;
const HEADS: usize = TINY.heads;
const KV_HEADS: usize = TINY.kv_heads;
const FFN: usize = TINY.ffn;
const LAYERS: usize = TINY.layers;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    GgufLlama,
    GgufQwen2,
    SafetensorsLlama,
}

const VARIANTS: [Variant; 3] = [
    Variant::GgufLlama,
    Variant::GgufQwen2,
    Variant::SafetensorsLlama,
];

fn hf_name(short: &str) -> String {
    match short {
        "embed" => "model.embed_tokens.weight".into(),
        "norm" => "model.norm.weight".into(),
        _ => {
            let (l, what) = short.split_once('.').unwrap();
            let name = match what {
                "q" => "self_attn.q_proj.weight",
                "k" => "self_attn.k_proj.weight",
                "v" => "self_attn.v_proj.weight",
                "o" => "self_attn.o_proj.weight",
                "gate" => "mlp.gate_proj.weight",
                "up" => "mlp.up_proj.weight",
                "down" => "mlp.down_proj.weight",
                "attn_norm" => "input_layernorm.weight",
                "ffn_norm" => "post_attention_layernorm.weight",
                other => panic!("unknown {other}"),
            };
            format!("model.layers.{l}.{name}")
        }
    }
}

fn write_safetensors(dir: &Path, weights: &TinyWeights) {
    let map: HashMap<String, Tensor> = weights
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                hf_name(n),
                t.to_dtype(DType::BF16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": VOCAB,
        "tie_word_embeddings": true,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn tiny_model(variant: Variant) -> (tempfile::TempDir, Arc<Model>) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = match variant {
        Variant::GgufLlama => {
            let p = dir.path().join("tiny-llama.gguf");
            write_gguf(&p, "llama", &tiny_weights(TINY, false), GgmlDType::F32);
            p
        }
        Variant::GgufQwen2 => {
            let p = dir.path().join("tiny-qwen2.gguf");
            write_gguf(&p, "qwen2", &tiny_weights(TINY, true), GgmlDType::F32);
            p
        }
        Variant::SafetensorsLlama => {
            write_safetensors(dir.path(), &tiny_weights(TINY, false));
            dir.path().to_path_buf()
        }
    };
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    (dir, Arc::new(model))
}

fn tokens(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7 + seed * 13 + i * i) % VOCAB as u32)
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn layer_kv(s: &Session, layer: usize) -> (Tensor, Tensor) {
    s.cache().view(layer, s.tokens().len()).unwrap()
}

fn edits() -> Vec<(&'static str, Vec<TokenEdit>)> {
    vec![
        (
            "insertion",
            vec![TokenEdit {
                start: 17,
                old_len: 0,
                new_tokens: vec![5, 9, 11],
            }],
        ),
        (
            "deletion",
            vec![TokenEdit {
                start: 12,
                old_len: 5,
                new_tokens: vec![],
            }],
        ),
        (
            "replacement",
            vec![TokenEdit {
                start: 20,
                old_len: 2,
                new_tokens: vec![3, 4, 6, 8],
            }],
        ),
        (
            "multi-place",
            vec![
                TokenEdit {
                    start: 4,
                    old_len: 1,
                    new_tokens: vec![1, 2, 3],
                },
                TokenEdit {
                    start: 15,
                    old_len: 4,
                    new_tokens: vec![],
                },
                TokenEdit {
                    start: 30,
                    old_len: 0,
                    new_tokens: vec![40, 41],
                },
            ],
        ),
    ]
}

fn session_after(
    model: &Arc<Model>,
    base: &[u32],
    hunks: &[TokenEdit],
    mode: UpdateMode,
) -> Session {
    let mut s = Session::new(model.clone()).unwrap();
    s.reset(base).unwrap();
    s.apply(hunks, mode).unwrap();
    let mut expected = base.to_vec();
    TokenEdit::apply_all(&mut expected, hunks);
    assert_eq!(s.tokens(), expected.as_slice());
    assert_eq!(s.cache().len(), expected.len());
    s
}

#[test]
fn pie_layer0_equals_full_and_conflict_differs() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let base = tokens(40, 1);
        for (name, hunks) in edits() {
            let pie = session_after(&model, &base, &hunks, UpdateMode::Pie);
            let full = session_after(&model, &base, &hunks, UpdateMode::Full);
            let conflict = session_after(&model, &base, &hunks, UpdateMode::Conflict);
            let (pk, pv) = layer_kv(&pie, 0);
            let (fk, fv) = layer_kv(&full, 0);
            let (ck, _) = layer_kv(&conflict, 0);
            let dk = max_diff(&pk, &fk);
            let dv = max_diff(&pv, &fv);
            let dc = max_diff(&ck, &fk);
            println!(
                "{variant:?} {name}: layer-0 |K pie-full| {dk:.2e}, |V| {dv:.2e}, |K conflict-full| {dc:.2e}"
            );
            assert!(
                dk < 1e-4 && dv < 1e-4,
                "{variant:?} {name}: Pie layer 0 differs from Full: K {dk}, V {dv}"
            );
            assert!(
                dc > 1e-2,
                "{variant:?} {name}: Conflict should differ from Full, got {dc}"
            );
            // Deeper layers are stale under PIE; Full is the exact recompute,
            // so a fresh prefill of the new tokens must equal Full everywhere.
            let mut fresh = Session::new(model.clone()).unwrap();
            fresh.reset(full.tokens()).unwrap();
            for l in 0..LAYERS {
                let d = max_diff(&layer_kv(&fresh, l).0, &layer_kv(&full, l).0);
                assert!(
                    d < 1e-4,
                    "{variant:?} {name}: Full differs from prefill at layer {l}: {d}"
                );
            }
        }
    }
}

/// Un-rotated, every suffix key after PIE is the key it had before the edit:
/// PIE moved it to the right position without touching its content.
#[test]
fn pie_keys_carry_their_new_positions_at_every_layer() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let rope = model.rope();
        let base = tokens(40, 2);
        let mut before = Session::new(model.clone()).unwrap();
        before.reset(&base).unwrap();
        for (name, hunks) in edits() {
            let pie = session_after(&model, &base, &hunks, UpdateMode::Pie);
            let full = session_after(&model, &base, &hunks, UpdateMode::Full);
            let mut shift = 0isize;
            for (i, h) in hunks.iter().enumerate() {
                shift += h.delta();
                let from = h.old_end();
                let until = hunks.get(i + 1).map_or(base.len(), |n| n.start);
                if until == from {
                    continue;
                }
                let to = (from as isize + shift) as usize;
                for l in 0..LAYERS {
                    let old = before
                        .cache()
                        .view(l, base.len())
                        .unwrap()
                        .0
                        .narrow(1, from, until - from)
                        .unwrap();
                    let new = layer_kv(&pie, l).0.narrow(1, to, until - from).unwrap();
                    let old_raw = rope.unrotate(&old, from).unwrap();
                    let new_raw = rope.unrotate(&new, to).unwrap();
                    let d = max_diff(&old_raw, &new_raw);
                    assert!(
                        d < 1e-4,
                        "{variant:?} {name} layer {l}: un-rotated keys differ by {d}"
                    );
                    if l == 0 {
                        let full_raw = rope
                            .unrotate(
                                &layer_kv(&full, 0).0.narrow(1, to, until - from).unwrap(),
                                to,
                            )
                            .unwrap();
                        let d = max_diff(&new_raw, &full_raw);
                        assert!(
                            d < 1e-4,
                            "{variant:?} {name}: layer-0 raw keys differ from Full by {d}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn prefill_logits_equal_token_by_token_decoding() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        // More than one block of new tokens per attention task (64), the
        // last one partial.
        let toks = tokens(150, 3);
        let mut batch = model.new_cache(16).unwrap();
        let all = model
            .forward(
                &toks,
                Attend::Cache {
                    cache: &mut batch,
                    at: 0,
                },
                Logits::All,
            )
            .unwrap()
            .unwrap();
        let mut step = model.new_cache(16).unwrap();
        for (i, &t) in toks.iter().enumerate() {
            let one = model
                .forward(
                    &[t],
                    Attend::Cache {
                        cache: &mut step,
                        at: i,
                    },
                    Logits::Last,
                )
                .unwrap()
                .unwrap();
            let d = max_diff(&one, &all.get(i).unwrap());
            assert!(d < 1e-4, "{variant:?}: logits at {i} differ by {d}");
        }
        let last = model.prefill(&mut batch, &toks).unwrap();
        assert!(max_diff(&last, &all.get(toks.len() - 1).unwrap()) < 1e-4);
    }
}

#[test]
fn generate_leaves_the_cache_unchanged_and_ignores_later_tokens() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let toks = tokens(36, 4);
        let mut s = Session::new(model.clone()).unwrap();
        s.reset(&toks).unwrap();
        let snapshot: Vec<_> = (0..LAYERS)
            .map(|l| layer_kv(&s, l))
            .map(|(k, v)| (k.copy().unwrap(), v.copy().unwrap()))
            .collect();
        let opts = GenerateOptions {
            max_tokens: 8,
            sampling: Sampling::Greedy,
        };
        let mut streamed = Vec::new();
        let out = s
            .generate(20, &opts, &mut |_, _| {}, &mut |t| {
                streamed.push(t);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(out, streamed);
        assert_eq!(out.len(), 8);
        assert_eq!(s.tokens(), toks.as_slice());
        for (l, (k, v)) in snapshot.iter().enumerate() {
            let (k2, v2) = layer_kv(&s, l);
            assert_eq!(max_diff(k, &k2), 0.0, "layer {l} K changed");
            assert_eq!(max_diff(v, &v2), 0.0, "layer {l} V changed");
        }
        // Reference: a session that only ever saw the prefix.
        let mut prefix_only = Session::new(model.clone()).unwrap();
        prefix_only.reset(&toks[..20]).unwrap();
        let expected = prefix_only
            .generate(
                20,
                &opts,
                &mut |_, _| {},
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(
            out, expected,
            "{variant:?}: generation saw tokens after the prediction point"
        );
        // Reference by plain decoding.
        let mut cache = model.new_cache(16).unwrap();
        let mut logits = model.prefill(&mut cache, &toks[..20]).unwrap();
        let mut manual = Vec::new();
        for i in 0..8 {
            let t = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
            manual.push(t);
            logits = model
                .forward(
                    &[t],
                    Attend::Cache {
                        cache: &mut cache,
                        at: 20 + i,
                    },
                    Logits::Last,
                )
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            out, manual,
            "{variant:?}: scratch generation differs from plain decoding"
        );
    }
}

/// Logits after `prefix` by re-running its last token into a scratch area
/// over `cache[0..prefix - 1)`: what a prediction computed before the cache
/// kept hidden states.
fn re_run_logits(model: &Model, s: &Session, prefix: usize) -> Tensor {
    model
        .forward(
            &[s.tokens()[prefix - 1]],
            Attend::Scratch {
                base: s.cache(),
                base_len: prefix - 1,
                scratch: &mut model.new_cache(4).unwrap(),
            },
            Logits::Last,
        )
        .unwrap()
        .unwrap()
}

#[test]
fn kept_hidden_states_give_the_logits_of_a_re_run() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let base = tokens(40, 8);
        let mut cases: Vec<(String, Session)> = Vec::new();
        for (name, hunks) in edits() {
            for mode in [UpdateMode::Pie, UpdateMode::Full] {
                cases.push((
                    format!("{name} {mode:?}"),
                    session_after(&model, &base, &hunks, mode),
                ));
            }
        }
        for (name, mut s) in cases {
            assert!(s.exact_len() > 0);
            for prefix in 1..=s.tokens().len() {
                let want = re_run_logits(&model, &s, prefix);
                let got = Tensor::new(s.next_logits(prefix).unwrap(), &Device::Cpu).unwrap();
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-4,
                    "{variant:?} {name}: logits after {prefix} differ from a re-run by {d}"
                );
            }
        }
        // A slide moves the hidden states with their entries. The kept
        // entries attended to the dropped head, so the reference is the
        // session before the slide (a re-run in the window would not see it).
        let mut whole = Session::new(model.clone()).unwrap();
        whole.reset(&base).unwrap();
        let mut slid = whole.fork().unwrap();
        slid.slide(13).unwrap();
        for prefix in 1..=slid.tokens().len() {
            let got = Tensor::new(slid.next_logits(prefix).unwrap(), &Device::Cpu).unwrap();
            let want = Tensor::new(whole.next_logits(prefix + 13).unwrap(), &Device::Cpu).unwrap();
            let d = max_diff(&got, &want);
            assert!(
                d < 1e-5,
                "{variant:?}: after a slide, logits after {prefix} moved wrong ({d})"
            );
        }
    }
}

#[test]
fn generation_that_repeats_cached_tokens_matches_plain_decoding() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let base = tokens(40, 9);
        // An insertion at 24 leaves slots 26.. stale: repeating the cached
        // text may read the cache up to there, and must compute after it.
        let hunk = TokenEdit {
            start: 24,
            old_len: 0,
            new_tokens: vec![7, 8],
        };
        let mut s = session_after(&model, &base, &[hunk], UpdateMode::Pie);
        assert_eq!(s.exact_len(), 26);
        let toks = s.tokens().to_vec();
        let forced = &toks[20..29];
        let force = |step: usize, logits: &mut [f32]| {
            if let Some(&t) = forced.get(step) {
                for (i, l) in logits.iter_mut().enumerate() {
                    if i as u32 != t {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        };
        let opts = GenerateOptions {
            max_tokens: 12,
            sampling: Sampling::Greedy,
        };
        let mut seen = Vec::new();
        let out = s
            .generate(
                20,
                &opts,
                &mut |so_far, logits| {
                    seen.push(logits.to_vec());
                    force(so_far.len(), logits)
                },
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(out[..forced.len()], *forced);

        let mut cache = model.new_cache(16).unwrap();
        let mut logits = model.prefill(&mut cache, &toks[..20]).unwrap();
        let mut manual = Vec::new();
        assert_eq!(seen.len(), opts.max_tokens);
        for (i, seen) in seen.iter().enumerate() {
            let mut l = logits.to_vec1::<f32>().unwrap();
            let d = seen
                .iter()
                .zip(&l)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-4, "{variant:?}: step {i} logits differ by {d}");
            force(i, &mut l);
            let t = Tensor::new(l, &Device::Cpu)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap();
            manual.push(t);
            logits = model
                .forward(
                    &[t],
                    Attend::Cache {
                        cache: &mut cache,
                        at: 20 + i,
                    },
                    Logits::Last,
                )
                .unwrap()
                .unwrap();
        }
        assert_eq!(out, manual, "{variant:?}");
    }
}

#[test]
fn generation_stops_on_break_and_honours_the_logit_filter() {
    let (_dir, model) = tiny_model(Variant::GgufLlama);
    let mut s = Session::new(model).unwrap();
    s.reset(&tokens(20, 5)).unwrap();
    let opts = GenerateOptions {
        max_tokens: 10,
        sampling: Sampling::TopP {
            temperature: 0.8,
            p: 0.9,
            seed: 3,
        },
    };
    let mut calls = 0;
    let out = s
        .generate(
            12,
            &opts,
            &mut |_, logits| {
                for (i, l) in logits.iter_mut().enumerate() {
                    if i % 2 == 1 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            },
            &mut |_| {
                calls += 1;
                if calls == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|t| t % 2 == 0), "filter ignored: {out:?}");
}

#[test]
fn slide_equals_reencoding_at_layer0() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let toks = tokens(40, 6);
        let mut s = Session::new(model.clone()).unwrap();
        s.reset(&toks).unwrap();
        s.slide(15).unwrap();
        let mut fresh = Session::new(model.clone()).unwrap();
        fresh.reset(&toks[15..]).unwrap();
        assert_eq!(s.tokens(), fresh.tokens());
        let d = max_diff(&layer_kv(&s, 0).0, &layer_kv(&fresh, 0).0);
        assert!(d < 1e-4, "{variant:?}: slid layer-0 keys differ by {d}");
    }
}

#[test]
fn bad_edits_are_errors() {
    let (_dir, model) = tiny_model(Variant::GgufLlama);
    let mut s = Session::new(model).unwrap();
    s.reset(&tokens(10, 7)).unwrap();
    let past_end = TokenEdit {
        start: 8,
        old_len: 5,
        new_tokens: vec![],
    };
    assert!(s.apply(&[past_end], UpdateMode::Pie).is_err());
    let overlapping = [
        TokenEdit {
            start: 2,
            old_len: 3,
            new_tokens: vec![],
        },
        TokenEdit {
            start: 3,
            old_len: 1,
            new_tokens: vec![],
        },
    ];
    assert!(s.apply(&overlapping, UpdateMode::Pie).is_err());
    let bad_token = TokenEdit {
        start: 1,
        old_len: 0,
        new_tokens: vec![VOCAB as u32 + 5],
    };
    assert!(s.apply(&[bad_token], UpdateMode::Pie).is_err());
    assert!(
        s.generate(
            0,
            &GenerateOptions {
                max_tokens: 1,
                sampling: Sampling::Greedy
            },
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(())
        )
        .is_err()
    );
    assert!(s.slide(11).is_err());
    assert_eq!(s.tokens(), tokens(10, 7).as_slice());
}

#[test]
fn bad_model_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let err = Model::load(&missing, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("missing.gguf"), "{err:#}");

    let good = dir.path().join("good.gguf");
    write_gguf(&good, "llama", &tiny_weights(TINY, false), GgmlDType::F32);
    let bytes = std::fs::read(&good).unwrap();
    for cut in [10, 200, bytes.len() / 2, bytes.len() - 100] {
        let truncated = dir.path().join("truncated.gguf");
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let err = Model::load(&truncated, &LoadOptions::default())
            .err()
            .expect("truncated file loaded");
        assert!(format!("{err:#}").contains("truncated.gguf"), "{err:#}");
    }
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
    assert!(Model::load(&garbage, &LoadOptions::default()).is_err());

    let other_arch = dir.path().join("gpt2.gguf");
    write_gguf(
        &other_arch,
        "gpt2",
        &tiny_weights(TINY, false),
        GgmlDType::F32,
    );
    let err = Model::load(&other_arch, &LoadOptions::default())
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("gpt2.gguf") && msg.contains("unsupported architecture"),
        "{msg}"
    );
}

/// Q4_1 weights run as stored on the tile kernel (re-quantized to Q8_0 on a
/// CPU without AVX512-VNNI); the result must stay close to the dense model.
#[test]
fn requantized_q4_1_model_stays_close_to_dense() {
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_weights(TINY, false);
    let dense_path = dir.path().join("dense.gguf");
    let q_path = dir.path().join("q41.gguf");
    write_gguf(&dense_path, "llama", &weights, GgmlDType::F32);
    write_gguf(&q_path, "llama", &weights, GgmlDType::Q4_1);
    let dense = Model::load(&dense_path, &LoadOptions::default()).unwrap();
    let q = Model::load(&q_path, &LoadOptions::default()).unwrap();
    let toks = tokens(12, 8);
    let a = dense
        .prefill(&mut dense.new_cache(16).unwrap(), &toks)
        .unwrap();
    let b = q.prefill(&mut q.new_cache(16).unwrap(), &toks).unwrap();
    let rel = max_diff(&a, &b) / a.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(rel < 0.5, "quantized logits too far from dense: {rel}");
    assert!(
        rel > 0.0,
        "quantization had no effect, so the test tests nothing"
    );
}

#[test]
fn a_fork_is_independent_of_its_origin() {
    let (_dir, model) = tiny_model(Variant::GgufQwen2);
    let toks = tokens(30, 9);
    let mut origin = Session::new(model).unwrap();
    origin.reset(&toks).unwrap();
    let before = layer_kv(&origin, 1).0.copy().unwrap();
    let mut fork = origin.fork().unwrap();
    fork.apply(
        &[TokenEdit {
            start: 3,
            old_len: 2,
            new_tokens: vec![1],
        }],
        UpdateMode::Pie,
    )
    .unwrap();
    assert_eq!(origin.tokens(), toks.as_slice());
    assert_eq!(
        max_diff(&before, &layer_kv(&origin, 1).0),
        0.0,
        "editing the fork changed the origin"
    );
    assert_eq!(fork.tokens().len(), toks.len() - 1);
}

/// Largest K/V difference from a fresh encoding of the same tokens, over
/// every layer.
fn max_diff_from_fresh(model: &Arc<Model>, s: &Session) -> f32 {
    let mut fresh = Session::new(model.clone()).unwrap();
    fresh.reset(s.tokens()).unwrap();
    (0..LAYERS)
        .map(|l| {
            let (k, v) = layer_kv(s, l);
            let (fk, fv) = layer_kv(&fresh, l);
            max_diff(&k, &fk).max(max_diff(&v, &fv))
        })
        .fold(0.0, f32::max)
}

#[test]
fn pie_marks_the_suffix_stale_and_repair_restores_exactness() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let base = tokens(40, 7);
        for (name, hunks) in edits() {
            for mode in [UpdateMode::Pie, UpdateMode::Conflict] {
                let mut s = session_after(&model, &base, &hunks, mode);
                let stale = s
                    .staleness()
                    .expect("an edit before the end leaves a stale suffix");
                assert_eq!(
                    stale.from,
                    hunks[0].start + hunks[0].new_tokens.len(),
                    "{variant:?} {name} {mode:?}: the suffix after the first new span is stale"
                );
                assert_eq!(stale.since_update, 1);
                let before = max_diff_from_fresh(&model, &s);
                assert!(
                    before > 1e-4,
                    "{variant:?} {name} {mode:?}: a stale cache should differ from a fresh one, got {before}"
                );
                // Repair in small chunks, as the idle loop does.
                let mut chunks = 0;
                while s.staleness().is_some() {
                    let step = s.repair(4).unwrap();
                    assert!(step.encoded > 0 && step.encoded <= 4);
                    assert_eq!(step.remaining, s.stale_len());
                    chunks += 1;
                }
                assert!(chunks > 1, "the suffix takes several chunks");
                let after = max_diff_from_fresh(&model, &s);
                println!("{variant:?} {name} {mode:?}: stale {before:.2e} -> repaired {after:.2e}");
                assert!(
                    after < 1e-5,
                    "{variant:?} {name} {mode:?}: repaired cache differs from a fresh encoding by {after}"
                );
                assert_eq!(s.repair(4).unwrap().encoded, 0, "nothing left to repair");
            }
            // Full is exact: nothing stale.
            let full = session_after(&model, &base, &hunks, UpdateMode::Full);
            assert_eq!(
                full.staleness(),
                None,
                "{variant:?} {name}: Full leaves nothing stale"
            );
        }
    }
}

#[test]
fn staleness_follows_later_edits_and_slides() {
    let (_dir, model) = tiny_model(Variant::GgufLlama);
    let mut s = Session::new(model.clone()).unwrap();
    s.reset(&tokens(40, 8)).unwrap();
    // Appending at the end leaves nothing stale.
    s.apply(
        &[TokenEdit {
            start: 40,
            old_len: 0,
            new_tokens: vec![1, 2],
        }],
        UpdateMode::Pie,
    )
    .unwrap();
    assert_eq!(s.staleness(), None);
    let edit_at = |start| TokenEdit {
        start,
        old_len: 1,
        new_tokens: vec![3],
    };
    s.apply(&[edit_at(20)], UpdateMode::Pie).unwrap();
    assert_eq!(s.staleness().unwrap().from, 21);
    let since = s.staleness().unwrap().since_update;
    // A later edit further down keeps the earlier, wider stale suffix.
    s.apply(&[edit_at(30)], UpdateMode::Pie).unwrap();
    assert_eq!(s.staleness().unwrap().from, 21);
    assert_eq!(s.staleness().unwrap().since_update, since);
    // One further up widens it.
    s.apply(&[edit_at(5)], UpdateMode::Pie).unwrap();
    assert_eq!(s.staleness().unwrap().from, 6);
    // Repair part of it, then a Full update after the repaired part: the
    // stale entries before the update stay stale (the re-encoded tail
    // attended to them).
    s.repair(10).unwrap();
    assert_eq!(s.staleness().unwrap().from, 16);
    s.apply(&[edit_at(25)], UpdateMode::Full).unwrap();
    assert_eq!(s.staleness().unwrap().from, 16);
    // A Full update before every stale entry makes the cache exact.
    s.apply(&[edit_at(10)], UpdateMode::Full).unwrap();
    assert_eq!(s.staleness(), None);
    assert!(max_diff_from_fresh(&model, &s) < 1e-4);
    // A slide moves the stale suffix with the tokens and adds nothing: the
    // kept entries attended to text that is still in the document.
    s.apply(&[edit_at(30)], UpdateMode::Pie).unwrap();
    assert_eq!(s.staleness().unwrap().from, 31);
    s.slide(8).unwrap();
    assert_eq!(s.staleness().unwrap().from, 23);
    s.repair(100).unwrap();
    assert_eq!(s.staleness(), None);
    s.slide(4).unwrap();
    assert_eq!(s.staleness(), None);
}

#[test]
fn an_interrupted_generation_stops_inside_a_step_and_leaves_the_session_usable() {
    let (_dir, model) = tiny_model(Variant::GgufLlama);
    let mut s = Session::new(model.clone()).unwrap();
    s.reset(&tokens(30, 6)).unwrap();
    let opts = GenerateOptions {
        max_tokens: 6,
        sampling: Sampling::Greedy,
    };
    let whole = s
        .generate(
            25,
            &opts,
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(whole.len(), 6);

    // The first token's logits come from the hidden state the cache kept
    // for token 24 (no forward pass); every later token is one pass, which
    // asks once per layer. Say yes in the middle of the third pass (after
    // three tokens came out).
    let asked = std::cell::Cell::new(0);
    let stop_at = 2 * LAYERS + LAYERS / 2 + 1;
    let part = s
        .generate_interruptible(
            25,
            &opts,
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(()),
            &|| {
                asked.set(asked.get() + 1);
                asked.get() >= stop_at
            },
        )
        .unwrap();
    assert_eq!(part, whole[..3], "tokens before the interrupt");
    assert_eq!(asked.get(), stop_at, "stopped as soon as it was told");

    // Interrupted from the start: only the token that needed no pass, and
    // no error.
    let first = s
        .generate_interruptible(
            25,
            &opts,
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(()),
            &|| true,
        )
        .unwrap();
    assert_eq!(first, whole[..1]);

    // The cache was not touched: the next prediction is the same as before.
    let again = s
        .generate(
            25,
            &opts,
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(again, whole);
}

/// Opening a file encodes only what precedes the cursor: the rest is
/// encoded on demand (a prediction further down) or by repair, and edits in
/// the meantime keep their meaning. Once nothing is left, the cache equals
/// a fresh encoding of the tokens, whatever happened in between.
#[test]
fn a_lazy_reset_encodes_on_demand_and_ends_equal_to_a_fresh_encoding() {
    let opts = GenerateOptions {
        max_tokens: 6,
        sampling: Sampling::Greedy,
    };
    let generate = |s: &mut Session, at: usize| {
        s.generate(
            at,
            &opts,
            &mut |_, _| {},
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap()
    };
    let edit = |start, old_len, new: &[u32]| TokenEdit {
        start,
        old_len,
        new_tokens: new.to_vec(),
    };
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let toks = tokens(48, 9);
        let mut fresh = Session::new(model.clone()).unwrap();
        fresh.reset(&toks).unwrap();

        let mut s = Session::new(model.clone()).unwrap();
        let stats = s.reset_lazily(&toks, 10).unwrap();
        assert_eq!(stats.encoded, 10);
        assert_eq!((s.unencoded_len(), s.stale_len()), (38, 38));
        assert_eq!(s.cache().len(), 48);
        // A prediction at 30 encodes up to 30 first, and predicts what a
        // fully encoded session does.
        assert_eq!(
            generate(&mut s, 30),
            generate(&mut fresh, 30),
            "{variant:?}"
        );
        assert_eq!(
            s.unencoded_len(),
            18,
            "{variant:?}: encoded just what it read"
        );
        assert_eq!(
            generate(&mut s, 12),
            generate(&mut fresh, 12),
            "{variant:?}"
        );
        assert_eq!(s.unencoded_len(), 18, "{variant:?}: nothing more to encode");

        // Each scenario: edits while part is unencoded, then repair to the
        // end; compared with a fresh encoding of the same tokens.
        type Step = Box<dyn Fn(&mut Session)>;
        let scenarios: Vec<(&str, Step)> = vec![
            (
                "PIE edit before",
                Box::new(move |s| {
                    s.apply(&[edit(5, 1, &[7, 8])], UpdateMode::Pie).unwrap();
                }),
            ),
            (
                "PIE edit inside the unencoded part",
                Box::new(move |s| {
                    s.apply(&[edit(40, 2, &[9])], UpdateMode::Pie).unwrap();
                }),
            ),
            (
                "PIE edits on both sides",
                Box::new(move |s| {
                    s.apply(&[edit(3, 0, &[4]), edit(44, 1, &[])], UpdateMode::Pie)
                        .unwrap();
                }),
            ),
            (
                "Full edit before",
                Box::new(move |s| {
                    s.apply(&[edit(5, 1, &[7, 8])], UpdateMode::Full).unwrap();
                }),
            ),
            (
                "Full edit after",
                Box::new(move |s| {
                    s.apply(&[edit(40, 1, &[7, 8])], UpdateMode::Full).unwrap();
                }),
            ),
            (
                "slide past the unencoded start",
                Box::new(move |s| {
                    s.slide(20).unwrap();
                    assert_eq!(s.unencoded_len(), 28);
                }),
            ),
            (
                "slide before it",
                Box::new(move |s| {
                    s.slide(4).unwrap();
                    assert_eq!(s.unencoded_len(), 32);
                }),
            ),
        ];
        for (name, step) in scenarios {
            let mut s = Session::new(model.clone()).unwrap();
            s.reset_lazily(&toks, 16).unwrap();
            step(&mut s);
            assert!(
                s.unencoded_len() <= s.stale_len(),
                "{variant:?} {name}: unencoded entries are always stale"
            );
            // Generation at the end reads everything: it must see a cache
            // as good as a fresh one for the text before it.
            let end = s.tokens().len();
            let mut reference = Session::new(model.clone()).unwrap();
            reference.reset(s.tokens()).unwrap();
            // A slide keeps entries that attended to the dropped head, by
            // design (see `Session::slide`): only layer 0 is exact then.
            let slid = name.starts_with("slide");
            // Where no PIE-stale entry lies before the unencoded ones (the
            // edit fell inside them, or Full re-encoded), encoding them
            // first leaves an exact cache to generate from.
            let exact = ["PIE edit inside", "Full edit"]
                .iter()
                .any(|p| name.starts_with(p));
            if exact {
                assert_eq!(
                    generate(&mut s, end),
                    generate(&mut reference, end),
                    "{variant:?} {name}"
                );
            }
            while s.staleness().is_some() {
                s.repair(5).unwrap();
            }
            assert_eq!(s.unencoded_len(), 0, "{variant:?} {name}");
            if slid {
                let (k, v) = layer_kv(&s, 0);
                let (fk, fv) = layer_kv(&reference, 0);
                let diff = max_diff(&k, &fk).max(max_diff(&v, &fv));
                assert!(
                    diff < 1e-4,
                    "{variant:?} {name}: layer 0 is {diff} from fresh"
                );
                continue;
            }
            let diff = max_diff_from_fresh(&model, &s);
            assert!(
                diff < 1e-5,
                "{variant:?} {name}: {diff} from a fresh encoding"
            );
        }
    }
}

/// A beam search steps its hypotheses in one pass; each row must come out
/// as its own scratch pass would, whatever the other rows hold.
#[test]
fn a_rows_pass_equals_one_scratch_pass_per_row() {
    for variant in VARIANTS {
        let (_dir, model) = tiny_model(variant);
        let mut s = Session::new(model.clone()).unwrap();
        s.reset(&tokens(40, 5)).unwrap();
        let base_len = 37;
        // Three scratch areas that already hold 0, 1 and 3 entries.
        let histories: [&[u32]; 3] = [&[], &[9], &[4, 17, 2]];
        let next = [3u32, 30, 7];
        let run =
            common::rows_beside_scratch_passes(&model, s.cache(), base_len, &histories, &next);
        for (i, history) in histories.iter().enumerate() {
            let d = common::max_abs_diff(&run.alone[i], &run.together[i]);
            assert!(d < 1e-5, "{variant:?}: row {i} logits differ by {d}");
            let (alone, together) = (&run.alone_caches[i], &run.together_caches[i]);
            assert_eq!(together.len(), history.len() + 1);
            for layer in [0, LAYERS - 1] {
                let (k1, v1) = alone.view(layer, alone.len()).unwrap();
                let (k2, v2) = together.view(layer, together.len()).unwrap();
                let (dk, dv) = (max_diff(&k1, &k2), max_diff(&v1, &v2));
                assert!(
                    dk < 1e-5 && dv < 1e-5,
                    "{variant:?}: row {i} layer {layer} k {dk} v {dv}"
                );
            }
        }
        // A row for each scratch area, no more and no fewer.
        let mut scratches = run.together_caches;
        let err = model
            .forward(
                &next[..2],
                Attend::Rows {
                    base: s.cache(),
                    base_len,
                    scratches: &mut scratches,
                },
                Logits::All,
            )
            .unwrap_err();
        assert!(err.to_string().contains("one each"), "{err}");
    }
}
