//! What /proc says about a process tree: memory (VmRSS, PSS) and CPU time (utime + stime).

use std::collections::HashMap;
use std::fs;

/// (ppid, utime + stime in ticks, start time in ticks) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start: u64 = f.get(19)?.parse().ok()?;
    Some((ppid, utime + stime, start))
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.2)
}

/// CPU ticks (utime + stime) used so far by one process, its descendants not included.
pub fn process_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.1)
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every descendant of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some((ppid, _, _)) = stat(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// A `Key:   123 kB` value of a /proc file, in KiB.
fn kib(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub struct Memory {
    /// VmRSS of the host process itself.
    pub host_rss_kib: u64,
    /// Sum of PSS of the host's descendants (session shells and whatever they run).
    pub children_pss_kib: u64,
    pub children: usize,
}

pub fn memory(host: u32) -> Option<Memory> {
    let host_rss_kib = kib(&format!("/proc/{host}/status"), "VmRSS")?;
    let kids = descendants(host);
    let children_pss_kib = kids
        .iter()
        .filter_map(|p| kib(&format!("/proc/{p}/smaps_rollup"), "Pss"))
        .sum();
    Some(Memory { host_rss_kib, children_pss_kib, children: kids.len() })
}

/// CPU ticks used so far by each process of the tree (host included), keyed by (pid, start).
pub fn cpu_ticks(host: u32) -> HashMap<(u32, u64), u64> {
    std::iter::once(host)
        .chain(descendants(host))
        .filter_map(|p| stat(p).map(|(_, t, start)| ((p, start), t)))
        .collect()
}

/// CPU ticks the whole machine has been busy so far (every CPU, every process and the kernel:
/// /proc/stat's first line less idle and iowait), to tell what else ran during a measurement.
pub fn machine_busy_ticks() -> Option<u64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy)
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, the Linux default).
pub fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// The command name (`comm`, at most 15 bytes) of a process.
fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim_end().to_owned())
}

/// CPU ticks used so far by the tree (host included), summed per command name.
pub fn cpu_by_name(host: u32) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for pid in std::iter::once(host).chain(descendants(host)) {
        if let (Some(name), Some((_, ticks, _))) = (comm(pid), stat(pid)) {
            *out.entry(name).or_default() += ticks;
        }
    }
    out
}

/// PSS in KiB of each descendant of `host`, with its command name.
pub fn pss_by_name(host: u32) -> Vec<(String, u64)> {
    descendants(host)
        .into_iter()
        .filter_map(|p| Some((comm(p)?, kib(&format!("/proc/{p}/smaps_rollup"), "Pss")?)))
        .collect()
}

/// The real uid of a process (`Uid:` of /proc/PID/status).
pub fn uid(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// PSS of one process in KiB (/proc/PID/smaps_rollup).
pub fn pss_kib(pid: u32) -> Option<u64> {
    kib(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

/// One process of a server under measurement.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    /// Start time in ticks: with the pid, a process's identity (pids are recycled).
    pub start: u64,
    pub comm: String,
    /// utime + stime so far, ticks.
    pub ticks: u64,
}

/// Every process of `roots` and their descendants, and every process of `uid` (a session's
/// processes that were re-parented away from the tree, e.g. daemonised), each once.
pub fn server_processes(roots: &[u32], uid_of_sessions: Option<u32>) -> Vec<Proc> {
    let mut pids: Vec<u32> = roots.iter().copied().filter(|&p| stat(p).is_some()).collect();
    for &r in roots {
        pids.extend(descendants(r));
    }
    if let Some(u) = uid_of_sessions {
        pids.extend(all_pids().into_iter().filter(|&p| uid(p) == Some(u)));
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter(|&pid| !zombie(pid))
        .filter_map(|pid| {
            let (_, ticks, start) = stat(pid)?;
            Some(Proc { pid, start, comm: comm(pid)?, ticks })
        })
        .collect()
}

/// A process that has exited and waits for its parent to reap it (state Z): it uses no memory or CPU
/// and cannot be signalled away.
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| t.rfind(')').map(|i| t[i + 2..].starts_with('Z'))).unwrap_or(false)
}

/// The command line of a process, its arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "))
}
