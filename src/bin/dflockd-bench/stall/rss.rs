//! The server's resident memory over a run, read from `/proc/<pid>/status` (Linux). It owns
//! the sampling thread and the parsing; it must not touch the server in any other way.

use std::fs;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Time between two samples of VmRSS while the run lasts.
const INTERVAL: Duration = Duration::from_millis(10);

/// One reading of a process's memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    /// Resident set size now (VmRSS).
    rss_kib: u64,
    /// Highest resident set size over the process's life (VmHWM).
    hwm_kib: u64,
}

/// Samples a process's VmRSS in the background from [`Sampler::start`] to [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    before: Reading,
    stop: Arc<AtomicBool>,
    /// Returns the highest VmRSS it saw (0 if the process vanished).
    thread: JoinHandle<u64>,
}

/// Memory figures of one run, in KiB.
pub struct Memory {
    before: Reading,
    /// Highest VmRSS among the samples, the first reading and the last.
    peak_kib: u64,
    after: Reading,
}

impl Sampler {
    /// Takes the "before" reading and starts sampling.
    pub fn start(pid: u32) -> Result<Sampler, String> {
        let before = read(pid).map_err(|e| format!("cannot read the memory of pid {pid}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                // A failed read (the server exited) only ends the sampling early.
                match read(pid) {
                    Ok(now) => peak = peak.max(now.rss_kib),
                    Err(_) => break,
                }
                thread::sleep(INTERVAL);
            }
            peak
        });
        Ok(Sampler {
            pid,
            before,
            stop,
            thread,
        })
    }

    /// Stops sampling and takes the "after" reading.
    pub fn finish(self) -> Result<Memory, String> {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.thread.join().expect("the sampler does not panic");
        let after = read(self.pid)
            .map_err(|e| format!("cannot read the memory of pid {}: {e}", self.pid))?;
        Ok(Memory {
            before: self.before,
            peak_kib: sampled.max(self.before.rss_kib).max(after.rss_kib),
            after,
        })
    }
}

impl Memory {
    /// The figures as report facts.
    pub fn facts(&self) -> [(&'static str, f64); 4] {
        [
            ("rss_before_kib", self.before.rss_kib as f64),
            ("rss_peak_kib", self.peak_kib as f64),
            ("rss_after_kib", self.after.rss_kib as f64),
            ("hwm_kib", self.after.hwm_kib as f64),
        ]
    }
}

/// Reads VmRSS and VmHWM of `pid`.
fn read(pid: u32) -> io::Result<Reading> {
    parse(&fs::read_to_string(format!("/proc/{pid}/status"))?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS or VmHWM line"))
}

/// Extracts VmRSS and VmHWM (`Name:   1234 kB` lines) from a status file.
fn parse(status: &str) -> Option<Reading> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse().ok())
    };
    Some(Reading {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_rss_and_high_water_mark() {
        let status =
            "Name:\tdflockd\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(
            parse(status),
            Some(Reading {
                rss_kib: 1234,
                hwm_kib: 4321
            })
        );
        assert_eq!(parse("Name:\tkernel-thread\n"), None);
    }
}
