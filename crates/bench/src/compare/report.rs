//! BENCHMARKS.md: the machine, the date, the command, every figure with its ratios, the issue's
//! targets and whether each is met, and where rdhost loses.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use super::chart::Bar;
use super::servers::ServerKind;
use super::{ANIMATION_SIZES, LATENCY_SIZE, Results, SESSION_SIZE, Settings, TERMINAL_SIZE};
use crate::{median, percentile};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Median,
    P95,
}

#[derive(Clone, Copy)]
pub enum Target {
    /// rdhost / xrdp at most this (lower is better) or at least (higher is better).
    VsXrdp(f64, &'static str),
    /// rdhost's own figure at most this (a ratio of two of its own figures).
    Own(f64, &'static str),
}

pub struct Row {
    /// `workload.value`, as stored in [`Results::values`].
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub stat: Stat,
    pub higher_is_better: bool,
    pub target: Option<Target>,
    /// Why the figure has no values (a codec path our client cannot take yet).
    pub not_measured: Option<&'static str>,
}

fn row(key: impl Into<String>, label: impl Into<String>, unit: &'static str, higher_is_better: bool) -> Row {
    Row { key: key.into(), label: label.into(), unit, stat: Stat::Median, higher_is_better, target: None, not_measured: None }
}

/// Every row of the table, in order.
pub fn rows() -> Vec<Row> {
    let (lw, lh) = LATENCY_SIZE;
    let mut v = vec![
        Row { target: Some(Target::VsXrdp(0.5, "≤ 0.5× xrdp")), ..row("latency_rfx.latency_ms", format!("key press → changed pixels decoded, RemoteFX, {lw}x{lh}, median"), "ms", false) },
        Row { stat: Stat::P95, ..row("latency_rfx.latency_ms", "same, p95", "ms", false) },
        Row {
            target: Some(Target::VsXrdp(0.5, "≤ 0.5× xrdp")),
            ..row("latency_planar.latency_ms", "same, client offering no codec (planar / bitmaps), median", "ms", false)
        },
        Row {
            target: Some(Target::VsXrdp(0.5, "≤ 0.5× xrdp")),
            ..row("latency_h264.latency_ms", "same, client offering H.264 over EGFX (xrdp 0.9: RemoteFX), median", "ms", false)
        },
    ];
    for (w, h) in ANIMATION_SIZES {
        let k = format!("anim_{w}x{h}");
        v.push(Row { target: Some(Target::VsXrdp(1.0, "≥ 1× xrdp (RemoteFX)")), ..row(format!("{k}.fps"), format!("full-screen animation {w}x{h}: frames shown per second"), "fps", true) });
        v.push(Row { target: Some(Target::VsXrdp(1.0, "≤ 1× xrdp (no more server CPU)")), ..row(format!("{k}.cpu"), format!("  server CPU (server + X server), {w}x{h}"), "% of a core", false) });
        v.push(row(format!("{k}.mbit"), format!("  bandwidth, {w}x{h}"), "Mbit/s", false));
        v.push(Row { target: Some(Target::VsXrdp(1.0, "≤ 1× xrdp (RemoteFX)")), ..row(format!("{k}.kb_per_frame"), format!("  bytes per frame shown, {w}x{h}"), "KB", false) });
        v.push(row(format!("{k}.bench_cpu"), format!("  the client's CPU (decoding, same cores), {w}x{h}"), "% of a core", false));
    }
    for (w, h) in ANIMATION_SIZES {
        let k = format!("anim_{w}x{h}_h264");
        v.push(Row {
            target: Some(Target::VsXrdp(2.0, "≥ 2× xrdp")),
            ..row(format!("{k}.fps"), format!("full-screen animation {w}x{h}, client offering H.264: frames shown per second"), "fps", true)
        });
        v.push(Row { target: Some(Target::VsXrdp(1.0, "≤ 1× xrdp (no more server CPU)")), ..row(format!("{k}.cpu"), format!("  server CPU, {w}x{h}, H.264 offered"), "% of a core", false) });
        v.push(row(format!("{k}.mbit"), format!("  bandwidth, {w}x{h}, H.264 offered"), "Mbit/s", false));
        v.push(row(format!("{k}.bench_cpu"), format!("  the client's CPU, {w}x{h}, H.264 offered"), "% of a core", false));
    }
    let (tw, th) = TERMINAL_SIZE;
    v.push(row("scroll.updates", format!("xterm scrolling `seq`, {tw}x{th}: graphics updates per second"), "1/s", true));
    v.push(row("scroll.mbit", "  bandwidth, scrolling", "Mbit/s", false));
    v.push(row("scroll.cpu", "  server CPU, scrolling", "% of a core", false));
    v.push(row("typing.bytes_per_char", "bytes per typed character (xterm, echoed), median", "B", false));
    v.push(row("typing.echo_ms", "  key → first byte of its echo, median", "ms", false));
    let (sw, sh) = SESSION_SIZE;
    v.push(Row {
        target: Some(Target::VsXrdp(0.5, "≤ 0.5× xrdp")),
        ..row("session.memory_mib", format!("memory per session, {sw}x{sh} (server growth + X server, PSS)"), "MiB", false)
    });
    v.push(row("session.memory_x_mib", "  of which the X server", "MiB", false));
    v.push(Row { target: Some(Target::VsXrdp(0.3, "≤ 0.3× xrdp")), ..row("session.connect_new_ms", "TCP connect → first full picture, new session", "ms", false) });
    v.push(Row { target: Some(Target::VsXrdp(0.3, "≤ 0.3× xrdp")), ..row("session.connect_re_ms", "TCP connect → first full picture, reconnect", "ms", false) });
    v.push(row("viewers.cpu_1", "one animated desktop, 640x400: server CPU with 1 client", "% of a core", false));
    v.push(row("viewers.cpu_n", "  server CPU with N clients (N in the notes)", "% of a core", false));
    v.push(Row { target: Some(Target::Own(1.5, "≤ 1.5 (rdhost's N / 1)")), ..row("viewers.cpu_ratio", "  CPU with N clients / with 1", "×", false) });
    v.push(row("viewers.fps_n_mean", "  frames shown per second per client with N", "fps", true));
    v
}

/// A row's figure for one server (NaN when not measured).
pub fn figure(results: &Results, row: &Row, kind: ServerKind) -> f64 {
    match results.values.get(&(row.key.clone(), kind)) {
        Some(v) if !v.is_empty() => match row.stat {
            Stat::Median => median(v),
            Stat::P95 => percentile(v, 95.0),
        },
        _ => f64::NAN,
    }
}

fn met(row: &Row, results: &Results) -> Option<bool> {
    let r = figure(results, row, ServerKind::Rdhost);
    match row.target? {
        Target::VsXrdp(t, _) => {
            let ratio = r / figure(results, row, ServerKind::Xrdp);
            ratio.is_finite().then(|| if row.higher_is_better { ratio >= t } else { ratio <= t })
        }
        Target::Own(t, _) => r.is_finite().then_some(r <= t),
    }
}

/// The chart's bars: rdhost / xrdp for every row that has both.
pub fn ratios(results: &Results, kinds: &[ServerKind]) -> Vec<Bar> {
    if !kinds.contains(&ServerKind::Rdhost) || !kinds.contains(&ServerKind::Xrdp) {
        return Vec::new();
    }
    rows()
        .iter()
        .map(|r| Bar {
            label: r.label.trim().chars().take(64).collect::<String>() + if r.label.trim().chars().count() > 64 { "…" } else { "" },
            ratio: figure(results, r, ServerKind::Rdhost) / figure(results, r, ServerKind::Xrdp),
            higher_is_better: r.higher_is_better,
            target: match r.target {
                Some(Target::VsXrdp(t, _)) => Some(t),
                _ => None,
            },
        })
        .collect()
}

fn cell(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_gib: f64,
    pub kernel: String,
    pub debian: String,
    pub packages: Vec<(String, String)>,
    pub rdhost: String,
}

impl Machine {
    pub fn probe(kinds: &[ServerKind]) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo").lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned())).unwrap_or_else(|| "unknown".into());
        let ram_kib: f64 = read("/proc/meminfo").lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        let mut names = vec!["xserver-xorg-core", "xserver-xorg-video-dummy", "xterm"];
        if kinds.contains(&ServerKind::Xrdp) {
            names.extend(["xrdp", "xorgxrdp"]);
        }
        if kinds.contains(&ServerKind::Shadow) {
            names.extend(["freerdp2-shadow-x11", "xvfb"]);
        }
        let commit = Command::new("git")
            .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let dirty = Command::new("git").args(["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--untracked-files=no"]).output().ok().is_some_and(|o| !o.stdout.is_empty());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            debian: read("/etc/debian_version").trim().to_owned(),
            packages: names.into_iter().map(|n| (n.to_owned(), super::setup::package_version(n))).collect(),
            rdhost: format!(
                "{}{}",
                env!("CARGO_PKG_VERSION"),
                commit.map(|c| format!(" (commit {c}{})", if dirty { " plus uncommitted changes" } else { "" })).unwrap_or_default()
            ),
        }
    }
}

/// The current UTC time, RFC 3339 to the second.
pub fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub fn markdown(results: &Results, s: &Settings, kinds: &[ServerKind], m: &Machine, date: &str, command: &str, took: Duration) -> String {
    let has = |k: ServerKind| kinds.contains(&k);
    let mut t = String::new();
    let _ = writeln!(t, "# rdhost compared with xrdp and FreeRDP's shadow server\n");
    let _ = writeln!(t, "Generated by `rdhost-bench --compare` (crates/bench/src/compare): do not edit by hand, run it again.\n");
    let _ = writeln!(t, "- date: {date} (the run took {:.1} min)", took.as_secs_f64() / 60.0);
    let _ = writeln!(t, "- command: `{command}`{}", if s.quick { " (**quick run: small counts, figures are rough**)" } else { "" });
    let _ = writeln!(t, "- machine: {}, {} cores, {:.1} GiB RAM, Linux {}, Debian {}", m.cpu, m.cores, m.ram_gib, m.kernel, m.debian);
    let _ = writeln!(t, "- rdhost {}", m.rdhost);
    let pk: Vec<String> = m.packages.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let _ = writeln!(t, "- packages: {}", pk.join(", "));
    let _ = writeln!(
        t,
        "- servers: {} — each started afresh on 127.0.0.1 (a free port) for every measurement, the servers alternating (order rotated every repetition), {} repetition(s)",
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        s.repeat
    );
    let _ = writeln!(
        t,
        "- client: rdhost's headless client (crates/client, IronRDP), TLS, in this benchmark's process on the same cores as the servers; it offers RemoteFX, and in the rows that say so also the graphics pipeline (MS-RDPEGFX) with H.264 (AVC420); which codec each server chose is in the notes"
    );
    let _ = writeln!(
        t,
        "- same desktop everywhere: the PAM user `rdbench` logs on to each server, whose session runs the same script (`rdhost-xrecorder`, `rdhost-xanimate --fps 60`, `xterm -e seq …`, `xterm -e cat`) at the same size; rdhost: `rdhost serve` with `auth = \"pam\"` and an x11 desktop (Xorg + dummy driver); xrdp: `xrdp-sesman` + `xrdp` with their own ini files, Xorg + xorgxrdp, the script as the window manager; shadow: `freerdp-shadow-cli +auth /sec:tls` on an Xvfb where the script runs"
    );
    let _ = writeln!(
        t,
        "- CPU is % of one core: every process of the server and of the session's X server (found by process tree and by the test user's uid); the session's programs are not counted. Memory is PSS (`/proc/PID/smaps_rollup`)."
    );
    let _ = writeln!(
        t,
        "- quiet machine: before each measurement the rest of the machine had to use ≤ {:.0}% of all cores (waited up to {} s); {} of {} waits gave up; the most the rest of the machine used during a measurement: {:.0}% of one core (every measurement is listed at the end)\n",
        s.quiet_busy,
        s.quiet_timeout.as_secs(),
        results.quiet_waits_timed_out,
        results.log.len() + results.failures.len(),
        results.max_others
    );
    let _ = writeln!(t, "![rdhost / xrdp per figure](BENCHMARKS.svg)\n");

    // The table.
    let mut header = String::from("| figure | unit |");
    let mut rule = String::from("|---|---|");
    for k in kinds {
        let _ = write!(header, " {} |", k.name());
        rule.push_str("---:|");
    }
    if has(ServerKind::Rdhost) && has(ServerKind::Xrdp) {
        header.push_str(" rdhost / xrdp |");
        rule.push_str("---:|");
    }
    if has(ServerKind::Rdhost) && has(ServerKind::Shadow) {
        header.push_str(" rdhost / shadow |");
        rule.push_str("---:|");
    }
    header.push_str(" better | target | met |");
    rule.push_str("---|---|---|");
    let _ = writeln!(t, "{header}\n{rule}");
    let mut losses = Vec::new();
    let mut missed = Vec::new();
    for r in rows() {
        let _ = write!(t, "| {} | {} |", r.label.replace('|', "\\|"), r.unit);
        for &k in kinds {
            let v = figure(results, &r, k);
            let notes = results.notes.get(&(workload_of(&r.key), k));
            let noted = |what: &str| notes.is_some_and(|n| n.iter().any(|n| n.starts_with(what)));
            let shown = if v.is_finite() {
                cell(v)
            } else if noted("failed") {
                "failed".into()
            } else if noted("cannot") {
                "cannot".into()
            } else if r.not_measured.is_some() {
                "not measured".into()
            } else {
                "—".into()
            };
            let _ = write!(t, " {shown} |");
        }
        let rd = figure(results, &r, ServerKind::Rdhost);
        for other in [ServerKind::Xrdp, ServerKind::Shadow] {
            if has(ServerKind::Rdhost) && has(other) {
                let ratio = rd / figure(results, &r, other);
                let _ = write!(t, " {} |", if ratio.is_finite() { format!("{ratio:.2}") } else { "—".into() });
                let worse = if r.higher_is_better { ratio < 1.0 } else { ratio > 1.0 };
                if ratio.is_finite() && worse && r.key != "viewers.cpu_ratio" {
                    losses.push(format!(
                        "- {} against {}: {} {} vs {} {} ({:.2}×, {} is better)",
                        r.label.trim(),
                        other.name(),
                        cell(rd),
                        r.unit,
                        cell(figure(results, &r, other)),
                        r.unit,
                        ratio,
                        if r.higher_is_better { "higher" } else { "lower" }
                    ));
                }
            }
        }
        let target = match r.target {
            Some(Target::VsXrdp(_, text) | Target::Own(_, text)) => text,
            None => "",
        };
        let verdict = match met(&r, results) {
            Some(true) => "yes",
            Some(false) => {
                missed.push(format!("- {}: target {target}", r.label.trim()));
                "**no**"
            }
            None if r.target.is_some() => "not measured",
            None => "",
        };
        let _ = writeln!(t, " {} | {target} | {verdict} |", if r.higher_is_better { "higher" } else { "lower" });
    }
    let _ = writeln!(t);

    let _ = writeln!(t, "## Where rdhost loses\n");
    if losses.is_empty() && missed.is_empty() {
        let _ = writeln!(t, "Nowhere in this run.\n");
    } else {
        for l in &losses {
            let _ = writeln!(t, "{l}");
        }
        if !missed.is_empty() {
            let _ = writeln!(t, "\nTargets of the issue not met:\n");
            for l in &missed {
                let _ = writeln!(t, "{l}");
            }
        }
        let _ = writeln!(t);
    }

    let _ = writeln!(t, "## Notes\n");
    for (r, why) in rows().iter().filter_map(|r| r.not_measured.map(|why| (r, why))) {
        let _ = writeln!(t, "- {}: not measured — {}", r.label.trim(), why);
    }
    let _ = writeln!(
        t,
        "- viewers: N = {} clients of one desktop running `rdhost-xanimate --fps {}` at {}x{}. rdhost: the session's primary client plus attendees of an invitation the session made with `rdhost share start --auto-grant view`; xrdp: more logons of the same user (sesman's Policy=Default gives them the same session; xorgxrdp 0.9 serves every client connected to it); shadow: more clients of its one display.",
        s.viewers, s.viewer_fps, s.viewer_size.0, s.viewer_size.1
    );
    let _ = writeln!(t, "- memory: the growth of the server's daemons when the session was connected, plus the whole PSS of the X server showing it (for the shadow server, the Xvfb it shows); the session's own programs are not counted.");
    let _ = writeln!(t, "- the client decodes on the same two cores as the servers; its CPU is in the table (\"the client's CPU\"), and it limits what any server can show: a frame the client has not decoded is not shown.");
    for ((workload, kind), notes) in &results.notes {
        let mut uniq = notes.clone();
        uniq.dedup();
        for n in uniq {
            let _ = writeln!(t, "- {} {}: {}", kind.name(), workload, n);
        }
    }
    for ((workload, kind), codecs) in &results.codecs {
        let _ = writeln!(t, "- codecs the client saw, {} {}: {}", kind.name(), workload, codecs);
    }
    let _ = writeln!(t, "\n## Measurements\n");
    for l in &results.log {
        let _ = writeln!(t, "- {l}");
    }
    for l in &results.failures {
        let _ = writeln!(t, "- FAILED {}", l.lines().next().unwrap_or(""));
    }
    t
}

fn workload_of(key: &str) -> String {
    key.split('.').next().unwrap_or(key).to_owned()
}
