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
