//! Token healing with the real SmolLM2 tokenizer.

mod common;

use std::sync::OnceLock;

use pie_edit::model::Tokenizer;
use pie_edit::model::source::ensure_default_model;
use pie_edit::predict::align::AlignedText;
use pie_edit::predict::healing::{self, HealingFilter};

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let files = ensure_default_model().expect("default model");
        Tokenizer::from_gguf(&files.weights).expect("tokenizer")
    })
}

fn id_of(bytes: &str) -> u32 {
    tokenizer()
        .token_with_bytes(bytes.as_bytes())
        .unwrap_or_else(|| panic!("no token {bytes:?}"))
}

fn allowed_after(filter: &HealingFilter, generated: &[u32]) -> Vec<bool> {
    let mut logits = vec![0.0f32; tokenizer().vocab_size()];
    filter.apply(generated, &mut logits);
    logits.iter().map(|l| l.is_finite()).collect()
}

#[test]
fn cursor_after_newline_and_indentation_heals_the_whitespace_token() {
    let tokenizer = tokenizer();
    let prefix = "def f(x):\n    ";
    let aligned = AlignedText::new(tokenizer, prefix);
    let plan = healing::plan(&aligned, tokenizer, prefix.len()).unwrap();
    assert_eq!(plan.keep_tokens, aligned.tokens().len() - 1);
    assert_eq!(plan.required, b"\n    ");

    let filter = HealingFilter::new(tokenizer, &plan);
    let allowed = allowed_after(&filter, &[]);
    assert!(
        allowed[id_of("\n   ") as usize],
        "the natural `\\n   ` must be allowed"
    );
    assert!(allowed[id_of("\n    ") as usize]);
    assert!(allowed[id_of("\n") as usize]);
    assert!(!allowed[id_of(" return") as usize]);
    assert!(!allowed[id_of("return") as usize]);
    assert!(!allowed[id_of("\n\n") as usize]);

    let step = [id_of("\n   ")];
    let allowed = allowed_after(&filter, &step);
    assert!(allowed[id_of(" return") as usize]);
    assert!(!allowed[id_of("return") as usize]);
    assert!(!filter.is_satisfied(&step));

    let done = [id_of("\n   "), id_of(" return")];
    assert!(filter.is_satisfied(&done));
    assert!(
        allowed_after(&filter, &done).iter().all(|&a| a),
        "no masking once healed"
    );
    assert_eq!(
        healing::visible_text(tokenizer, &plan.required, &done),
        "return"
    );
    assert_eq!(healing::visible_text(tokenizer, &plan.required, &step), "");
}

#[test]
fn cursor_inside_a_token_backs_off_to_its_start() {
    let tokenizer = tokenizer();
    let text = "total = compute_total(items)\n";
    let aligned = AlignedText::new(tokenizer, text);
    let cursor = text.find("pute").unwrap();
    let plan = healing::plan(&aligned, tokenizer, cursor).unwrap();
    let kept_end = aligned.token_starts()[plan.keep_tokens];
    assert!(kept_end < cursor);
    assert_eq!(plan.required, &text.as_bytes()[kept_end..cursor]);
    assert!(
        plan.required.ends_with(b"com"),
        "{:?}",
        String::from_utf8_lossy(&plan.required)
    );
}

#[test]
fn cursor_outside_the_text_is_an_error() {
    let tokenizer = tokenizer();
    let aligned = AlignedText::new(tokenizer, "é");
    assert!(healing::plan(&aligned, tokenizer, 5).is_err());
    assert!(healing::plan(&aligned, tokenizer, 1).is_err());
    let plan = healing::plan(&aligned, tokenizer, 0).unwrap();
    assert_eq!(plan.keep_tokens, 0);
    assert!(plan.required.is_empty());
}

#[test]
fn visible_text_holds_back_a_split_character() {
    let tokenizer = tokenizer();
    let ids = tokenizer.encode("x = '🦀'");
    // Some prefix of the ids ends inside the 4-byte crab.
    let mut saw_partial = false;
    for n in 0..=ids.len() {
        let shown = healing::visible_text(tokenizer, b"", &ids[..n]);
        assert!(!shown.contains('\u{FFFD}'), "{shown:?}");
        let all = tokenizer.decode_bytes(&ids[..n]);
        saw_partial |= std::str::from_utf8(&all).is_err();
    }
    assert!(
        saw_partial,
        "the test needs a token boundary inside the emoji"
    );
}

/// At every cursor in real code, the tokens the tokenizer itself gives the
/// completed text pass the filter, whenever that tokenization keeps the
/// planned prompt: healing never forbids the natural continuation.
#[test]
fn natural_continuations_pass_the_filter_on_real_code() {
    let tokenizer = tokenizer();
    let source = common::stdlib_source("textwrap.py");
    let start = source
        .find("    def _munge_whitespace")
        .expect("known function");
    let text = &source[start..start + 1500];
    let full = tokenizer.encode(text);
    let (mut checked, mut backed_off, mut kept_prompt, mut removed_tokens) = (0, 0, 0, 0);
    for cursor in (1..text.len()).filter(|&c| text.is_char_boundary(c)) {
        let aligned = AlignedText::new(tokenizer, &text[..cursor]);
        let plan = healing::plan(&aligned, tokenizer, cursor).unwrap();
        checked += 1;
        removed_tokens += aligned.tokens().len() - plan.keep_tokens;
        backed_off += usize::from(!plan.required.is_empty());
        if full.get(..plan.keep_tokens) != Some(&aligned.tokens()[..plan.keep_tokens]) {
            continue;
        }
        kept_prompt += 1;
        let filter = HealingFilter::new(tokenizer, &plan);
        let mut generated = Vec::new();
        for &next in &full[plan.keep_tokens..] {
            if filter.is_satisfied(&generated) {
                break;
            }
            let allowed = allowed_after(&filter, &generated);
            assert!(
                allowed[next as usize],
                "cursor {cursor}: natural token {next} masked"
            );
            generated.push(next);
        }
    }
    eprintln!(
        "{checked} cursors: {backed_off} healed, {kept_prompt} where the full text keeps the \
         healed prompt, {:.2} prompt tokens removed on average",
        removed_tokens as f64 / checked as f64
    );
    assert!(
        kept_prompt * 100 >= checked * 93,
        "healed prompts rarely match the full tokenization"
    );
}

#[test]
fn cursor_after_indentation_in_the_middle_of_a_text() {
    let tokenizer = tokenizer();
    let text = "def f(x):\n    return x\n";
    let cursor = "def f(x):\n    ".len();
    let aligned = AlignedText::new(tokenizer, text);
    let plan = healing::plan(&aligned, tokenizer, cursor).unwrap();
    // In context the indentation is `\n   ` + ` return`: the cursor splits
    // ` return`, so its space is what the generation must start with.
    let kept_end = aligned.token_starts()[plan.keep_tokens];
    assert_eq!(&text.as_bytes()[kept_end..cursor], plan.required.as_slice());
    assert!(
        plan.required.ends_with(b" "),
        "{:?}",
        String::from_utf8_lossy(&plan.required)
    );
    let continuation = tokenizer.encode(&text[kept_end..]);
    let filter = HealingFilter::new(tokenizer, &plan);
    assert!(allowed_after(&filter, &[])[continuation[0] as usize]);
    assert_eq!(
        healing::visible_text(tokenizer, &plan.required, &continuation),
        "return x\n"
    );
}
