//! Whether our kernels hand work to candle's worker threads, or keep it on
//! the calling thread because other processes keep every core busy.
//!
//! A parallel pass waits for its slowest part, and candle's pool waits by
//! spinning: when a compile beside the editor has the other core, the
//! waiting thread burns its time slice while the worker it waits for is
//! not even running. On a busy machine one thread does the same work
//! without waiting on anyone, and leaves the pool's threads asleep.

use std::sync::atomic::{AtomicBool, Ordering};

static SERIAL: AtomicBool = AtomicBool::new(false);

/// Keep the kernels on the calling thread (`true`) or spread them over
/// candle's pool (`false`, the default).
pub fn set_serial(serial: bool) {
    SERIAL.store(serial, Ordering::Relaxed);
}

/// Whether the kernels keep to the calling thread.
pub fn serial() -> bool {
    SERIAL.load(Ordering::Relaxed)
}

/// Whether threads of other processes are ready to run on every core: the
/// kernel's count of runnable threads (`/proc/loadavg`, taken now, not
/// averaged) less this process's own. `None` where that cannot be read
/// (not Linux).
pub fn others_keep_every_core_busy() -> Option<bool> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let runnable: usize = loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let own = own_runnable_threads()?;
    let cores = std::thread::available_parallelism().ok()?.get();
    Some(runnable.saturating_sub(own) >= cores)
}

/// Threads of this process that are running or ready to (state `R`).
fn own_runnable_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            // The state follows the command name, which is in parentheses
            // and may itself hold spaces or parentheses.
            .filter(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    == Some("R")
            })
            .count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads of another process spinning on each core make the
    /// machine busy; reading it costs little and never fails on Linux.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_busy_loop_on_every_core_is_seen() {
        let cores = std::thread::available_parallelism().unwrap().get();
        // This process's own spinning threads do not count.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ours_only = others_keep_every_core_busy();
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        assert!(ours_only.is_some());
        // Another process's busy loops do.
        let mut busy = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for i in $(seq {cores}); do (while :; do :; done) & done; wait"
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let seen = (0..20).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            others_keep_every_core_busy() == Some(true)
        });
        let _ = std::process::Command::new("pkill")
            .args(["-P", &busy.id().to_string()])
            .status();
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(seen, "{cores} busy loops of another process were not seen");
        // Whether our own spinners were counted depends on what else runs
        // on this shared machine, so only say what was seen.
        println!("with only this process's spinners: busy = {ours_only:?}");
    }
}
