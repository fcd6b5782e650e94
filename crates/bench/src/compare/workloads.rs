//! The workloads, each run against one started server by the headless client: what they measure
//! and how is the same for every server; only [`Server`] knows how each one is started.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdhost_client::Client;

use super::servers::{Server, ServerKind};
use super::{Ctx, Sample};
use crate::procfs::{self, Proc};
use crate::sessions::{Pump, Pumping, keep_pumping};
use crate::x11::{RECORDER_COLOURS, count_frames, frame_number, key_to_pixel, near, pump_streaming};
use crate::{WAIT, ms};

/// The processes that make up a server and its session's X server. Everything else a server's
/// tree holds (the session script, the program it runs, ssh-agent, …) is the user's program.
const SERVER_PROCESSES: [&str; 7] = ["rdhost", "xrdp", "xrdp-sesman", "xrdp-chansrv", "freerdp-shadow-", "Xorg", "Xvfb"];
const X_SERVERS: [&str; 2] = ["Xorg", "Xvfb"];

fn is_server(p: &Proc) -> bool {
    SERVER_PROCESSES.contains(&p.comm.as_str())
}

/// CPU used during a window, in % of one core.
pub struct CpuUse {
    /// The server's processes and the session's X server.
    pub server: f64,
    /// The session's own programs (the animation, xterm, …).
    pub program: f64,
    /// This benchmark: the clients' decoding, on the same cores.
    pub bench: f64,
    /// The rest of the machine (other programs, the kernel).
    pub others: f64,
}

pub struct CpuWindow {
    procs: Vec<Proc>,
    bench: u64,
    machine: u64,
    t0: Instant,
}

impl CpuWindow {
    pub fn start(server: &Server, uid: u32) -> CpuWindow {
        CpuWindow {
            procs: procfs::server_processes(&server.roots(), Some(uid)),
            bench: procfs::process_ticks(std::process::id()).unwrap_or(0),
            machine: procfs::machine_busy_ticks().unwrap_or(0),
            t0: Instant::now(),
        }
    }

    pub fn finish(self, server: &Server, uid: u32) -> CpuUse {
        let wall = self.t0.elapsed().as_secs_f64();
        let now = procfs::server_processes(&server.roots(), Some(uid));
        let (mut server_t, mut program_t) = (0u64, 0u64);
        for p in &now {
            let before = self.procs.iter().find(|q| q.pid == p.pid && q.start == p.start).map_or(0, |q| q.ticks);
            let used = p.ticks.saturating_sub(before);
            if is_server(p) {
                server_t += used;
            } else {
                program_t += used;
            }
        }
        let bench_t = procfs::process_ticks(std::process::id()).unwrap_or(0).saturating_sub(self.bench);
        let machine_t = procfs::machine_busy_ticks().unwrap_or(0).saturating_sub(self.machine);
        let pct = |t: u64| 100.0 * t as f64 / procfs::ticks_per_sec() as f64 / wall;
        CpuUse {
            server: pct(server_t),
            program: pct(program_t),
            bench: pct(bench_t),
            others: pct(machine_t.saturating_sub(server_t + program_t + bench_t)),
        }
    }
}

/// PSS (KiB) of the server's daemons and of its X servers, separately.
fn server_pss(server: &Server, uid: u32) -> (u64, u64) {
    let (mut daemons, mut x) = (0, 0);
    for p in procfs::server_processes(&server.roots(), Some(uid)).iter().filter(|p| is_server(p)) {
        let k = procfs::pss_kib(p.pid).unwrap_or(0);
        if X_SERVERS.contains(&p.comm.as_str()) {
            x += k;
        } else {
            daemons += k;
        }
    }
    (daemons, x)
}

async fn connect(server: &Server, ctx: &Ctx<'_>, size: (u16, u16)) -> Result<Client> {
    let mut cfg = server.client(ctx.user, size);
    cfg.gfx = ctx.gfx;
    cfg.remotefx = ctx.remotefx;
    rdhost_client::connect(cfg).await.with_context(|| format!("connect to {} at {}", server.kind().name(), server.addr()))
}

/// The recorder's first colour at the centre and near each corner: a whole first picture.
fn recorder_shown(c: &Client) -> bool {
    let (w, h) = (c.width(), c.height());
    [(w / 2, h / 2), (8, h - 8), (w - 8, 8), (w - 8, h - 8), (w / 4, h / 4)]
        .iter()
        .all(|&(x, y)| c.pixel(x, y).is_some_and(|p| RECORDER_COLOURS.iter().any(|&k| near(p, k))))
}

/// Key press to changed pixels, `rdhost-xrecorder` full screen.
pub async fn latency(server: &mut Server, ctx: &Ctx<'_>) -> Result<Sample> {
    let mut c = connect(server, ctx, super::LATENCY_SIZE).await?;
    let presses = key_to_pixel(&mut c, ctx.s.presses).await?;
    let mut sample = Sample::default();
    sample.codecs = codecs(&c);
    let _ = c.disconnect().await;
    sample.push_all("latency_ms", presses);
    Ok(sample)
}

/// What the server sent the client: fast-path codecs with their counts, and the graphics
/// pipeline's H.264 pictures when it chose that.
fn codecs(c: &Client) -> String {
    let mut v: Vec<String> = c.codecs_seen().iter().map(|(codec, n)| format!("{codec:?} {n}")).collect();
    let gfx = c.gfx_counters();
    if gfx.frames > 0 {
        v.push(format!("EGFX frames {}, of which H.264 pictures {}", gfx.frames, gfx.h264_pictures));
    }
    v.join(", ")
}

/// A full-screen animation: frames shown per second, Mbit/s, CPU, bytes per frame.
pub async fn animation(server: &mut Server, ctx: &Ctx<'_>, size: (u16, u16)) -> Result<Sample> {
    let mut c = connect(server, ctx, size).await?;
    let mut window = None;
    let counted = count_frames(&mut c, ctx.s.animation_secs, || window = Some(CpuWindow::start(server, ctx.user.uid))).await?;
    let cpu = window.context("the count never started")?.finish(server, ctx.user.uid);
    let mut sample = Sample { codecs: codecs(&c), ..Sample::default() };
    let _ = c.disconnect().await;
    sample.push("fps", counted.fps());
    sample.push("mbit", counted.mbit_per_s());
    sample.push("cpu", cpu.server);
    sample.push("kb_per_frame", if counted.frames > 0 { counted.bytes as f64 / counted.frames as f64 / 1000.0 } else { f64::NAN });
    sample.push("program_cpu", cpu.program);
    sample.push("bench_cpu", cpu.bench);
    sample.others = cpu.others;
    Ok(sample)
}

/// xterm scrolling `seq` output: graphics updates the client took per second, Mbit/s, CPU.
pub async fn scroll(server: &mut Server, ctx: &Ctx<'_>) -> Result<Sample> {
    let mut c = connect(server, ctx, super::TERMINAL_SIZE).await?;
    // The xterm is up and scrolling once updates keep coming.
    let f0 = c.frames_received();
    if !c.pump_until(WAIT, |c| c.frames_received() > f0 + 10).await? {
        bail!("the scrolling xterm sent no updates in {WAIT:?}");
    }
    pump_streaming(&mut c, Duration::from_secs(1)).await?;
    let window = CpuWindow::start(server, ctx.user.uid);
    let (frames0, bytes0, t0) = (c.frames_received(), c.bytes_received(), Instant::now());
    pump_streaming(&mut c, Duration::from_secs_f64(ctx.s.scroll_secs)).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = window.finish(server, ctx.user.uid);
    let mut sample = Sample { codecs: codecs(&c), others: cpu.others, ..Sample::default() };
    sample.push("updates", (c.frames_received() - frames0) as f64 / wall);
    sample.push("mbit", (c.bytes_received() - bytes0) as f64 * 8.0 / wall / 1e6);
    sample.push("cpu", cpu.server);
    sample.push("program_cpu", cpu.program);
    let _ = c.disconnect().await;
    Ok(sample)
}

/// Bytes the server sends per character typed into an xterm running `cat` (each echoed before
/// the next is typed).
pub async fn typing(server: &mut Server, ctx: &Ctx<'_>) -> Result<Sample> {
    let mut c = connect(server, ctx, super::TERMINAL_SIZE).await?;
    // The xterm's first picture, then quiet.
    c.pump_until_idle(Duration::from_millis(700), WAIT).await?;
    // No window manager: focus follows the pointer.
    c.mouse_move(c.width() / 2, c.height() / 2).await?;
    crate::pump_until_quiet(&mut c, Duration::from_millis(300), Duration::from_secs(5)).await?;
    let (bytes, latency, _) = crate::type_and_count(&mut c, ctx.s.chars).await?;
    let mut sample = Sample { codecs: codecs(&c), ..Sample::default() };
    let _ = c.disconnect().await;
    sample.push_all("bytes_per_char", bytes.iter().map(|&b| b as f64).collect());
    sample.push_all("echo_ms", latency);
    Ok(sample)
}

/// Connect to the first full picture of a new session and of a reconnect, and the memory the
/// session costs: the growth of the server's daemons plus its X server (PSS).
pub async fn session(server: &mut Server, ctx: &Ctx<'_>) -> Result<Sample> {
    let mut sample = Sample::default();
    for i in 0..ctx.s.connects {
        server.end_session(ctx.user);
        server.check_running()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (daemons0, x0) = server_pss(server, ctx.user.uid);
        let t0 = Instant::now();
        let mut c = connect(server, ctx, super::SESSION_SIZE).await?;
        if !c.pump_until(WAIT, recorder_shown).await? {
            bail!("new session: the recorder's picture never showed; {}", server.log());
        }
        sample.push("connect_new_ms", ms(t0.elapsed()));
        if i == 0 {
            // Let the session settle (the server's buffers, the X server's first frames).
            c.pump_for(Duration::from_secs(2)).await?;
            let (daemons1, x1) = server_pss(server, ctx.user.uid);
            // X servers count whole (the shadow server's Xvfb exists before the client, and is as
            // much the session's display as the others' session X servers), daemons by growth.
            let _ = x0;
            let kib = daemons1.saturating_sub(daemons0) + x1;
            sample.push("memory_mib", kib as f64 / 1024.0);
            sample.push("memory_x_mib", x1 as f64 / 1024.0);
            sample.push("memory_daemons_mib", daemons1.saturating_sub(daemons0) as f64 / 1024.0);
        }
        c.disconnect().await.ok();
        // Let the server see the disconnect, so that this is a reconnect to a disconnected
        // session and not a takeover of a connected one.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t0 = Instant::now();
        let mut c = connect(server, ctx, super::SESSION_SIZE).await?;
        if !c.pump_until(WAIT, recorder_shown).await? {
            bail!("reconnect: the recorder's picture never showed; {}", server.log());
        }
        sample.push("connect_re_ms", ms(t0.elapsed()));
        c.disconnect().await.ok();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    server.end_session(ctx.user);
    Ok(sample)
}

/// Server CPU with one client, then with `viewers` clients, of one animated desktop.
pub async fn viewers(server: &mut Server, ctx: &Ctx<'_>) -> Result<Sample> {
    let size = ctx.s.viewer_size;
    let primary = connect(server, ctx, size).await?;
    let pump = Pump::default();
    let mut clients: Vec<Pumping> = vec![keep_pumping(primary, &pump)];
    let result = viewers_measure(server, ctx, &pump, &mut clients).await;
    pump.stop.store(true, Ordering::Relaxed);
    for p in clients {
        if let Ok(Ok(c)) = p.task.await {
            let _ = c.disconnect().await;
        }
    }
    server.end_session(ctx.user);
    result
}

async fn viewers_measure(server: &mut Server, ctx: &Ctx<'_>, pump: &Pump, clients: &mut Vec<Pumping>) -> Result<Sample> {
    let s = ctx.s;
    let size = s.viewer_size;
    let frames_of = |p: &Pumping| p.counters.distinct.load(Ordering::Relaxed);
    // The animation is on screen at the first client.
    let t0 = Instant::now();
    while frames_of(&clients[0]) < 3 {
        if t0.elapsed() > WAIT || clients[0].task.is_finished() {
            bail!("the first client shows no animation");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sample = Sample::default();
    let measure = |clients: &Vec<Pumping>| {
        let window = CpuWindow::start(server, ctx.user.uid);
        let f0: Vec<u64> = clients.iter().map(frames_of).collect();
        (window, f0, Instant::now())
    };
    let (window, f0, t0) = measure(clients);
    tokio::time::sleep(Duration::from_secs_f64(s.viewer_secs)).await;
    let one = window.finish(server, ctx.user.uid);
    let fps1 = (frames_of(&clients[0]) - f0[0]) as f64 / t0.elapsed().as_secs_f64();
    sample.push("cpu_1", one.server);
    sample.push("fps_1", fps1);

    // The other clients: attendees of an invitation at rdhost, more logons of the same user at
    // xrdp (its Policy=Default gives the same user the same session), more clients at the shadow
    // server (every client sees its one display).
    let invitation = match server.kind() {
        ServerKind::Rdhost => Some(super::read_invitation(ctx).await?),
        _ => None,
    };
    while clients.len() < s.viewers {
        let i = clients.len();
        pump.paused.store(true, Ordering::Relaxed);
        let cfg = match &invitation {
            Some((ticket, password)) => {
                let mut cfg = rdhost_client::ClientConfig::attendee(server.addr(), format!("viewer{i}"), ticket.clone(), password.clone());
                (cfg.width, cfg.height) = size;
                cfg.connect_timeout = Duration::from_secs(30);
                cfg
            }
            None => server.client(ctx.user, size),
        };
        let added = async {
            let mut c = rdhost_client::connect(cfg).await?;
            if !c.pump_until(WAIT, |c| frame_number(c).is_some()).await? {
                bail!("client {} shows no animation", i + 1);
            }
            anyhow::Ok(c)
        }
        .await;
        pump.paused.store(false, Ordering::Relaxed);
        let c = added.with_context(|| format!("{} client {}", server.kind().name(), i + 1))?;
        clients.push(keep_pumping(c, pump));
    }
    // Every client still shows the animation (an xrdp session taken over would drop the first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (window, f0, t0) = measure(clients);
    tokio::time::sleep(Duration::from_secs_f64(s.viewer_secs)).await;
    let many = window.finish(server, ctx.user.uid);
    let wall = t0.elapsed().as_secs_f64();
    let fps: Vec<f64> = clients.iter().zip(&f0).map(|(p, f)| (frames_of(p) - f) as f64 / wall).collect();
    let showing = fps.iter().filter(|&&f| f > 0.0).count();
    sample.others = many.others;
    if showing < clients.len() {
        // Not the same work as one client showing it: no figure, and the reason in the notes.
        sample.note = Some(format!(
            "cannot serve {} clients of one desktop: only {showing} of them kept showing it{}",
            clients.len(),
            if server.kind() == ServerKind::Xrdp { " (each new logon of the user takes the session over from the one before)" } else { "" }
        ));
        return Ok(sample);
    }
    sample.push("cpu_n", many.server);
    sample.push("cpu_ratio", many.server / one.server);
    sample.push("fps_n_mean", fps.iter().sum::<f64>() / fps.len() as f64);
    sample.push("fps_n_min", fps.iter().copied().fold(f64::INFINITY, f64::min));
    Ok(sample)
}
