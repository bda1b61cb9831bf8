//! The SmolLM2 tokenizer rebuilt from the real GGUF, on real source files.

mod common;

use std::path::{Path, PathBuf};

use pie_edit::model::Tokenizer;
use pie_edit::model::source::ensure_default_model;

fn smollm2() -> Tokenizer {
    let files = ensure_default_model().expect("default model available or fetchable");
    Tokenizer::from_gguf(&files.weights).expect("tokenizer from GGUF metadata")
}

/// Real Python and Rust files of this machine, a bounded sample.
fn real_source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let stdlib = common::python_stdlib();
    for name in [
        "textwrap.py",
        "difflib.py",
        "argparse.py",
        "json/decoder.py",
        "email/utils.py",
    ] {
        let path = stdlib.join(name);
        if path.is_file() {
            files.push(path);
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let registry = Path::new(&home).join(".cargo/registry/src");
        if let Ok(indexes) = std::fs::read_dir(&registry) {
            for index in indexes.flatten() {
                for krate in [
                    "ropey-1.6.1/src/rope.rs",
                    "unicode-width-0.2.3/src/tables.rs",
                ] {
                    let path = index.path().join(krate);
                    if path.is_file() {
                        files.push(path);
                    }
                }
            }
        }
    }
    files
}

#[test]
fn round_trips_real_source_files_exactly() {
    let tokenizer = smollm2();
    let files = real_source_files();
    assert!(files.len() >= 3, "too few real files found: {files:?}");
    let mut total_tokens = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let ids = tokenizer.encode(&text);
        assert!(!ids.is_empty());
        assert!(
            ids.len() < text.len(),
            "{}: no merges happened",
            path.display()
        );
        total_tokens += ids.len();
        let decoded = tokenizer.decode(&ids);
        assert!(decoded == text, "{} does not round-trip", path.display());
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| tokenizer.token_bytes(id).to_vec())
            .collect();
        assert_eq!(
            bytes,
            text.as_bytes(),
            "{}: token_bytes disagree",
            path.display()
        );
    }
    eprintln!("{} files, {total_tokens} tokens round-tripped", files.len());
}

#[test]
fn round_trips_whitespace_crlf_unicode_and_emoji() {
    let tokenizer = smollm2();
    let samples = [
        "def f(x):\r\n\treturn x  \r\n\r\n\r\n",
        "\t\t  \t \n\n\n        \n    x = 1\n",
        "naïve = 'Größe' # 日本語のコメント\n",
        "print('🦀🐍 👩‍👩‍👧 ✨')\n",
        "x = 1234567890 + 3.14e-10\n",
        "<|endoftext|> in a file is just text\n",
        "   leading spaces and trailing   ",
        "\u{feff}bom then \u{0301}combining\n",
    ];
    for text in samples {
        let ids = tokenizer.encode(text);
        assert_eq!(tokenizer.decode(&ids), text, "{text:?}");
    }
    assert!(tokenizer.encode("").is_empty());
}

#[test]
fn follows_smollm2_pre_tokenization() {
    let tokenizer = smollm2();
    // Digits are split one by one before BPE.
    let digits = tokenizer.encode("12345");
    assert_eq!(digits.len(), 5, "{digits:?}");
    // A newline plus indentation is one token: the case token healing exists for.
    let indent = tokenizer.encode("\n    ");
    assert_eq!(indent.len(), 1, "{indent:?}");
    assert_eq!(tokenizer.token_bytes(indent[0]), b"\n    ");
    // Special tokens in text are not parsed as control tokens.
    let eos = tokenizer.eos_token_ids();
    assert!(!eos.is_empty());
    let ids = tokenizer.encode("<|endoftext|>");
    assert!(ids.iter().all(|id| !eos.contains(id)), "{ids:?}");
    assert_eq!(tokenizer.vocab_size(), 49152);
    let endoftext = tokenizer.token_to_id("<|endoftext|>").unwrap();
    assert!(eos.contains(&endoftext));
}

#[test]
fn truncated_gguf_is_a_clear_error_naming_the_file() {
    let files = ensure_default_model().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(&files.weights).unwrap();
    std::fs::write(&truncated, &bytes[..4096]).unwrap();
    let err = format!("{:#}", Tokenizer::from_gguf(&truncated).unwrap_err());
    assert!(err.contains("truncated.gguf"), "{err}");
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, b"this is not a model").unwrap();
    let err = format!("{:#}", Tokenizer::from_gguf(&not_gguf).unwrap_err());
    assert!(err.contains("notes.gguf"), "{err}");
}

#[test]
fn saved_tokenizer_json_loads_back_identically() {
    let tokenizer = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    tokenizer.save_json(&json).unwrap();
    let reloaded = Tokenizer::from_json_file(&json).unwrap();
    assert!(
        reloaded.has_regex_boundaries(),
        "the SmolLM2 shape must be recognised in JSON too"
    );
    assert_eq!(reloaded.vocab_size(), tokenizer.vocab_size());
    assert_eq!(
        reloaded.eos_token_ids().len(),
        tokenizer.eos_token_ids().len()
    );
    for path in real_source_files().iter().take(3) {
        let text = std::fs::read_to_string(path).unwrap();
        let ids = reloaded.encode(&text);
        assert_eq!(ids, tokenizer.encode(&text), "{}", path.display());
        assert_eq!(reloaded.decode(&ids), text);
    }
    for id in (0..tokenizer.vocab_size() as u32).step_by(97) {
        assert_eq!(
            reloaded.token_bytes(id),
            tokenizer.token_bytes(id),
            "token {id}"
        );
    }
}

#[test]
fn model_vocabulary_mismatch_names_both_files() {
    let tokenizer = smollm2();
    let model = std::path::Path::new("/models/other.gguf");
    tokenizer.check_model_vocab(49152, model).unwrap();
    let err = tokenizer
        .check_model_vocab(32000, model)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other.gguf") && err.contains(".gguf") && err.contains("32000"),
        "{err}"
    );
}

#[test]
fn tokenizer_for_a_model_is_checked_against_its_embeddings() {
    let files = ensure_default_model().unwrap();
    let tokenizer = Tokenizer::for_model(&files).unwrap();
    assert_eq!(tokenizer.vocab_size(), 49152);

    // A safetensors directory whose config has fewer embedding rows than the
    // tokenizer has tokens: a tokenizer from another model.
    let dir = tempfile::tempdir().unwrap();
    tokenizer
        .save_json(dir.path().join("tokenizer.json"))
        .unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"vocab_size": 32000}"#).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let mismatched = pie_edit::model::source::resolve(dir.path().to_str().unwrap()).unwrap();
    let err = Tokenizer::for_model(&mismatched).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("32000"),
        "{err}"
    );
}

#[test]
fn gguf_without_tokenizer_data_is_a_clear_error() {
    use candle_core::quantized::gguf_file::{self, Value};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights-only.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let arch = Value::String("llama".to_string());
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).unwrap();
    drop(file);
    let err = format!("{:#}", Tokenizer::from_gguf(&path).unwrap_err());
    assert!(
        err.contains("weights-only.gguf") && err.contains("no tokenizer data"),
        "{err}"
    );

    // Tokens present but an unsupported tokenizer model.
    let path = dir.path().join("sentencepiece.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let model = Value::String("llama".to_string());
    let tokens = Value::Array(vec![Value::String("a".to_string())]);
    gguf_file::write(
        &mut file,
        &[
            ("tokenizer.ggml.model", &model),
            ("tokenizer.ggml.tokens", &tokens),
        ],
        &[],
    )
    .unwrap();
    drop(file);
    let err = format!("{:#}", Tokenizer::from_gguf(&path).unwrap_err());
    assert!(
        err.contains("sentencepiece.gguf") && err.contains("tokenizer.json"),
        "{err}"
    );
}

/// A random-weight model written with SmolLM2's vocabulary (what
/// `pie-bench --write-random` does for the Qwen shapes) tokenizes real
/// text exactly as SmolLM2 does, its padding tokens unused.
#[test]
fn a_random_model_with_copied_vocabulary_tokenizes_as_its_source() {
    use pie_edit::model::random_gguf::{self, Shape, Vocab};
    let files = ensure_default_model().expect("default model available or fetchable");
    let shape = Shape {
        name: "tiny-with-qwen-vocab",
        hidden: 64,
        layers: 1,
        heads: 1,
        kv_heads: 1,
        head_dim: 64,
        ffn: 64,
        vocab: 50_000,
        ..random_gguf::QWEN25_CODER_0_5B
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.gguf");
    let written = random_gguf::write(
        &path,
        &shape,
        random_gguf::Mix::Q8_0,
        Vocab::FromGguf(&files.weights),
    )
    .unwrap();
    assert_eq!(written.real_tokens, 49_152);
    let copy = Tokenizer::from_gguf(&path).unwrap();
    let source = smollm2();
    assert_eq!(copy.vocab_size(), 50_000);
    assert_eq!(copy.eos_token_ids(), source.eos_token_ids());
    for path in real_source_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let ids = copy.encode(&text);
        assert_eq!(ids, source.encode(&text), "{}", path.display());
        assert!(ids.iter().all(|&id| id < 49_152));
    }
}
