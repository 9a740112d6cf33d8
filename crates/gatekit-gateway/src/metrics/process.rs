//! Process metrics read from `/proc/self` at each scrape (Linux; elsewhere none are
//! exported): resident memory, CPU time, open file descriptors, start time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads `/proc/self` when scraped: a few small file reads, no state.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What one scrape read.
struct Sample {
    cpu_seconds: f64,
    rss_bytes: i64,
    start_seconds: f64,
}

/// Clock ticks per second of `/proc/*/stat` times: the kernel's `USER_HZ`, 100 on
/// every architecture Linux reports it for (read without `sysconf`: unsafe code is
/// forbidden in the workspace).
const USER_HZ: f64 = 100.0;

fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command (which may hold spaces and parentheses) start at
    // field 3 (1-based, whole line).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    // utime and stime: fields 14 and 15; starttime (since boot): 22.
    let cpu_ticks = num(14)? + num(15)?;
    let start_ticks = num(22)?;
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    Some(Sample {
        cpu_seconds: cpu_ticks as f64 / USER_HZ,
        rss_bytes: i64::try_from(rss_kib.saturating_mul(1024)).unwrap_or(i64::MAX),
        start_seconds: boot as f64 + start_ticks as f64 / USER_HZ,
    })
}

fn open_fds() -> Option<i64> {
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(count).ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(s) = sample() {
            let cpu = ConstCounter::new(s.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "CPU time used by the process (user and system)",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new(s.rss_bytes);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory of the process",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?)?;
            let start = ConstGauge::new(s.start_seconds);
            start.encode(encoder.encode_descriptor(
                "process_start_time",
                "When the process started, seconds since the Unix epoch",
                Some(&Unit::Seconds),
                start.metric_type(),
            )?)?;
        }
        if let Some(fds) = open_fds() {
            let fds = ConstGauge::new(fds);
            fds.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors of the process",
                None,
                fds.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
