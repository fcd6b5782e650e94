//! `rdhost-bench`: the figures of issue 2 measured against a real `rdhost serve` on loopback
//! with the headless client.
//!
//! 1. Time from just before TCP connect to the prompt on the client's screen, for a new
//!    session and for a reconnect to a disconnected one (median and p90).
//! 2. Bytes the host sends per typed character, each echoed before the next is typed.
//! 3. Host memory with N disconnected idle terminal sessions: VmRSS of the host, PSS of its
//!    descendants (the sessions' shells) separately.
//! 4. Host CPU (host and descendants) with 50 disconnected idle sessions, % of one core.
//!
//! `--x11` measures X desktops instead (x11.rs), `--sessions-figures` session management
//! (sessions.rs): `rdhost connect` to the first frame, host CPU with N viewers, events to N
//! subscribers. `--sharing-figures` measures desktop sharing (sharing.rs): sharer CPU with 1, 5
//! and 20 attendees of a full-screen animation, `rdhost share connect-to-client` to the first
//! frame at a listening viewer, and key-to-pixel latency of `rdhost view` and xfreerdp windows
//! against one host session.
//!
//! `--compare` runs rdhost against xrdp and FreeRDP's shadow server on this machine and writes
//! BENCHMARKS.md with BENCHMARKS.svg (compare/).
//!
//! Progress goes to stderr; stdout gets a table and one JSON line (`{"rdhost_bench": ...}`).

mod compare;
mod host;
mod procfs;
mod sessions;
mod sharing;
mod x11;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use rdhost_client::Client;

use host::Host;

/// The terminal desktop's default font size, which `find_text` must be told.
const FONT_PX: f32 = 16.0;
/// Limit for anything one step waits for (a prompt, an echo).
const WAIT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Measure rdhost: time to first frame, bytes per echoed key, memory and CPU of idle sessions")]
struct Args {
    /// The rdhost binary (default: `rdhost` next to this executable, i.e. the same target dir).
    #[arg(long)]
    rdhost: Option<PathBuf>,
    /// Fewer iterations and sessions: a smoke run.
    #[arg(long)]
    quick: bool,
    /// Connects measured for each of new session / reconnect (default 20, quick 3).
    #[arg(long)]
    iterations: Option<usize>,
    /// Characters typed for the bytes-per-character figure (default 50, quick 10).
    #[arg(long)]
    chars: Option<usize>,
    /// Idle-session counts at which the host's memory is measured (default 0,1,50,200; quick 0,1,5).
    #[arg(long, value_delimiter = ',')]
    sessions: Option<Vec<usize>>,
    /// Session count at which CPU is measured (default 50, quick 5; must be in --sessions).
    #[arg(long)]
    cpu_sessions: Option<usize>,
    /// Length of the CPU measurement in seconds (default 10, quick 3).
    #[arg(long)]
    cpu_secs: Option<u64>,
    /// Measure X desktops instead (issue 3): input-to-pixel latency, full-screen animation fps
    /// and CPU, idle CPU and memory per x11 session. Needs an X server, the rdhost-xprobe
    /// programs built next to rdhost, and for the idle figure a window manager and terminal.
    #[arg(long)]
    x11: bool,
    /// x11: key presses for the latency figure (default 200, quick 20).
    #[arg(long)]
    presses: Option<usize>,
    /// x11: idle sessions for the idle CPU and memory figures (default 5, quick 2).
    #[arg(long)]
    x11_sessions: Option<usize>,
    /// x11: length of the idle CPU measurement in seconds (default 60, quick 5).
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Measure session management instead (issue 7): `rdhost connect A --dest B` to the moved
    /// client's first frame of A, host CPU with N viewers of an animated x11 session, events
    /// delivered to N subscribers while sessions log on and off. Needs an X server, xterm and
    /// the rdhost-xprobe programs built next to rdhost.
    #[arg(long)]
    sessions_figures: bool,
    /// sessions: only this figure.
    #[arg(long, value_enum)]
    only: Option<sessions::Figure>,
    /// sessions: `connect` moves measured per desktop kind (default 20, quick 4).
    #[arg(long)]
    connects: Option<usize>,
    /// sessions: viewer counts at which host CPU is measured (default 1,5,20; quick 1,3; 0 is
    /// the animated session's own client alone).
    #[arg(long, value_delimiter = ',')]
    viewers: Option<Vec<usize>>,
    /// sessions: length of each viewer CPU measurement in seconds (default 10, quick 3).
    #[arg(long)]
    viewer_secs: Option<u64>,
    /// sessions: runs of the viewers figure as SIZE@FPS, the animated desktop's size and the
    /// animation's frame rate (default 1024x768@60,640x400@30: the size of the x11 figures, and
    /// one where a client alone takes every frame; quick 640x400@30).
    #[arg(long, value_delimiter = ',', value_parser = parse_run)]
    viewer_runs: Option<Vec<((u16, u16), u32)>>,
    /// sessions: event subscribers (default 10, quick 3).
    #[arg(long)]
    subscribers: Option<usize>,
    /// sessions: sessions that log on and off during the events figure (default 100, quick 10).
    #[arg(long)]
    churn: Option<usize>,
    /// sessions: of those, how many log on at the same time (default 10, quick 5).
    #[arg(long)]
    churn_parallel: Option<usize>,
    /// Measure desktop sharing instead (issue 8): sharer CPU with N attendees of a full-screen
    /// animation, `rdhost share connect-to-client` to the first frame at a listening viewer, and
    /// key-to-pixel latency of `rdhost view` and xfreerdp against one host session. Needs Xvfb,
    /// the rdhost-xprobe programs built next to rdhost, and xfreerdp for its latency row.
    #[arg(long)]
    sharing_figures: bool,
    #[command(flatten)]
    sharing: sharing::SharingArgs,
    #[command(flatten)]
    compare: compare::CompareArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    keep_freed_memory();
    let args = Args::parse();
    let bin = match &args.rdhost {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this executable has no directory")?
            .join("rdhost"),
    };
    if !bin.is_file() {
        bail!(
            "rdhost binary not found at {}: build it first, in the same target dir and profile \
             (e.g. `CARGO_TARGET_DIR=$HOME/.cache/rdhost-target cargo build --release -p rdhost`), \
             or pass --rdhost PATH",
            bin.display()
        );
    }
    // Ctrl-C / SIGTERM drop the benchmark future, and with it every host it started (each
    // host's drop stops it and its sessions).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = run(&args, bin) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; hosts stopped"),
        _ = term.recv() => bail!("terminated; hosts stopped"),
    }
}

/// `WIDTHxHEIGHT@FPS`, each side 200..=8192 (what RDP allows), FPS 1..=240.
fn parse_run(s: &str) -> Result<((u16, u16), u32), String> {
    let bad = || format!("{s:?} is not SIZE@FPS like 1024x768@60 (each side 200..8192, 1..240 fps)");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u16, u16) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    let fps: u32 = fps.trim().parse().map_err(|_| bad())?;
    if [w, h].iter().any(|side| !(200..=8192).contains(side)) || !(1..=240).contains(&fps) {
        return Err(bad());
    }
    Ok(((w, h), fps))
}

struct Settings {
    iterations: usize,
    chars: usize,
    sessions: Vec<usize>,
    cpu_sessions: usize,
    cpu_secs: u64,
}

async fn run(args: &Args, bin: PathBuf) -> Result<()> {
    let q = args.quick;
    if args.compare.compare {
        eprintln!("rdhost-bench: rdhost binary {}", bin.display());
        return compare::run(&bin, &args.compare, q).await;
    }
    if args.x11 {
        let settings = x11::X11Settings {
            presses: args.presses.unwrap_or(if q { 20 } else { 200 }),
            animation_secs: if q { 3 } else { 10 },
            idle_sessions: args.x11_sessions.unwrap_or(if q { 2 } else { 5 }),
            idle_secs: args.idle_secs.unwrap_or(if q { 5 } else { 60 }),
        };
        let figures = x11::run(&bin, &settings).await?;
        x11::report(&figures);
        return Ok(());
    }
    if args.sessions_figures {
        let settings = sessions::SessionSettings {
            connects: args.connects.unwrap_or(if q { 4 } else { 20 }),
            viewers: {
                let mut v = args.viewers.clone().unwrap_or(if q { vec![1, 3] } else { vec![1, 5, 20] });
                v.sort_unstable();
                v.dedup();
                v
            },
            viewer_secs: args.viewer_secs.unwrap_or(if q { 3 } else { 10 }),
            viewer_runs: args.viewer_runs.clone().unwrap_or(if q { vec![((640, 400), 30)] } else { vec![((1024, 768), 60), ((640, 400), 30)] }),
            subscribers: args.subscribers.unwrap_or(if q { 3 } else { 10 }).max(1),
            churn_sessions: args.churn.unwrap_or(if q { 10 } else { 100 }).max(1),
            churn_parallel: args.churn_parallel.unwrap_or(if q { 5 } else { 10 }).max(1),
            only: args.only,
        };
        eprintln!("rdhost-bench: host binary {}", bin.display());
        let figures = sessions::run(&bin, &settings).await?;
        sessions::report(&figures);
        return Ok(());
    }
    if args.sharing_figures {
        eprintln!("rdhost-bench: rdhost binary {}", bin.display());
        let figures = sharing::run(&bin, &args.sharing, q).await?;
        sharing::report(&figures);
        return Ok(());
    }
    let s = Settings {
        iterations: args.iterations.unwrap_or(if q { 3 } else { 20 }),
        chars: args.chars.unwrap_or(if q { 10 } else { 50 }),
        sessions: {
            let mut v = args.sessions.clone().unwrap_or(if q { vec![0, 1, 5] } else { vec![0, 1, 50, 200] });
            v.sort_unstable();
            v.dedup();
            v
        },
        cpu_sessions: args.cpu_sessions.unwrap_or(if q { 5 } else { 50 }),
        cpu_secs: args.cpu_secs.unwrap_or(if q { 3 } else { 10 }),
    };
    eprintln!("rdhost-bench: host binary {}", bin.display());

    // Connect times and echo bytes: one host, a fresh user per new session (a user's logon
    // returns their disconnected session, so a reconnect is just the same user again).
    let mut users: Vec<(String, String)> =
        (0..s.iterations).map(|i| (format!("conn{i}"), format!("conn{i}-pw"))).collect();
    users.push(("typist".into(), "typist-pw".into()));
    let mut host = Host::start(&bin, "connect", &users, "")?;
    eprintln!("rdhost-bench: host pid {} on {}", host.pid(), host.addr);
    let (new_ms, reconnect_ms) = connect_times(&mut host, &users[..s.iterations]).await?;
    let echo = echo_bytes(&mut host, "typist", "typist-pw", s.chars).await?;
    drop(host);

    // Memory and CPU: a second host, so that only the sessions counted here exist.
    let max = s.sessions.iter().copied().max().unwrap_or(0).max(s.cpu_sessions);
    let idle_users: Vec<(String, String)> = (0..max).map(|i| (format!("idle{i}"), format!("idle{i}-pw"))).collect();
    eprintln!("rdhost-bench: adding {max} users");
    let mut host = Host::start(&bin, "idle", &idle_users, "")?;
    eprintln!("rdhost-bench: host pid {} on {}", host.pid(), host.addr);
    let mut mem = Vec::new();
    let mut cpu = None;
    let mut made = 0;
    let mut targets: Vec<usize> = s.sessions.clone();
    if !targets.contains(&s.cpu_sessions) {
        targets.push(s.cpu_sessions);
        targets.sort_unstable();
    }
    for &n in &targets {
        while made < n {
            let (user, pw) = &idle_users[made];
            let mut c = connect_to_prompt(&host, user, pw).await.with_context(|| format!("idle session {made}"))?.0;
            wait_session_id(&mut c).await?;
            c.disconnect().await.context("disconnect")?;
            made += 1;
            if made % 10 == 0 || made == n {
                eprintln!("rdhost-bench: {made} idle sessions");
            }
        }
        host.check_running()?;
        // Let the host finish tearing down the last connection and settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if s.sessions.contains(&n) {
            let m = procfs::memory(host.pid()).context("read the host's /proc memory")?;
            eprintln!(
                "rdhost-bench: {n} sessions: host VmRSS {} KiB, {} descendants PSS {} KiB",
                m.host_rss_kib, m.children, m.children_pss_kib
            );
            mem.push((n, m));
        }
        if n == s.cpu_sessions {
            eprintln!("rdhost-bench: measuring CPU with {n} idle sessions for {} s", s.cpu_secs);
            cpu = Some((n, cpu_percent(host.pid(), s.cpu_secs).await));
        }
    }
    host.check_running()?;
    drop(host);

    report(&s, &new_ms, &reconnect_ms, &echo, &mem, cpu);
    Ok(())
}

fn prompt_on_screen(c: &Client) -> bool {
    let (w, h) = (u32::from(c.width()), u32::from(c.height()));
    ["$", "#"]
        .iter()
        .any(|p| rdhost_desktop::terminal::find_text(c.rgba(), w, h, FONT_PX, p).is_some())
}

/// Connect and pump until a shell prompt is on screen; returns the client and the time from
/// just before `connect()` to the prompt.
async fn connect_to_prompt(host: &Host, user: &str, password: &str) -> Result<(Client, Duration)> {
    let cfg = host.client(user, password);
    let t0 = Instant::now();
    let mut c = rdhost_client::connect(cfg).await.with_context(|| format!("{user} connects"))?;
    // Look at the picture only when it changed (a prompt check costs more than a PDU).
    let mut seen = u64::MAX;
    let shown = c
        .pump_until(WAIT, |c| {
            if c.frames_received() == seen {
                return false;
            }
            seen = c.frames_received();
            prompt_on_screen(c)
        })
        .await?;
    let took = t0.elapsed();
    if !shown {
        let png = std::env::temp_dir().join(format!("rdhost-bench-{user}-noprompt.png"));
        let _ = c.save_png(&png);
        bail!("{user}: no prompt on screen after {WAIT:?} (screen saved to {})", png.display());
    }
    Ok((c, took))
}

async fn wait_session_id(c: &mut Client) -> Result<u32> {
    c.pump_until(WAIT, |c| c.server_session_id().is_some()).await?;
    c.server_session_id().context("the host did not announce the session id")
}

async fn connect_times(host: &mut Host, users: &[(String, String)]) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut new, mut again) = (Vec::new(), Vec::new());
    for (i, (user, pw)) in users.iter().enumerate() {
        let (mut c, took) = connect_to_prompt(host, user, pw).await?;
        let id = wait_session_id(&mut c).await?;
        c.disconnect().await?;
        new.push(ms(took));
        // Let the host see the disconnect, so that this is a reconnect to a disconnected
        // session and not a takeover of a connected one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut c, took2) = connect_to_prompt(host, user, pw).await?;
        let id2 = wait_session_id(&mut c).await?;
        if id2 != id {
            bail!("{user}: reconnect got session {id2}, not its session {id}");
        }
        c.disconnect().await?;
        again.push(ms(took2));
        eprintln!(
            "rdhost-bench: connect {}/{}: new session {:.1} ms, reconnect {:.1} ms",
            i + 1,
            users.len(),
            ms(took),
            ms(took2)
        );
        host.check_running()?;
    }
    Ok((new, again))
}

struct Echo {
    chars: usize,
    bytes: Vec<u64>,
    /// Keystroke sent to the first byte of its echo, ms.
    latency_ms: Vec<f64>,
    idle_bytes_per_s: f64,
    codecs: String,
    on_screen: bool,
}

/// Pump until no bytes arrive for `quiet` (or `max` passes).
async fn pump_until_quiet(c: &mut Client, quiet: Duration, max: Duration) -> Result<()> {
    let end = Instant::now() + max;
    while Instant::now() < end {
        let b = c.bytes_received();
        if !c.pump_until(quiet, |c| c.bytes_received() != b).await? {
            break;
        }
    }
    Ok(())
}

/// Type `n` letters, one at a time, each only once the previous one's update has gone quiet:
/// the bytes that came back for each, the time to the first of them (ms), and what was typed.
async fn type_and_count(c: &mut Client, n: usize) -> Result<(Vec<u64>, Vec<f64>, String)> {
    let letters: Vec<char> = ('a'..='z').collect();
    let mut typed = String::new();
    let (mut bytes, mut latency_ms) = (Vec::new(), Vec::new());
    for i in 0..n {
        let ch = letters[i % letters.len()];
        let before = c.bytes_received();
        let t0 = Instant::now();
        c.type_text(&ch.to_string()).await?;
        if !c.pump_until(WAIT, |c| c.bytes_received() != before).await? {
            bail!("typed {ch:?}: nothing came back in {WAIT:?}");
        }
        latency_ms.push(ms(t0.elapsed()));
        // The echo may come in several PDUs: take everything until the line goes quiet.
        pump_until_quiet(c, Duration::from_millis(150), Duration::from_secs(5)).await?;
        bytes.push(c.bytes_received() - before);
        typed.push(ch);
    }
    Ok((bytes, latency_ms, typed))
}

async fn echo_bytes(host: &mut Host, user: &str, password: &str, n: usize) -> Result<Echo> {
    let (mut c, _) = connect_to_prompt(host, user, password).await?;
    wait_session_id(&mut c).await?;
    pump_until_quiet(&mut c, Duration::from_millis(500), Duration::from_secs(10)).await?;
    // What an idle connected session costs, to tell it apart from the echoes.
    let b0 = c.bytes_received();
    let idle_window = Duration::from_secs(2);
    c.pump_for(idle_window).await?;
    let idle_bytes_per_s = (c.bytes_received() - b0) as f64 / idle_window.as_secs_f64();
    eprintln!("rdhost-bench: idle connected session: {idle_bytes_per_s:.0} bytes/s");

    let (bytes, latency_ms, typed) = type_and_count(&mut c, n).await?;
    // The last few letters (all of them could wrap at the screen's edge) must be on screen.
    let tail: String = typed.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    let on_screen = rdhost_desktop::terminal::find_text(
        c.rgba(),
        c.width().into(),
        c.height().into(),
        FONT_PX,
        &tail,
    )
    .is_some();
    let codecs = c
        .codecs_seen()
        .iter()
        .map(|(codec, k)| format!("{codec:?}:{k}"))
        .collect::<Vec<_>>()
        .join(" ");
    c.disconnect().await?;
    eprintln!("rdhost-bench: typed {n} characters; echo on screen: {on_screen}; codecs {codecs}");
    Ok(Echo { chars: n, bytes, latency_ms, idle_bytes_per_s, codecs, on_screen })
}

async fn cpu_percent(pid: u32, secs: u64) -> f64 {
    let hz = procfs::ticks_per_sec() as f64;
    let before = procfs::cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = procfs::cpu_ticks(pid);
    let wall = t0.elapsed().as_secs_f64();
    let used: u64 = after
        .iter()
        .map(|(k, t)| t.saturating_sub(before.get(k).copied().unwrap_or(0)))
        .sum();
    100.0 * used as f64 / hz / wall
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// A JSON number (NaN becomes null).
fn num(x: f64) -> String {
    if x.is_finite() { format!("{x:.2}") } else { "null".into() }
}

fn report(
    s: &Settings,
    new_ms: &[f64],
    reconnect_ms: &[f64],
    echo: &Echo,
    mem: &[(usize, procfs::Memory)],
    cpu: Option<(usize, f64)>,
) {
    let echo_bytes: Vec<f64> = echo.bytes.iter().map(|&b| b as f64).collect();
    let mut t = String::new();
    let _ = writeln!(t, "rdhost-bench results (loopback, headless client 1024x768, TLS)");
    let _ = writeln!(t, "{:-<78}", "");
    let _ = writeln!(t, "1. TCP connect -> prompt on screen (n={} each)", s.iterations);
    let _ = writeln!(t, "   {:<22} median {:>8.1} ms   p90 {:>8.1} ms   min {:>8.1} ms", "new session", median(new_ms), percentile(new_ms, 90.0), percentile(new_ms, 0.0));
    let _ = writeln!(t, "   {:<22} median {:>8.1} ms   p90 {:>8.1} ms   min {:>8.1} ms", "reconnect", median(reconnect_ms), percentile(reconnect_ms, 90.0), percentile(reconnect_ms, 0.0));
    let _ = writeln!(t, "2. Bytes from host per typed character echoed (n={}, each echoed before the next)", echo.chars);
    let _ = writeln!(t, "   mean {:.0} B/char   median {:.0}   p90 {:.0}   min {:.0}   max {:.0}", mean(&echo_bytes), median(&echo_bytes), percentile(&echo_bytes, 90.0), percentile(&echo_bytes, 0.0), percentile(&echo_bytes, 100.0));
    let _ = writeln!(t, "   key -> first echo byte: median {:.1} ms, p90 {:.1} ms", median(&echo.latency_ms), percentile(&echo.latency_ms, 90.0));
    let _ = writeln!(t, "   codecs seen by the client: {}; idle connected session: {:.0} B/s; echo on screen: {}", echo.codecs, echo.idle_bytes_per_s, echo.on_screen);
    let _ = writeln!(t, "3. Host memory with N disconnected idle terminal sessions");
    let _ = writeln!(t, "   {:>8}  {:>16}  {:>22}  {:>10}", "sessions", "host VmRSS (MiB)", "descendants PSS (MiB)", "processes");
    for (n, m) in mem {
        let _ = writeln!(t, "   {:>8}  {:>16.1}  {:>22.1}  {:>10}", n, m.host_rss_kib as f64 / 1024.0, m.children_pss_kib as f64 / 1024.0, m.children);
    }
    if let Some((n, pct)) = cpu {
        let _ = writeln!(t, "4. Host CPU (host + descendants) with {n} disconnected idle sessions over {} s: {pct:.2} % of one core", s.cpu_secs);
    }
    print!("{t}");

    let mut j = String::from("{\"rdhost_bench\":{");
    let _ = write!(j, "\"connect_to_prompt_ms\":{{\"n\":{},\"new_session\":{{\"median\":{},\"p90\":{}}},\"reconnect\":{{\"median\":{},\"p90\":{}}}}},",
        s.iterations, num(median(new_ms)), num(percentile(new_ms, 90.0)), num(median(reconnect_ms)), num(percentile(reconnect_ms, 90.0)));
    let _ = write!(j, "\"echo\":{{\"chars\":{},\"mean_bytes_per_char\":{},\"median_bytes_per_char\":{},\"latency_ms_median\":{},\"idle_bytes_per_s\":{},\"codecs\":\"{}\",\"on_screen\":{}}},",
        echo.chars, num(mean(&echo_bytes)), num(median(&echo_bytes)), num(median(&echo.latency_ms)), num(echo.idle_bytes_per_s), echo.codecs, echo.on_screen);
    let mems: Vec<String> = mem
        .iter()
        .map(|(n, m)| format!("{{\"sessions\":{n},\"host_rss_kib\":{},\"descendants_pss_kib\":{},\"descendants\":{}}}", m.host_rss_kib, m.children_pss_kib, m.children))
        .collect();
    let _ = write!(j, "\"memory_disconnected_idle_sessions\":[{}]", mems.join(","));
    if let Some((n, pct)) = cpu {
        let _ = write!(j, ",\"cpu_idle\":{{\"sessions\":{n},\"secs\":{},\"percent_of_one_core\":{}}}", s.cpu_secs, num(pct));
    }
    j.push_str("}}");
    println!("{j}");
}

/// The benchmark's clients run on the cores the servers are measured on, so what they waste
/// shows in every server's figures. Decoded pictures are frame-sized buffers (8 MB at 1080p),
/// one a frame: glibc would hand each back to the kernel when freed (trimming the arena's top)
/// and fault it in again, zeroed, for the next (measured: a tenth of the client's CPU at 1080p).
/// Keep them in the arenas instead; this process's own memory is no figure.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        // Fixed thresholds (setting one turns glibc's adaptive ones off): frame buffers come
        // from the arenas, and an arena keeps up to 256 MB free before trimming.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
