//! The real binary in a real terminal: tmux runs pie-edit under a shell that
//! reports the exit status and the terminal's modes afterwards, keys are
//! sent as a user types them, and the screen is read back.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The default model where `pie-edit model fetch` (and CI) put it: the
/// tmux tests pass it with `--model`, their data directory being fresh.
pub fn default_model() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let path =
        PathBuf::from(home).join(".local/share/pie-edit/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "this test needs {} (run `pie-edit model fetch`)",
        path.display()
    );
    path
}

pub fn require_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is required for this test (.ci/run installs it)");
    }
}

/// One pie-edit in its own tmux session, with its data, config and cache
/// directories under `home`.
pub struct Term {
    pub name: String,
    pub home: PathBuf,
}

/// The line the wrapper shell prints when pie-edit has exited.
const EXIT_MARK: &str = "PIE-EDIT-EXIT:";

impl Term {
    /// Start `pie-edit ARGS` in an 80x24 terminal. `args` is shell text.
    pub fn start(home: &Path, tag: &str, args: &str) -> Term {
        Term::start_sized(home, tag, "", args, (80, 24))
    }

    /// With `env` (shell text: `NAME=value ...`) and a `(cols, rows)` terminal.
    pub fn start_sized(home: &Path, tag: &str, env: &str, args: &str, size: (u16, u16)) -> Term {
        require_tmux();
        let name = format!("pie-edit-{tag}-{}", std::process::id());
        // PIE_EDIT_TEST_BIN runs the tests against another build (e.g. an
        // older one, to see that a test fails without its fix).
        let bin = std::env::var("PIE_EDIT_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pie-edit").to_string());
        // After pie-edit exits, the shell prints its status and the modes
        // it left the terminal in, then waits to be read.
        let script = format!(
            "env XDG_DATA_HOME={h}/data XDG_CONFIG_HOME={h}/config XDG_CACHE_HOME={h}/cache {env} {bin} {args}; \
             echo {EXIT_MARK}$?; stty -a | tr ' ;' '\\n\\n' | grep -Ex -- '-?(icanon|echo)'; sleep 600",
            h = home.display(),
        );
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &name])
            .output();
        let (cols, rows) = (size.0.to_string(), size.1.to_string());
        let new_session = [
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            &cols,
            "-y",
            &rows,
            "sh",
            "-c",
            &script,
        ];
        // Tests share the default tmux server, which exits with its last
        // session: a new session asked for just then is refused by the
        // exiting server. Ask again, as a user would.
        let mut tries = 0;
        loop {
            let created = Command::new("tmux")
                .args(new_session)
                .output()
                .expect("tmux runs");
            tries += 1;
            if created.status.success() {
                break;
            }
            assert!(
                tries < 10,
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&created.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Term {
            name,
            home: home.to_path_buf(),
        }
    }

    pub fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// The screen's rows joined without line breaks, for text that wraps.
    pub fn screen_joined(&self) -> String {
        self.screen().lines().map(str::trim_end).collect()
    }

    /// Wait until `pred` holds for the screen; panic with the screen if it
    /// never does.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_within(20, what, pred)
    }

    /// [`Term::wait_until`] with a deadline of `secs` (a model that loads,
    /// a debug build that predicts).
    pub fn wait_within(&self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |s| s.contains(needle))
    }

    /// Wait for text that may wrap over several rows.
    pub fn wait_for_wrapped(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |_| {
            self.screen_joined().contains(needle)
        });
        self.screen_joined()
    }

    pub fn send(&self, keys: &[&str]) {
        for key in keys {
            tmux(&["send-keys", "-t", &self.name, key]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn type_text(&self, text: &str) {
        tmux(&["send-keys", "-t", &self.name, "-l", text]);
        std::thread::sleep(Duration::from_millis(100));
    }

    /// A bracketed paste of `text`, as a terminal emulator sends it (tmux
    /// turns its line feeds into CRs, like most terminals do).
    pub fn paste(&self, text: &str) {
        let file = self.home.join(format!("{}.paste", self.name));
        std::fs::write(&file, text).unwrap();
        let buffer = format!("{}-paste", self.name);
        tmux(&["load-buffer", "-b", &buffer, file.to_str().unwrap()]);
        tmux(&["paste-buffer", "-p", "-b", &buffer, "-t", &self.name]);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// The pid of pie-edit (the child of the pane's shell).
    pub fn editor_pid(&self) -> u32 {
        let shell = tmux(&["display-message", "-p", "-t", &self.name, "#{pane_pid}"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("pgrep")
                .args(["-P", shell.trim()])
                .output()
                .expect("pgrep runs");
            if let Some(pid) = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .next()
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "no pie-edit under shell {shell}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&self, signal: &str) {
        let pid = self.editor_pid();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Wait for pie-edit to exit; its exit status.
    pub fn wait_exit(&self) -> i32 {
        let screen = self.wait_for(EXIT_MARK);
        let line = screen.lines().find(|l| l.contains(EXIT_MARK)).unwrap();
        line.split(EXIT_MARK)
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// After pie-edit exited: the terminal is back in cooked mode with
    /// echo, on the main screen, without mouse tracking.
    pub fn assert_terminal_restored(&self) {
        let modes_of = |s: &str| {
            let after_exit = s.split(EXIT_MARK).nth(1).unwrap_or("").to_string();
            after_exit
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| {
                    l.trim_start_matches('-') == "icanon" || l.trim_start_matches('-') == "echo"
                })
                .collect::<Vec<_>>()
        };
        let screen = self.wait_until("the terminal modes", |s| modes_of(s).len() == 2);
        assert_eq!(
            modes_of(&screen),
            ["icanon", "echo"],
            "terminal left in raw mode or without echo:\n{screen}"
        );
        let modes = tmux(&[
            "display-message",
            "-p",
            "-t",
            &self.name,
            "#{alternate_on} #{mouse_any_flag} #{mouse_button_flag}",
        ]);
        assert_eq!(
            modes.trim(),
            "0 0 0",
            "alternate screen / mouse tracking left on"
        );
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

/// The swap files under a test's data directory.
pub fn swap_files(home: &Path) -> Vec<PathBuf> {
    let dir = home.join("data/pie-edit/swap");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "swp"))
        .collect();
    files.sort();
    files
}

/// A swap file's text: what follows its one header line.
pub fn swap_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_once('\n').unwrap().1.to_string()
}
