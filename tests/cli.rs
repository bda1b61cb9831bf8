//! The real binary: bad inputs are refused with a clear message and a
//! non-zero exit, `--replay` prints the final buffer, a panic leaves a
//! recovery file, a bad config names its file and line.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn pie_edit(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pie-edit"))
        .args(args)
        // Keep logs and recovery files out of the real data dir.
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_refused(path: &Path, home: &Path, expected: &str) {
    let out = pie_edit(&[path.to_str().unwrap()], home);
    assert!(!out.status.success(), "must exit non-zero");
    assert!(
        stderr(&out).contains(expected),
        "stderr {:?} should contain {expected:?}",
        stderr(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be drawn: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn refuses_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused(dir.path(), dir.path(), "is a directory");
}

#[test]
fn refuses_a_binary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.png");
    fs::write(&path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    assert_refused(&path, dir.path(), "binary file (NUL byte at offset 8)");
    assert_eq!(fs::read(&path).unwrap(), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
}

#[test]
fn refuses_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    fs::write(&path, b"caf\xe9 au lait\n").unwrap();
    assert_refused(&path, dir.path(), "not valid UTF-8 (bad byte at offset 3)");
}

#[test]
fn refuses_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    // Root reads any mode-000 file, so use a file whose read fails for anyone.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let path = if is_root {
        Path::new("/proc/self/mem").to_path_buf()
    } else {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("secret.txt");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        path
    };
    assert_refused(&path, dir.path(), "cannot read");
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let help = pie_edit(&["--help"], dir.path());
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--replay", "--record", "--theme", "--config", "model"] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let version = pie_edit(&["--version"], dir.path());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("pie-edit {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn replay_prints_the_final_buffer_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.keys");
    fs::write(&script, "class A:<Enter>pass<Enter><C-s>").unwrap();
    let file = dir.path().join("a.py");
    let out = pie_edit(
        &["--replay", script.to_str().unwrap(), file.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Enter after `pass` goes one level out.
    let expected = "class A:\n    pass\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(fs::read_to_string(&file).unwrap(), expected);
}

/// Replay `typed` into `file` (or a scratch buffer), then crash on purpose
/// (the `debug-panic` command on F12); the crash's exit status is checked.
fn crash_after(home: &Path, typed: &str, file: Option<&Path>) -> Output {
    let config = home.join("config.toml");
    fs::write(&config, "[keys]\n\"F12\" = \"debug-panic\"\n").unwrap();
    let script = home.join("s.keys");
    fs::write(&script, format!("{typed}<F12>never")).unwrap();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--replay",
        script.to_str().unwrap(),
    ];
    args.extend(file.and_then(Path::to_str));
    let out = pie_edit(&args, home);
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    out
}

#[test]
fn a_panic_writes_modified_buffers_to_a_recovery_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    fs::write(&file, "old\n").unwrap();
    let script = dir.path().join("s.keys");
    let out = crash_after(dir.path(), "precious work", Some(&file));
    let err = stderr(&out);
    let swap = swap_path_in(&err);
    assert!(
        swap.starts_with(dir.path().join("data").to_str().unwrap()),
        "{swap}"
    );
    assert_eq!(swap_text(Path::new(&swap)), "precious workold\n");
    assert_private(Path::new(&swap));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "old\n",
        "the original stays untouched"
    );
    // Opening the file again offers the changes; `r` takes them.
    fs::write(&script, "r<C-s>").unwrap();
    let out = pie_edit(
        &["--replay", script.to_str().unwrap(), file.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&file).unwrap(), "precious workold\n");
    assert!(!Path::new(&swap).exists(), "the recovered swap is gone");
}

/// The swap file a failure message names.
fn swap_path_in(stderr: &str) -> String {
    let marker = "unsaved changes were written to ";
    stderr
        .lines()
        .find_map(|l| l.split_once(marker))
        .and_then(|(_, rest)| rest.split("; open").next())
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|| panic!("no recovery path in {stderr:?}"))
}

/// A swap file's text: everything after its one header line.
fn swap_text(path: &Path) -> String {
    let bytes = fs::read_to_string(path).unwrap();
    bytes.split_once('\n').unwrap().1.to_string()
}

fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path), 0o600, "{}", path.display());
    assert_eq!(mode(path.parent().unwrap()), 0o700);
}

#[test]
fn a_panic_in_a_scratch_buffer_writes_a_private_recovery_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = crash_after(dir.path(), "scratch work", None);
    let path = swap_path_in(&stderr(&out));
    assert_eq!(fs::read_to_string(&path).unwrap(), "scratch work");
    assert_private(Path::new(&path));
}

#[test]
fn a_bad_config_names_file_and_line_and_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, "theme = \"dark\"\n\ntab_width = [\n").unwrap();
    let script = dir.path().join("s.keys");
    fs::write(&script, "ok").unwrap();
    let out = pie_edit(
        &[
            "--config",
            config.to_str().unwrap(),
            "--replay",
            script.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("config error in {} line 3", config.display())),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn an_unknown_theme_is_reported_and_dark_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.keys");
    fs::write(&script, "x").unwrap();
    let out = pie_edit(
        &["--theme", "neon", "--replay", script.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("unknown theme \"neon\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_go_to_the_data_dir_not_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.keys");
    fs::write(&script, "x").unwrap();
    let out = pie_edit(&["--replay", script.to_str().unwrap()], dir.path());
    assert!(out.status.success());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let log = fs::read_to_string(dir.path().join("data/pie-edit/pie-edit.log")).unwrap();
    assert!(log.contains("pie-edit starting"), "{log}");
}

#[test]
fn a_config_file_named_on_the_command_line_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = pie_edit(&["--config", missing.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("config file {} does not exist", missing.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_a_terminal_it_says_so_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.py");
    // `output()` gives the child pipes, not a terminal.
    let out = pie_edit(&["--no-predict", file.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "nothing drawn");
}

/// Saving through links, with the real binary: every case with CRLF and a
/// missing final newline, since the bytes must come through unchanged.
#[test]
fn saving_through_links_keeps_every_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.keys");
    fs::write(&script, "new<C-s>").unwrap();
    let save = |path: &Path| {
        let out = pie_edit(
            &["--replay", script.to_str().unwrap(), path.to_str().unwrap()],
            dir.path(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    // A chain of symlinks, one of them relative.
    let real = dir.path().join("real.txt");
    fs::write(&real, "old\r\nno newline").unwrap();
    std::os::unix::fs::symlink("real.txt", dir.path().join("hop.txt")).unwrap();
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(dir.path().join("hop.txt"), &link).unwrap();
    save(&link);
    assert_eq!(fs::read(&real).unwrap(), b"newold\r\nno newline");
    for name in ["hop.txt", "link.txt"] {
        let meta = fs::symlink_metadata(dir.path().join(name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name} stays a link");
    }
    // Hard links: one inode, two names, before and after.
    let a = dir.path().join("a.txt");
    fs::write(&a, "old\n").unwrap();
    let b = dir.path().join("b.txt");
    fs::hard_link(&a, &b).unwrap();
    let inode = fs::metadata(&a).unwrap().ino();
    save(&b);
    let meta = fs::metadata(&a).unwrap();
    assert_eq!((meta.ino(), meta.nlink()), (inode, 2));
    assert_eq!(fs::read(&a).unwrap(), b"newold\n");
}

/// `model info` names the kernel in use; `PIE_EDIT_KERNEL` forces one this
/// CPU has, and one it lacks (or a wrong name) is refused in words.
#[test]
fn model_info_names_the_kernel_and_the_override_forces_it() {
    use pie_edit::model::Kernel;
    let dir = tempfile::tempdir().unwrap();
    let info = |kernel: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pie-edit"))
            .args(["model", "info"])
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("PIE_EDIT_KERNEL", kernel)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        info("").contains(&format!("kernel in use: {}", Kernel::best())),
        "{}",
        info("")
    );
    for kernel in Kernel::ALL {
        let text = info(kernel.name());
        if kernel.supported() {
            assert!(text.contains(&format!("kernel in use: {kernel}")), "{text}");
        } else {
            println!("{kernel}: not on this CPU, so it must be refused");
            assert!(text.contains(kernel.needs()), "{text}");
        }
    }
    assert!(info("neon").contains("names no kernel"), "{}", info("neon"));
}
