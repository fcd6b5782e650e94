//! The X desktop figures (issue 3), against a real `rdhost serve --desktop x11`:
//!
//! 1. Input-to-pixel latency: a key pressed at the headless client until the client has decoded
//!    the changed pixels. The session runs `rdhost-xrecorder`, which repaints its full-screen
//!    window in another colour on every key press.
//! 2. A full-screen animation (`rdhost-xanimate`, every pixel changes every frame, with the frame
//!    number drawn as a bar code) at 1280x800 and 1920x1080: frames per second the client shows
//!    (distinct frame numbers decoded per second) and CPU of the host, the X server and the
//!    animation.
//! 3. Idle CPU per disconnected x11 session over 60 s, running the default session (window
//!    manager + terminal).
//! 4. Memory per x11 session: growth of the host's RSS, and the PSS of each session's X server
//!    and of its programs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdhost_client::Client;

use crate::host::Host;
use crate::{WAIT, median, num, percentile, procfs};

/// The recorder's two colours (rdhost-xprobe): before the first key press and after it.
pub(crate) const RECORDER_COLOURS: [[u8; 3]; 2] = [[0x33, 0x66, 0xcc], [0xcc, 0x66, 0x33]];

pub struct X11Settings {
    pub presses: usize,
    pub animation_secs: u64,
    pub idle_sessions: usize,
    pub idle_secs: u64,
}

pub struct Animation {
    pub size: (u16, u16),
    pub secs: f64,
    pub client_fps: f64,
    pub mbit_per_s: f64,
    pub host_cpu: f64,
    pub x_server_cpu: f64,
    pub animation_cpu: f64,
}

pub struct X11Figures {
    pub latency_ms: Vec<f64>,
    pub animations: Vec<Animation>,
    pub idle_cpu_per_session: f64,
    /// The same, per process name ("rdhost 0.010, Xorg 0.200, ...").
    pub idle_cpu_parts: String,
    pub idle_sessions: usize,
    pub idle_secs: u64,
    pub session_command: String,
    pub host_rss_growth_kib_per_session: f64,
    pub x_server_pss_kib: f64,
    pub session_programs_pss_kib: f64,
}

/// A workspace binary next to the rdhost binary (the X test programs of crates/xprobe).
pub(crate) fn probe_bin(rdhost: &Path, name: &str) -> Result<PathBuf> {
    let path = rdhost.with_file_name(name);
    if !path.is_file() {
        bail!("{} not found: build the workspace (cargo build --release --workspace)", path.display());
    }
    Ok(path)
}

fn x11_config(command: &str) -> String {
    format!("desktop = \"x11\"\nsession_command = {command:?}\ncodec = \"auto\"\n")
}

async fn connect(host: &Host, user: &str, password: &str, size: (u16, u16)) -> Result<Client> {
    let mut cfg = host.client(user, password);
    (cfg.width, cfg.height) = size;
    let mut c = rdhost_client::connect(cfg).await.with_context(|| format!("{user} connects"))?;
    c.pump_until(WAIT, |c| c.server_session_id().is_some()).await?;
    Ok(c)
}

pub(crate) fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    (0..3).all(|i| a[i].abs_diff(b[i]) <= 24)
}

pub async fn run(bin: &Path, s: &X11Settings) -> Result<X11Figures> {
    let latency_ms = latency(bin, s.presses).await?;
    let mut animations = Vec::new();
    for size in [(1280, 800), (1920, 1080)] {
        animations.push(animation(bin, size, s.animation_secs).await?);
    }
    let idle = idle_sessions(bin, s.idle_sessions, s.idle_secs).await?;
    Ok(X11Figures { latency_ms, animations, ..idle })
}

async fn latency(bin: &Path, presses: usize) -> Result<Vec<f64>> {
    let recorder = probe_bin(bin, "rdhost-xrecorder")?;
    let users = [("lat".to_owned(), "lat-pw".to_owned())];
    let mut host = Host::start(bin, "x11-latency", &users, &x11_config(&format!("exec {} --override-redirect >/dev/null", recorder.display())))?;
    let mut c = connect(&host, "lat", "lat-pw", (1024, 768)).await?;
    eprintln!("rdhost-bench: x11 latency, {presses} key presses");
    let samples = key_to_pixel(&mut c, presses).await.map_err(|e| anyhow::anyhow!("{e:#}; host log:\n{}", host.log()))?;
    host.check_running()?;
    c.disconnect().await?;
    Ok(samples)
}

/// Key press to changed pixels decoded, `presses` times, on a client showing `rdhost-xrecorder`
/// full screen (waits for its window first). Every server the benchmarks measure goes through
/// this one loop.
pub(crate) async fn key_to_pixel(c: &mut Client, presses: usize) -> Result<Vec<f64>> {
    let probe = (c.width() / 2, c.height() / 2);
    let colour = |c: &Client| c.pixel(probe.0, probe.1).unwrap_or([0, 0, 0]);
    if !c.pump_until(WAIT, |c| RECORDER_COLOURS.iter().any(|&k| near(colour(c), k))).await? {
        bail!("the recorder's window never showed (pixel {:?})", colour(c));
    }
    // No window manager: focus follows the pointer.
    c.mouse_move(probe.0, probe.1).await?;
    c.pump_for(Duration::from_millis(300)).await?;
    let mut samples = Vec::with_capacity(presses);
    for i in 0..presses {
        let before = colour(c);
        let t0 = Instant::now();
        c.key(0x1E, false, true).await?;
        let changed = c.pump_until(WAIT, |c| !near(colour(c), before)).await?;
        let dt = t0.elapsed();
        c.key(0x1E, false, false).await?;
        if !changed {
            bail!("press {i}: the pixel did not change in {WAIT:?}");
        }
        samples.push(crate::ms(dt));
        // Let the rest of the frame arrive before the next press.
        c.pump_for(Duration::from_millis(20)).await?;
    }
    Ok(samples)
}

/// Read and decode for `d` while the server keeps sending: `Client::pump_for` only looks at its
/// deadline when the socket is idle, so a client that decodes slower than the server sends (a
/// debug build on busy cores) would never return from it. The predicate is checked after every PDU.
pub(crate) async fn pump_streaming(c: &mut Client, d: Duration) -> Result<()> {
    let t0 = Instant::now();
    c.pump_until(d, |_| t0.elapsed() >= d).await?;
    Ok(())
}

/// What a client took in while it counted animation frames.
pub(crate) struct FrameCount {
    /// Distinct frame numbers shown.
    pub frames: u64,
    pub bytes: u64,
    pub wall: f64,
}

impl FrameCount {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.wall
    }

    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.wall / 1e6
    }
}

/// Wait for `rdhost-xanimate`'s frame number, let a second go by, then count for `secs` the
/// frames the client shows (each new frame number decoded).
pub(crate) async fn count_frames(c: &mut Client, secs: f64, mut started: impl FnMut()) -> Result<FrameCount> {
    if !c.pump_until(WAIT, |c| frame_number(c).is_some()).await? {
        bail!("no animation frame number on screen at {}x{}", c.width(), c.height());
    }
    pump_streaming(c, Duration::from_secs(1)).await?;
    started();
    let (bytes0, t0) = (c.bytes_received(), Instant::now());
    let mut frames = 0u64;
    let mut last = frame_number(c);
    while t0.elapsed().as_secs_f64() < secs {
        c.pump_until(Duration::from_millis(200), |c| {
            let n = frame_number(c);
            n.is_some() && n != last
        })
        .await?;
        let n = frame_number(c);
        if n.is_some() && n != last {
            frames += 1;
            last = n;
        }
    }
    Ok(FrameCount { frames, bytes: c.bytes_received() - bytes0, wall: t0.elapsed().as_secs_f64() })
}

/// The frame number `rdhost-xanimate` draws at the top-left of the screen.
pub(crate) fn frame_number(c: &Client) -> Option<u16> {
    rdhost_xprobe::animate::read_frame_code(|x, y| {
        let [r, g, b] = c.pixel(u16::try_from(x).ok()?, u16::try_from(y).ok()?)?;
        Some(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
    })
}

async fn animation(bin: &Path, size: (u16, u16), secs: u64) -> Result<Animation> {
    let animate = probe_bin(bin, "rdhost-xanimate")?;
    let users = [("anim".to_owned(), "anim-pw".to_owned())];
    let command = format!("exec {} --fps 60 2>/dev/null", animate.display());
    let mut host = Host::start(bin, "x11-animation", &users, &x11_config(&command))?;
    let mut c = connect(&host, "anim", "anim-pw", size).await?;
    eprintln!("rdhost-bench: x11 animation at {}x{} for {secs} s", size.0, size.1);
    let hz = procfs::ticks_per_sec() as f64;
    let mut before = Default::default();
    let counted = count_frames(&mut c, secs as f64, || before = procfs::cpu_by_name(host.pid())).await?;
    let after = procfs::cpu_by_name(host.pid());
    let wall = counted.wall;
    let used = |name: &str| 100.0 * after.get(name).copied().unwrap_or(0).saturating_sub(before.get(name).copied().unwrap_or(0)) as f64 / hz / wall;
    let x_server_cpu = used("Xorg") + used("Xvfb");
    let figures = Animation {
        size,
        secs: wall,
        client_fps: counted.fps(),
        mbit_per_s: counted.mbit_per_s(),
        host_cpu: used("rdhost"),
        x_server_cpu,
        animation_cpu: used("rdhost-xanimate"),
    };
    host.check_running()?;
    c.disconnect().await?;
    Ok(figures)
}

async fn idle_sessions(bin: &Path, n: usize, secs: u64) -> Result<X11Figures> {
    let command = "x-terminal-emulator & exec x-window-manager";
    let users: Vec<(String, String)> = (0..n).map(|i| (format!("idle{i}"), format!("idle{i}-pw"))).collect();
    let mut host = Host::start(bin, "x11-idle", &users, &x11_config(command))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = procfs::memory(host.pid()).context("host memory")?.host_rss_kib;
    for (i, (user, pw)) in users.iter().enumerate() {
        let mut c = connect(&host, user, pw, (1280, 800)).await?;
        // Let the window manager and terminal start and draw.
        c.pump_for(Duration::from_secs(3)).await?;
        c.disconnect().await?;
        eprintln!("rdhost-bench: x11 idle session {}/{n}", i + 1);
    }
    host.check_running()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss1 = procfs::memory(host.pid()).context("host memory")?.host_rss_kib;
    let pss = procfs::pss_by_name(host.pid());
    let x_pss: u64 = pss.iter().filter(|(name, _)| name == "Xorg" || name == "Xvfb").map(|(_, k)| k).sum();
    let other_pss: u64 = pss.iter().filter(|(name, _)| name != "Xorg" && name != "Xvfb").map(|(_, k)| k).sum();
    eprintln!("rdhost-bench: x11 idle CPU over {secs} s with {n} sessions");
    let hz = procfs::ticks_per_sec() as f64;
    let before = procfs::cpu_ticks(host.pid());
    let by_name_before = procfs::cpu_by_name(host.pid());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = procfs::cpu_ticks(host.pid());
    let by_name_after = procfs::cpu_by_name(host.pid());
    let wall = t0.elapsed().as_secs_f64();
    let used: u64 = after.iter().map(|(k, t)| t.saturating_sub(before.get(k).copied().unwrap_or(0))).sum();
    host.check_running()?;
    let per = n.max(1) as f64;
    let mut parts: Vec<(String, f64)> = by_name_after
        .iter()
        .map(|(name, t)| (name.clone(), 100.0 * t.saturating_sub(by_name_before.get(name).copied().unwrap_or(0)) as f64 / hz / wall / per))
        .filter(|(_, pct)| *pct > 0.0)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let idle_cpu_parts = parts.iter().map(|(name, pct)| format!("{name} {pct:.3}")).collect::<Vec<_>>().join(", ");
    Ok(X11Figures {
        latency_ms: Vec::new(),
        animations: Vec::new(),
        idle_cpu_per_session: 100.0 * used as f64 / hz / wall / per,
        idle_cpu_parts,
        idle_sessions: n,
        idle_secs: secs,
        session_command: command.to_owned(),
        host_rss_growth_kib_per_session: rss1.saturating_sub(rss0) as f64 / per,
        x_server_pss_kib: x_pss as f64 / per,
        session_programs_pss_kib: other_pss as f64 / per,
    })
}

pub fn report(f: &X11Figures) {
    let mut t = String::new();
    let _ = writeln!(t, "rdhost-bench x11 results (loopback, headless client, TLS, codec auto)");
    let _ = writeln!(t, "{:-<78}", "");
    let l = &f.latency_ms;
    let _ = writeln!(t, "1. Key press -> changed pixels decoded at the client (n={}, 1024x768)", l.len());
    let _ = writeln!(t, "   median {:.1} ms   p95 {:.1} ms   min {:.1} ms   max {:.1} ms", median(l), percentile(l, 95.0), percentile(l, 0.0), percentile(l, 100.0));
    let _ = writeln!(t, "2. Full-screen animation (every pixel, 60 fps at the source)");
    for a in &f.animations {
        let _ = writeln!(
            t,
            "   {}x{}: client shows {:.1} fps, {:.1} Mbit/s; CPU % of one core: host {:.1}, X server {:.1}, animation {:.1} ({:.0} s)",
            a.size.0, a.size.1, a.client_fps, a.mbit_per_s, a.host_cpu, a.x_server_cpu, a.animation_cpu, a.secs
        );
    }
    let _ = writeln!(t, "3. Idle CPU per disconnected x11 session ({} sessions running {:?}, {} s): {:.3} % of one core", f.idle_sessions, f.session_command, f.idle_secs, f.idle_cpu_per_session);
    let _ = writeln!(t, "   by process: {}", f.idle_cpu_parts);
    let _ = writeln!(
        t,
        "4. Memory per x11 session: host RSS +{:.1} MiB, X server PSS {:.1} MiB, session programs PSS {:.1} MiB",
        f.host_rss_growth_kib_per_session / 1024.0,
        f.x_server_pss_kib / 1024.0,
        f.session_programs_pss_kib / 1024.0
    );
    print!("{t}");
    let anims: Vec<String> = f
        .animations
        .iter()
        .map(|a| {
            format!(
                "{{\"width\":{},\"height\":{},\"client_fps\":{},\"mbit_per_s\":{},\"host_cpu\":{},\"x_server_cpu\":{},\"animation_cpu\":{}}}",
                a.size.0, a.size.1, num(a.client_fps), num(a.mbit_per_s), num(a.host_cpu), num(a.x_server_cpu), num(a.animation_cpu)
            )
        })
        .collect();
    println!(
        "{{\"rdhost_bench_x11\":{{\"latency_ms\":{{\"n\":{},\"median\":{},\"p95\":{}}},\"animation\":[{}],\"idle_cpu_percent_per_session\":{},\"memory_kib_per_session\":{{\"host_rss_growth\":{},\"x_server_pss\":{},\"session_programs_pss\":{}}}}}}}",
        l.len(),
        num(median(l)),
        num(percentile(l, 95.0)),
        anims.join(","),
        num(f.idle_cpu_per_session),
        num(f.host_rss_growth_kib_per_session),
        num(f.x_server_pss_kib),
        num(f.session_programs_pss_kib)
    );
}
