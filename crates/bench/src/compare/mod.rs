//! `rdhost-bench --compare`: rdhost against xrdp (+ xorgxrdp) and FreeRDP's shadow server on this
//! machine, in one run, with the same desktop programs, sizes, PAM user and headless client; writes
//! `BENCHMARKS.md` and `BENCHMARKS.svg` (the ratios at a glance).
//!
//! Every workload runs against every server in turn, repetition after repetition, with the order
//! of the servers rotated each repetition, each server started afresh for each measurement and
//! stopped after it. Before each measurement the machine must be quiet (busy CPU below a bound,
//! waited for up to a timeout); what it was, and what the rest of the machine used during the
//! measurement, goes into the report.

mod chart;
mod report;
mod servers;
mod setup;
mod workloads;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::host::ScratchDir;
use crate::procfs;
pub use servers::ServerKind;
use servers::{Desktop, Server};
use setup::TestUser;

/// The key-to-pixel workload's size (that of the first figures).
pub const LATENCY_SIZE: (u16, u16) = (1024, 768);
/// The terminal workloads' size.
pub const TERMINAL_SIZE: (u16, u16) = (1280, 800);
/// The session workload's size (connect, memory).
pub const SESSION_SIZE: (u16, u16) = (1280, 800);
/// The animation sizes.
pub const ANIMATION_SIZES: [(u16, u16); 2] = [(1280, 800), (1920, 1080)];
/// The PAM test user every server logs on.
const TEST_USER: &str = "rdbench";

/// The options of `--compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Compare rdhost with xrdp and FreeRDP's shadow server (installed with apt-get when missing;
    /// needs root: it creates the PAM test user `rdbench` and removes it at the end), and write
    /// BENCHMARKS.md and BENCHMARKS.svg to --out.
    #[arg(long)]
    pub compare: bool,
    /// compare: the servers, in the order of the first repetition.
    #[arg(long, value_delimiter = ',', default_value = "rdhost,xrdp,shadow")]
    pub servers: Vec<ServerKind>,
    /// compare: where BENCHMARKS.md and BENCHMARKS.svg go (default: the current directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// compare: repetitions of every workload against every server (default 3, quick 1).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// compare: the most seconds to wait for a quiet machine before a measurement (default 90,
    /// quick 5); it then goes ahead and the report shows the load it ran under.
    #[arg(long)]
    pub quiet_timeout: Option<u64>,
    /// compare: a quiet machine uses at most this % of all its cores (others' programs, not ours).
    #[arg(long, default_value_t = 25.0)]
    pub quiet_busy: f64,
    /// compare: only the workloads whose key starts with one of these (latency, latency_planar,
    /// anim_1280x800, scroll, typing, session, viewers, ...); default: all. A partial run writes
    /// a partial BENCHMARKS.md: use --out elsewhere while profiling.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
}

pub struct Settings {
    pub repeat: usize,
    pub presses: usize,
    pub animation_secs: f64,
    pub scroll_secs: f64,
    pub chars: usize,
    pub connects: usize,
    pub viewers: usize,
    pub viewer_secs: f64,
    pub viewer_size: (u16, u16),
    pub viewer_fps: u32,
    pub quiet_timeout: Duration,
    pub quiet_busy: f64,
    pub quick: bool,
}

impl Settings {
    fn new(a: &CompareArgs, quick: bool) -> Settings {
        Settings {
            repeat: a.repeat.unwrap_or(if quick { 1 } else { 3 }).max(1),
            presses: if quick { 8 } else { 60 },
            animation_secs: if quick { 2.0 } else { 8.0 },
            scroll_secs: if quick { 2.0 } else { 6.0 },
            chars: if quick { 4 } else { 20 },
            connects: if quick { 1 } else { 3 },
            viewers: if quick { 3 } else { 20 },
            // CPU is read in clock ticks (10 ms): at the 2-4 % of a core one client of this
            // small animation costs, 6 s left the ratio of 20 clients to 1 at +-0.4.
            viewer_secs: if quick { 2.0 } else { 12.0 },
            viewer_size: (640, 400),
            viewer_fps: 5,
            quiet_timeout: Duration::from_secs(a.quiet_timeout.unwrap_or(if quick { 5 } else { 90 })),
            quiet_busy: a.quiet_busy,
            quick,
        }
    }
}

/// What one measurement gave: named values (a latency gives one per key press).
#[derive(Default)]
pub struct Sample {
    pub values: Vec<(&'static str, f64)>,
    /// The rest of the machine's CPU during the measurement, % of one core.
    pub others: f64,
    /// Codecs the client saw.
    pub codecs: String,
    pub note: Option<String>,
}

impl Sample {
    fn push(&mut self, key: &'static str, v: f64) {
        self.values.push((key, v));
    }

    fn push_all(&mut self, key: &'static str, vs: Vec<f64>) {
        self.values.extend(vs.into_iter().map(|v| (key, v)));
    }
}

/// What every workload is given.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub s: &'a Settings,
    pub user: &'a TestUser,
    /// Where the rdhost sharer of the viewers workload writes its invitation.
    pub share_dir: &'a Path,
    pub share_password: &'a str,
    /// Whether the client offers the graphics pipeline with H.264.
    pub gfx: rdhost_client::Gfx,
    /// Whether the client offers RemoteFX (off: a client with no codec, which gets bitmaps).
    pub remotefx: bool,
}

/// What the client offers: RemoteFX (and the fast-path bitmaps every client takes), or also the
/// graphics pipeline (MS-RDPEGFX) with H.264 (AVC420), as Windows and FreeRDP clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offer {
    RemoteFx,
    H264,
    /// No codec at all: planar bitmaps (rdhost), whatever each server sends such a client.
    Nothing,
}

impl Offer {
    fn gfx(self) -> rdhost_client::Gfx {
        match self {
            Offer::RemoteFx | Offer::Nothing => rdhost_client::Gfx::Off,
            Offer::H264 => rdhost_client::Gfx::Avc420,
        }
    }

    fn remotefx(self) -> bool {
        self != Offer::Nothing
    }

    fn suffix(self) -> &'static str {
        match self {
            Offer::RemoteFx => "",
            Offer::H264 => "_h264",
            Offer::Nothing => "_planar",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Offer::RemoteFx => "RemoteFX",
            Offer::H264 => "H.264 (EGFX)",
            Offer::Nothing => "no codec",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Latency(Offer),
    Animation(u16, u16, Offer),
    Scroll,
    Typing,
    Session,
    Viewers,
}

impl Workload {
    /// The key its figures are stored under.
    pub fn key(self) -> String {
        match self {
            Workload::Latency(Offer::RemoteFx) => "latency_rfx".into(),
            Workload::Latency(Offer::H264) => "latency_h264".into(),
            Workload::Latency(Offer::Nothing) => "latency_planar".into(),
            Workload::Animation(w, h, o) => format!("anim_{w}x{h}{}", o.suffix()),
            Workload::Scroll => "scroll".into(),
            Workload::Typing => "typing".into(),
            Workload::Session => "session".into(),
            Workload::Viewers => "viewers".into(),
        }
    }

    fn describe(self, s: &Settings) -> String {
        match self {
            Workload::Latency(o) => format!("key->pixel latency, client offering {}, {} presses", o.name(), s.presses),
            Workload::Animation(w, h, o) => format!("full-screen animation {w}x{h}, client offering {}, {} s", o.name(), s.animation_secs),
            Workload::Scroll => format!("xterm scrolling seq, {} s", s.scroll_secs),
            Workload::Typing => format!("bytes per typed character, {} chars", s.chars),
            Workload::Session => format!("connect (new + reconnect) x{} and memory per session", s.connects),
            Workload::Viewers => format!("CPU with 1 vs {} clients of one animation", s.viewers),
        }
    }

    /// Seconds a measurement takes roughly (for the ETA before any was measured).
    fn nominal_secs(self, s: &Settings) -> f64 {
        4.0 + match self {
            Workload::Latency(_) => s.presses as f64 * 0.06,
            Workload::Animation(..) => s.animation_secs + 2.0,
            Workload::Scroll => s.scroll_secs + 2.0,
            Workload::Typing => s.chars as f64 * 0.25 + 2.0,
            Workload::Session => s.connects as f64 * 5.0,
            Workload::Viewers => 2.0 * s.viewer_secs + s.viewers as f64 * 0.7 + 3.0,
        }
    }

    fn all() -> Vec<Workload> {
        let mut v = vec![Workload::Latency(Offer::RemoteFx), Workload::Latency(Offer::Nothing), Workload::Latency(Offer::H264)];
        for offer in [Offer::RemoteFx, Offer::H264] {
            v.extend(ANIMATION_SIZES.iter().map(|&(w, h)| Workload::Animation(w, h, offer)));
        }
        v.extend([Workload::Scroll, Workload::Typing, Workload::Session, Workload::Viewers]);
        v
    }
}

/// Everything measured, by (figure key, server).
#[derive(Default)]
pub struct Results {
    pub values: BTreeMap<(String, ServerKind), Vec<f64>>,
    pub notes: BTreeMap<(String, ServerKind), Vec<String>>,
    pub codecs: BTreeMap<(String, ServerKind), String>,
    pub failures: Vec<String>,
    /// One line per measurement: what, the machine's state before and the others' CPU during it.
    pub log: Vec<String>,
    pub quiet_waits_timed_out: usize,
    pub max_others: f64,
}

/// The executable files a session runs: copies of the X programs (the test user must be able to
/// read them; the build's target dir under root's home is not), and one script per workload.
struct Programs {
    dir: ScratchDir,
}

impl Programs {
    fn new(rdhost: &Path, s: &Settings, share_dir: &Path, share_password: &str) -> Result<Programs> {
        let dir = ScratchDir::new("compare-programs")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        for name in ["rdhost-xrecorder", "rdhost-xanimate", "rdhost"] {
            let from = if name == "rdhost" { rdhost.to_path_buf() } else { crate::x11::probe_bin(rdhost, name)? };
            let to = dir.path().join(name);
            std::fs::copy(&from, &to).with_context(|| format!("copy {}", from.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
        }
        let p = |name: &str| dir.path().join(name).display().to_string();
        // xterm's default font is 6x13: the geometry that fills the terminal workloads' screen.
        let geometry = format!("{}x{}+0+0", TERMINAL_SIZE.0 / 6, TERMINAL_SIZE.1 / 13);
        let scripts = [
            ("recorder.sh", format!("exec {} --override-redirect >/dev/null 2>&1", p("rdhost-xrecorder"))),
            ("animate.sh", format!("exec {} --fps 60 >/dev/null 2>&1", p("rdhost-xanimate"))),
            ("scroll.sh", format!("exec xterm -geometry {geometry} -e sh -c 'seq 1 2000000000'")),
            ("typing.sh", format!("exec xterm -geometry {geometry} -e cat")),
            ("viewers.sh", format!("exec {} --fps {} >/dev/null 2>&1", p("rdhost-xanimate"), s.viewer_fps)),
            // rdhost: the same animation, and the session shares itself (an invitation the viewers
            // join as attendees, granted view at once).
            (
                "viewers-rdhost.sh",
                // The host knows the session's processes only once its desktop is up: the first
                // `share start` can come too early, so it is tried again for a few seconds.
                format!(
                    "{} --fps {} >/dev/null 2>&1 &\nfor try in 1 2 3 4 5 6 7 8 9 10; do\n  {} share start --password {share_password} --auto-grant view --attendee-limit 100 --invitation-file {}/invitation.msrcIncident && exit 0\n  sleep 0.5\ndone\nexit 1",
                    p("rdhost-xanimate"),
                    s.viewer_fps,
                    p("rdhost"),
                    share_dir.display()
                ),
            ),
        ];
        for (name, body) in scripts {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n# rdhost-bench --compare: the session program, the same for every server\n{body}\n"))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Programs { dir })
    }

    fn script(&self, workload: Workload, kind: ServerKind) -> PathBuf {
        let name = match workload {
            Workload::Latency(_) | Workload::Session => "recorder.sh",
            Workload::Animation(..) => "animate.sh",
            Workload::Scroll => "scroll.sh",
            Workload::Typing => "typing.sh",
            Workload::Viewers if kind == ServerKind::Rdhost => "viewers-rdhost.sh",
            Workload::Viewers => "viewers.sh",
        };
        self.dir.path().join(name)
    }
}

/// The invitation the viewers workload's rdhost session wrote: its ticket and password.
pub async fn read_invitation(ctx: &Ctx<'_>) -> Result<(String, String)> {
    let file = ctx.share_dir.join("invitation.msrcIncident");
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(inv) = rdhost_model::ConnectionString::parse(&text)
            && let Some(ticket) = inv.ticket
        {
            return Ok((ticket, ctx.share_password.to_owned()));
        }
        if t0.elapsed() > crate::WAIT {
            bail!("the session's `rdhost share start` wrote no invitation to {}", file.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the rest of the machine uses at most `busy` % of all its cores (measured over 1 s
/// windows, this benchmark's own CPU left out), or `timeout` passes. Returns what it measured last
/// and whether it waited in vain.
fn wait_quiet(busy: f64, timeout: Duration) -> (f64, bool) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let hz = procfs::ticks_per_sec() as f64;
    let t0 = Instant::now();
    loop {
        let (m0, b0, w0) = (procfs::machine_busy_ticks().unwrap_or(0), procfs::process_ticks(std::process::id()).unwrap_or(0), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let (m1, b1) = (procfs::machine_busy_ticks().unwrap_or(0), procfs::process_ticks(std::process::id()).unwrap_or(0));
        let pct = 100.0 * (m1.saturating_sub(m0).saturating_sub(b1.saturating_sub(b0))) as f64 / hz / w0.elapsed().as_secs_f64() / cores;
        if pct <= busy {
            return (pct, false);
        }
        if t0.elapsed() >= timeout {
            return (pct, true);
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

pub async fn run(rdhost: &Path, args: &CompareArgs, quick: bool) -> Result<()> {
    let s = Settings::new(args, quick);
    let mut kinds = args.servers.clone();
    kinds.dedup();
    if kinds.is_empty() {
        bail!("--servers names no server");
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    if !setup::is_root() {
        bail!("--compare needs root: it installs packages, creates the PAM test user {TEST_USER} and runs xrdp's daemons");
    }
    setup::ensure_packages(&kinds, true)?;
    let started_at = report::now_utc();
    let user = TestUser::create(TEST_USER)?;
    eprintln!("rdhost-bench: test user {} (uid {})", user.name, user.uid);
    // The sharer inside the rdhost session (running as the test user) writes its invitation here.
    let share = ScratchDir::new("compare-share")?;
    std::fs::set_permissions(share.path(), std::fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(share.path(), Some(user.uid), None)?;
    let share_password = format!("bench-{}", std::process::id());
    let programs = Programs::new(rdhost, &s, share.path(), &share_password)?;
    let ctx = Ctx { s: &s, user: &user, share_dir: share.path(), share_password: &share_password, gfx: rdhost_client::Gfx::Off, remotefx: true };

    // The plan: repetition by repetition, workload by workload, every server in turn (rotated).
    let mut plan = Vec::new();
    let chosen: Vec<Workload> =
        Workload::all().into_iter().filter(|w| args.workloads.is_empty() || args.workloads.iter().any(|k| w.key().starts_with(k.as_str()))).collect();
    if chosen.is_empty() {
        let keys: Vec<String> = Workload::all().iter().map(|w| w.key()).collect();
        bail!("--workloads matches none of: {}", keys.join(", "));
    }
    for rep in 0..s.repeat {
        for &w in &chosen {
            for i in 0..kinds.len() {
                plan.push((rep, w, kinds[(i + rep) % kinds.len()]));
            }
        }
    }
    let nominal_total: f64 = plan.iter().map(|(_, w, _)| w.nominal_secs(&s) + 1.0).sum();
    eprintln!(
        "rdhost-bench: {} measurements ({} workloads x {} servers x {} repetitions), about {} plus waits for a quiet machine",
        plan.len(),
        chosen.len(),
        kinds.len(),
        s.repeat,
        fmt_secs(nominal_total)
    );
    let mut results = Results::default();
    let t_start = Instant::now();
    let mut nominal_done = 0.0;
    for (i, &(rep, w, kind)) in plan.iter().enumerate() {
        let nominal_left: f64 = plan[i..].iter().map(|(_, w, _)| w.nominal_secs(&s) + 1.0).sum();
        let pace = if nominal_done > 0.0 { t_start.elapsed().as_secs_f64() / nominal_done } else { 1.0 };
        let (busy, timed_out) = wait_quiet(s.quiet_busy, s.quiet_timeout);
        let load = procfs::load_average().unwrap_or(f64::NAN);
        if timed_out {
            results.quiet_waits_timed_out += 1;
        }
        eprintln!(
            "[{}/{}] {:<6} rep {}/{}: {} | others {:.0}% of the machine{}, load {:.2} | ETA {}",
            i + 1,
            plan.len(),
            kind.name(),
            rep + 1,
            s.repeat,
            w.describe(&s),
            busy,
            if timed_out { " (not quiet: gave up waiting)" } else { "" },
            load,
            fmt_secs(nominal_left * pace)
        );
        let t0 = Instant::now();
        let outcome = measure(kind, w, rdhost, &programs, &ctx).await;
        nominal_done += w.nominal_secs(&s) + 1.0;
        let key = w.key();
        match outcome {
            Ok(sample) => {
                for (name, v) in &sample.values {
                    results.values.entry((format!("{key}.{name}"), kind)).or_default().push(*v);
                }
                if !sample.codecs.is_empty() {
                    results.codecs.insert((key.clone(), kind), sample.codecs.clone());
                }
                if let Some(note) = &sample.note {
                    results.notes.entry((key.clone(), kind)).or_default().push(note.clone());
                }
                results.max_others = results.max_others.max(sample.others);
                results.log.push(format!(
                    "{} {} rep {}: others before {:.0}% of the machine, load {:.2}; during: others {:.0}% of one core; {:.1} s",
                    kind.name(),
                    key,
                    rep + 1,
                    busy,
                    load,
                    sample.others,
                    t0.elapsed().as_secs_f64()
                ));
                eprintln!("        done in {:.1} s{}", t0.elapsed().as_secs_f64(), summary(&sample));
            }
            Err(e) => {
                let line = format!("{} {} rep {}: {e:#}", kind.name(), key, rep + 1);
                eprintln!("        FAILED: {e:#}");
                results.failures.push(line);
                results.notes.entry((key.clone(), kind)).or_default().push(format!("failed: {}", first_line(&format!("{e:#}"))));
            }
        }
    }
    user.end_processes();
    let machine = report::Machine::probe(&kinds);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let md = report::markdown(&results, &s, &kinds, &machine, &started_at, &command, t_start.elapsed());
    let svg = chart::svg(&report::ratios(&results, &kinds))?;
    let md_path = out.join("BENCHMARKS.md");
    std::fs::write(&md_path, md).with_context(|| format!("write {}", md_path.display()))?;
    std::fs::write(out.join("BENCHMARKS.svg"), svg).context("write BENCHMARKS.svg")?;
    eprintln!("rdhost-bench: wrote {} and BENCHMARKS.svg in {}", md_path.display(), fmt_secs(t_start.elapsed().as_secs_f64()));
    drop(user);
    if !results.failures.is_empty() {
        bail!("{} measurements failed:\n{}", results.failures.len(), results.failures.join("\n"));
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 160 { format!("{}…", &line[..line.floor_char_boundary(160)]) } else { line.to_owned() }
}

fn summary(s: &Sample) -> String {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (k, v) in &s.values {
        by.entry(k).or_default().push(*v);
    }
    let parts: Vec<String> = by
        .iter()
        .filter(|(k, _)| !k.ends_with("_cpu") || **k == "cpu")
        .map(|(k, v)| if v.len() > 1 { format!("{k} median {:.1}", crate::median(v)) } else { format!("{k} {:.1}", v[0]) })
        .collect();
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join(", ")) }
}

/// One measurement: start the server with the workload's program, run the workload, stop it.
async fn measure(kind: ServerKind, w: Workload, rdhost: &Path, programs: &Programs, ctx: &Ctx<'_>) -> Result<Sample> {
    let script = programs.script(w, kind);
    let ctx = &Ctx {
        gfx: match w {
            Workload::Latency(o) | Workload::Animation(_, _, o) => o.gfx(),
            _ => rdhost_client::Gfx::Off,
        },
        remotefx: match w {
            Workload::Latency(o) | Workload::Animation(_, _, o) => o.remotefx(),
            _ => true,
        },
        ..*ctx
    };
    let size = match w {
        Workload::Latency(_) => LATENCY_SIZE,
        Workload::Animation(x, y, _) => (x, y),
        Workload::Scroll | Workload::Typing => TERMINAL_SIZE,
        Workload::Session => SESSION_SIZE,
        Workload::Viewers => ctx.s.viewer_size,
    };
    // A session left by an earlier measurement must not be reconnected to.
    ctx.user.end_processes();
    let _ = std::fs::remove_file(ctx.share_dir.join("invitation.msrcIncident"));
    let desktop = Desktop { script: &script, size, rdhost_config: "codec = \"auto\"" };
    let mut server = Server::start(kind, rdhost, &desktop)?;
    let result = match w {
        Workload::Latency(_) => workloads::latency(&mut server, ctx).await,
        Workload::Animation(x, y, _) => workloads::animation(&mut server, ctx, (x, y)).await,
        Workload::Scroll => workloads::scroll(&mut server, ctx).await,
        Workload::Typing => workloads::typing(&mut server, ctx).await,
        Workload::Session => workloads::session(&mut server, ctx).await,
        Workload::Viewers => workloads::viewers(&mut server, ctx).await,
    };
    let result = result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", server.log()));
    if result.is_ok() {
        server.check_running()?;
    }
    ctx.user.end_processes();
    drop(server);
    result
}
