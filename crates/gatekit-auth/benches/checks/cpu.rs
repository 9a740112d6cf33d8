//! CPU time per request of every stack, which divan's wall-clock timings do not give
//! for a round trip to another thread.
//!
//! Each stack runs for [`ROUND`] of wall time per round, three rounds interleaved
//! (every stack once per round, so a busy moment on the machine hits all of them). For
//! each round it reads the CPU time of the benchmark thread (`/proc/thread-self/schedstat`,
//! nanoseconds) and of the whole process (`/proc/self/stat`, 10 ms ticks),
//! and prints the median of the rounds per request.

use std::time::Duration;

use tokio::time::Instant;

use crate::stacks::{self, Stack};

/// Wall time each stack runs per round.
const ROUND: Duration = Duration::from_secs(1);
const ROUNDS: usize = 3;

/// On-CPU nanoseconds of the task whose `schedstat` is at `path`.
fn schedstat(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn thread_ns() -> Option<u64> {
    schedstat("/proc/thread-self/schedstat")
}

/// The process's CPU time (user + system) in nanoseconds, from `/proc/self/stat`: the
/// kernel keeps it for ended threads too (tokio's blocking threads end when idle), in
/// clock ticks of 10 ms, fine enough over a second of requests.
pub fn process_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) * 10_000_000)
}

/// Runs the pass and prints its table.
pub fn per_request() {
    let rt = crate::runtime();
    let mut names: Vec<&str> = stacks::NAMES.to_vec();
    names.push(stacks::BCRYPT_UNCACHED);
    let built: Vec<Stack> = rt.block_on(async { names.iter().map(|n| stacks::build(n)).collect() });
    // Warm up: connections to the authorization server, caches.
    for stack in &built {
        rt.block_on(crate::send(stack, stack.request()));
    }
    // (requests, thread ns, process ns) per stack per round.
    let mut samples = vec![Vec::new(); built.len()];
    for _ in 0..ROUNDS {
        for (stack, out) in built.iter().zip(&mut samples) {
            let (Some(t0), Some(p0)) = (thread_ns(), process_ns()) else {
                println!("no /proc schedstat: CPU pass skipped");
                return;
            };
            let start = Instant::now();
            let mut n = 0u64;
            rt.block_on(async {
                while start.elapsed() < ROUND {
                    for _ in 0..16 {
                        crate::send(stack, stack.request()).await;
                    }
                    n += 16;
                }
            });
            let (Some(t1), Some(p1)) = (thread_ns(), process_ns()) else {
                return;
            };
            out.push(((t1 - t0) / n, p1.saturating_sub(p0) / n, n));
        }
    }
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    println!(
        "CPU per request, median of {ROUNDS} interleaved rounds of {ROUND:?} (benchmark thread = gateway side; process = + auth server, blocking pool):"
    );
    println!(
        "  {:<26} {:>14} {:>14} {:>10}",
        "stack", "thread ns", "process ns", "requests"
    );
    for (stack, out) in built.iter().zip(samples) {
        let thread = median(out.iter().map(|s| s.0).collect());
        let process = median(out.iter().map(|s| s.1).collect());
        let requests: u64 = out.iter().map(|s| s.2).sum();
        println!(
            "  {:<26} {:>14} {:>14} {:>10}",
            stack.name, thread, process, requests
        );
    }
}
