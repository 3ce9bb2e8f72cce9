//! What `/proc` says about the broker processes: CPU seconds, RSS, and their flush policy.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, anyhow, bail};

/// utime + stime of a process, all threads, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = stat_cpu_ticks(&stat).ok_or_else(|| anyhow!("{path}: unexpected format"))?;
    #[allow(clippy::cast_precision_loss)] // tick counts stay far below 2^52
    Ok(ticks as f64 / clock_ticks() as f64)
}

pub(crate) fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `kB` lines of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `VmHWM`), in KiB; `None` each when
/// the process is gone.
pub(crate) fn status_kib<const N: usize>(pid: u32, keys: [&str; N]) -> [Option<u64>; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    keys.map(|key| status.as_deref().and_then(|s| status_field_kib(s, key)))
}

pub(crate) fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The broker processes being watched: CPU at the start of measuring, RSS peaks while loaded.
/// VmRSS counts the mapped pages of the commitlog segments (RssFile, page cache the kernel can
/// drop); RssAnon is the process's own memory.
#[derive(Debug)]
pub(crate) struct BrokerWatch {
    pub(crate) pids: Vec<u32>,
    pub(crate) cpu_start: Vec<Option<f64>>,
    pub(crate) rss_max_kib: Vec<AtomicU64>,
    pub(crate) rss_anon_max_kib: Vec<AtomicU64>,
}

impl BrokerWatch {
    pub(crate) fn new(pids: &[u32]) -> anyhow::Result<BrokerWatch> {
        for &pid in pids {
            cpu_seconds(pid).with_context(|| format!("--broker-pids: process {pid}"))?;
        }
        Ok(BrokerWatch {
            pids: pids.to_vec(),
            cpu_start: vec![None; pids.len()],
            rss_max_kib: pids.iter().map(|_| AtomicU64::new(0)).collect(),
            rss_anon_max_kib: pids.iter().map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub(crate) fn mark_start(&mut self) {
        self.cpu_start = self.pids.iter().map(|&p| cpu_seconds(p).ok()).collect();
    }

    pub(crate) fn sample_rss(&self) {
        for (i, pid) in self.pids.iter().enumerate() {
            let [rss, anon] = status_kib(*pid, ["VmRSS", "RssAnon"]);
            if let Some(rss) = rss {
                self.rss_max_kib[i].fetch_max(rss, Ordering::Relaxed);
            }
            if let Some(anon) = anon {
                self.rss_anon_max_kib[i].fetch_max(anon, Ordering::Relaxed);
            }
        }
    }
}

/// The flush policy and where it came from: `--flush`, else the first broker process's own
/// effective config (its binary run with its `-c` file and `-p`), else unknown.
pub(crate) fn flush_policy(flag: Option<&str>, pids: &[u32]) -> (String, String) {
    if let Some(label) = flag {
        return (label.to_string(), "--flush".to_string());
    }
    let Some(&pid) = pids.first() else {
        return (
            "unknown".to_string(),
            "pass --flush LABEL or --broker-pids".to_string(),
        );
    };
    match broker_flush_policy(pid) {
        Ok((policy, source)) => (policy, source),
        Err(e) => ("unknown".to_string(), format!("{e:#}")),
    }
}

pub(crate) fn broker_flush_policy(pid: u32) -> anyhow::Result<(String, String)> {
    let cmdline_path = format!("/proc/{pid}/cmdline");
    let cmdline =
        std::fs::read(&cmdline_path).with_context(|| format!("cannot read {cmdline_path}"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let conf = config_arg(&argv).map(|c| {
        let path = std::path::PathBuf::from(&c);
        if path.is_absolute() {
            path
        } else {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map_or(path.clone(), |cwd| cwd.join(path))
        }
    });
    let exe = format!("/proc/{pid}/exe");
    let mut command = std::process::Command::new(&exe);
    if let Some(conf) = &conf {
        command.arg("-c").arg(conf);
    }
    let output = command
        .arg("-p")
        .stderr(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {exe} -p (the binary of pid {pid})"))?;
    if !output.status.success() {
        bail!("`mqbroker -p` of pid {pid} failed ({})", output.status);
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    };
    let policy = value("flushDiskType")
        .ok_or_else(|| anyhow!("`mqbroker -p` of pid {pid} prints no flushDiskType"))?;
    let policy = match value("flushIntervalCommitLog") {
        Some(ms) if policy == "ASYNC_FLUSH" => format!("{policy} (flushIntervalCommitLog={ms} ms)"),
        _ => policy,
    };
    let conf = conf.map_or_else(|| "defaults".to_string(), |c| c.display().to_string());
    Ok((policy, format!("`mqbroker -c {conf} -p` of pid {pid}")))
}

/// The value of mqbroker's `-c`/`--config` in `argv`.
pub(crate) fn config_arg(argv: &[String]) -> Option<String> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "-c" || a == "--config" {
            return args.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_string());
        }
        if let Some(v) = a.strip_prefix("-c")
            && !v.is_empty()
            && !a.starts_with("--")
        {
            return Some(v.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_counts_from_the_last_parenthesis() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000 200";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tmqbroker\nVmHWM:\t  65536 kB\nVmRSS:\t  40960 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(65536));
        assert_eq!(status_field_kib(status, "VmSwap"), None);
    }

    #[test]
    fn config_arg_takes_every_spelling_of_c() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_arg(&argv(&["mqbroker", "-c", "a.conf"])).as_deref(),
            Some("a.conf")
        );
        assert_eq!(
            config_arg(&argv(&["mqbroker", "--config=b.conf"])).as_deref(),
            Some("b.conf")
        );
        assert_eq!(
            config_arg(&argv(&["mqbroker", "-cc.conf"])).as_deref(),
            Some("c.conf")
        );
        assert_eq!(config_arg(&argv(&["mqbroker", "-p"])), None);
    }
}
