//! Helpers shared by the tests: real data, tiny models.
// Each test binary uses some of them.
#![allow(dead_code)]

pub mod tiny;

use std::path::PathBuf;

/// The CPython standard library of this machine: real Python code to test on.
/// Asks the installed `python3` first, since its version varies by machine.
pub fn python_stdlib() -> PathBuf {
    let asked = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    asked
        .into_iter()
        .chain(
            [
                "/usr/lib/python3.11",
                "/root/.pyenv/versions/3.11.7/lib/python3.11",
            ]
            .map(PathBuf::from),
        )
        .find(|dir| dir.join("textwrap.py").is_file())
        .expect("a CPython standard library (python3 is a CI prerequisite)")
}

/// A file of the standard library, read whole.
pub fn stdlib_source(name: &str) -> String {
    let path = python_stdlib().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The mirror's first suggestion at `cursor`, as its chunks stream.
pub fn predict(
    mirror: &mut pie_edit::predict::mirror::Mirror,
    doc: &ropey::Rope,
    cursor: usize,
) -> String {
    use pie_edit::predict::engine::Backend;
    let mut out = String::new();
    mirror
        .predict(
            doc,
            cursor,
            &mut |chunk| {
                out.push_str(chunk);
                std::ops::ControlFlow::Continue(())
            },
            &|| false,
        )
        .unwrap();
    out
}

/// One [`Attend::Rows`] pass beside one scratch pass per row: token
/// `next[i]` after `base[0..base_len)` and scratch area `i`, which first
/// takes `histories[i]`.
pub struct RowsBeside {
    /// Each row's logits from the rows pass, and from its own pass.
    pub together: Vec<Vec<f32>>,
    pub alone: Vec<Vec<f32>>,
    /// The scratch areas after each.
    pub together_caches: Vec<pie_edit::model::KvCache>,
    pub alone_caches: Vec<pie_edit::model::KvCache>,
}

pub fn rows_beside_scratch_passes(
    model: &pie_edit::model::Model,
    base: &pie_edit::model::KvCache,
    base_len: usize,
    histories: &[&[u32]],
    next: &[u32],
) -> RowsBeside {
    use pie_edit::model::{Attend, Logits};
    let scratches: Vec<_> = histories
        .iter()
        .map(|history| {
            let mut scratch = model.new_cache(2).unwrap();
            if !history.is_empty() {
                model
                    .forward(
                        history,
                        Attend::Scratch {
                            base,
                            base_len,
                            scratch: &mut scratch,
                        },
                        Logits::None,
                    )
                    .unwrap();
            }
            scratch
        })
        .collect();
    let mut together_caches: Vec<_> = scratches.iter().map(|c| c.deep_copy().unwrap()).collect();
    let together = model
        .forward(
            next,
            Attend::Rows {
                base,
                base_len,
                scratches: &mut together_caches,
            },
            Logits::All,
        )
        .unwrap()
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut alone = Vec::new();
    let mut alone_caches = Vec::new();
    for (scratch, &token) in scratches.iter().zip(next) {
        let mut cache = scratch.deep_copy().unwrap();
        let logits = model
            .forward(
                &[token],
                Attend::Scratch {
                    base,
                    base_len,
                    scratch: &mut cache,
                },
                Logits::Last,
            )
            .unwrap()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        alone.push(logits);
        alone_caches.push(cache);
    }
    RowsBeside {
        together,
        alone,
        together_caches,
        alone_caches,
    }
}

/// The largest difference between two rows of numbers.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
