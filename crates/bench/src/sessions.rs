//! The session-management figures (issue 7), against a real `rdhost serve` with headless clients
//! and the host's control socket:
//!
//! 1. `rdhost connect A --dest B` (the CLI binary, as an admin would run it) until the client that
//!    showed B shows A: its Save Session Info says A's id *and* A's own content is on its screen.
//!    The one moved client then goes back and forth between the two sessions (every move is a
//!    sample, each a real `connect`). Terminal desktop, and x11 with the input recorder.
//! 2. Host CPU with 1, 5 and 20 viewers of one x11 session running a full-screen animation
//!    (`rdhost-xanimate`; 1024x768 at 60 fps as in the x11 figures, and 640x400 at 30 fps, where
//!    one client alone takes every frame). The viewers are sessions of their own (an xterm each)
//!    whose clients type `rdhost shadow A` into the xterm (policy `view`); every client keeps
//!    reading and decoding in its own task for the whole run, and counts the animation frames it
//!    shows by the frame number drawn into them.
//! 3. Events delivered to 10 `GET /v1/events` subscribers (the CLI's own client code, HTTP on the
//!    Unix socket) while 100 terminal sessions log on and are logged off through the socket.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdhost::control::client as control;
use rdhost::control::protocol::{EventRecord, Reply, Request, SessionInfo, SessionRef};
use rdhost_client::Client;

use crate::host::{Host, ScratchDir};
use crate::x11::{RECORDER_COLOURS, frame_number, near, probe_bin};
use crate::{FONT_PX, WAIT, median, ms, num, percentile, procfs};

pub struct SessionSettings {
    /// `connect` moves measured per desktop kind.
    pub connects: usize,
    /// Viewer counts at which the host's CPU is measured, ascending.
    pub viewers: Vec<usize>,
    pub viewer_secs: u64,
    /// Each run of the viewers figure: the desktop size of the animated session (and of every
    /// client showing it) and the frames per second the animation draws.
    pub viewer_runs: Vec<((u16, u16), u32)>,
    pub subscribers: usize,
    pub churn_sessions: usize,
    /// Sessions logging on (and off) at the same time.
    pub churn_parallel: usize,
    pub only: Option<Figure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Figure {
    Connect,
    Viewers,
    Events,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Terminal,
    X11,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Terminal => "terminal",
            Kind::X11 => "x11",
        }
    }
}

pub struct ConnectFigure {
    kind: Kind,
    /// Just before the CLI starts until the moved client shows the session (id and content).
    screen_ms: Vec<f64>,
    /// Just before the CLI starts until the moved client has A's id (Save Session Info).
    id_ms: Vec<f64>,
    /// Just before the CLI starts until it exits (it waits for the switch by default).
    cli_ms: Vec<f64>,
    /// The Set Error Info code of the client that showed A before the first move (0x5 expected).
    displaced_with: Option<u32>,
}

pub struct ViewerLevel {
    viewers: usize,
    secs: f64,
    host_cpu: f64,
    x_servers_cpu: f64,
    animation_cpu: f64,
    bench_cpu: f64,
    /// Everything else the machine ran meanwhile (other programs, the kernel's own work).
    others_cpu: f64,
    primary_fps: f64,
    viewer_fps_mean: f64,
    viewer_fps_min: f64,
    /// Animation frames shown per second by all clients together.
    delivered_fps: f64,
    /// Bytes/s received by all clients together.
    total_mbit_per_s: f64,
    /// Viewer attachments of the animated session as `query session` reports them.
    listed_viewers: usize,
}

pub struct ViewersFigure {
    size: (u16, u16),
    fps: u32,
    levels: Vec<ViewerLevel>,
}

pub struct EventsFigure {
    subscribers: usize,
    sessions: usize,
    parallel: usize,
    wall_secs: f64,
    /// Events each subscriber received during the run.
    per_subscriber: Vec<usize>,
    /// Event kinds as the first subscriber saw them.
    kinds: BTreeMap<String, usize>,
    lagged: u64,
    /// Every subscriber saw the same events in the same order.
    identical: bool,
    /// Arrival of an event at its last subscriber minus at its first, ms.
    spread_ms: Vec<f64>,
    /// Logoff request sent until its logoff event arrived at a subscriber, ms.
    logoff_event_ms: Vec<f64>,
}

#[derive(Default)]
pub struct SessionFigures {
    connect: Vec<ConnectFigure>,
    viewers: Vec<ViewersFigure>,
    events: Option<EventsFigure>,
    /// The machine's 1-minute load average as each figure started: others share this machine.
    loads: Vec<(String, f64)>,
}

impl SessionFigures {
    fn note_load(&mut self, figure: String) {
        let load = procfs::load_average().unwrap_or(f64::NAN);
        eprintln!("rdhost-bench: {figure}: load average {load:.2} at the start");
        self.loads.push((figure, load));
    }
}

pub async fn run(bin: &Path, s: &SessionSettings) -> Result<SessionFigures> {
    let mut f = SessionFigures::default();
    let wanted = |fig: Figure| s.only.is_none_or(|o| o == fig);
    if wanted(Figure::Connect) {
        for kind in [Kind::Terminal, Kind::X11] {
            f.note_load(format!("connect {}", kind.name()));
            f.connect.push(connect_figure(bin, kind, s.connects).await.with_context(|| format!("connect figure, {} desktop", kind.name()))?);
        }
    }
    if wanted(Figure::Viewers) {
        for &(size, fps) in &s.viewer_runs {
            f.note_load(format!("viewers {}x{}@{fps}", size.0, size.1));
            let run = viewers_figure(bin, &s.viewers, s.viewer_secs, size, fps).await;
            f.viewers.push(run.with_context(|| format!("viewers figure at {}x{}, {fps} fps", size.0, size.1))?);
        }
    }
    if wanted(Figure::Events) {
        f.note_load("events".into());
        f.events = Some(events_figure(bin, s.subscribers, s.churn_sessions, s.churn_parallel).await.context("events figure")?);
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn on_screen(c: &Client, text: &str) -> bool {
    rdhost_desktop::terminal::find_text(c.rgba(), c.width().into(), c.height().into(), FONT_PX, text).is_some()
}

fn prompt_on_screen(c: &Client) -> bool {
    on_screen(c, "$") || on_screen(c, "#")
}

async fn connect_client(host: &Host, user: &str, password: &str, size: (u16, u16)) -> Result<(Client, u32)> {
    let mut cfg = host.client(user, password);
    (cfg.width, cfg.height) = size;
    let mut c = rdhost_client::connect(cfg).await.with_context(|| format!("{user} connects"))?;
    if !c.pump_until(WAIT, |c| c.server_session_id().is_some()).await? {
        bail!("{user}: the host announced no session id in {WAIT:?}");
    }
    let id = c.server_session_id().context("session id")?;
    Ok((c, id))
}

/// Pump until `pred`, looking only when the picture changed (text search costs more than a PDU).
async fn pump_until_shown(c: &mut Client, mut pred: impl FnMut(&Client) -> bool) -> Result<bool> {
    let mut seen = u64::MAX;
    Ok(c.pump_until(WAIT, |c| {
        if c.frames_received() == seen {
            return false;
        }
        seen = c.frames_received();
        pred(c)
    })
    .await?)
}

fn save_screen(c: &Client, what: &str) -> PathBuf {
    let png = std::env::temp_dir().join(format!("rdhost-bench-{what}.png"));
    let _ = c.save_png(&png);
    png
}

async fn sessions(host: &Host) -> Result<Vec<SessionInfo>> {
    match control::call(host.socket(), &Request::Query { filter: None }).await? {
        Reply::Sessions(s) => Ok(s),
        other => bail!("query answered {other:?}"),
    }
}

fn cpu_pct(ticks: u64, wall: f64) -> f64 {
    100.0 * ticks as f64 / procfs::ticks_per_sec() as f64 / wall
}

// ---------------------------------------------------------------------------------------------
// 1. connect

/// A command whose output (`x<product>y`) appears only once a shell evaluated it.
fn token(seed: u32) -> (String, String) {
    let a = 1000 + (std::process::id() % 9000);
    let b = 101 + seed * 13;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

async fn connect_figure(bin: &Path, kind: Kind, n: usize) -> Result<ConnectFigure> {
    let users = [("alice".to_owned(), "alice-pw".to_owned()), ("bob".to_owned(), "bob-pw".to_owned())];
    let config = match kind {
        Kind::Terminal => String::new(),
        Kind::X11 => {
            let recorder = probe_bin(bin, "rdhost-xrecorder")?;
            format!("desktop = \"x11\"\nsession_command = {:?}\n", format!("exec {} --override-redirect >/dev/null", recorder.display()))
        }
    };
    let mut host = Host::start(bin, &format!("connect-{}", kind.name()), &users, &config)?;
    eprintln!("rdhost-bench: connect figure, {} desktop: host pid {}, control socket {}", kind.name(), host.pid(), host.socket().display());
    let size = (1024, 768);
    let (mut a_client, a) = connect_client(&host, "alice", "alice-pw", size).await?;
    let (mut b_client, b) = connect_client(&host, "bob", "bob-pw", size).await?;

    // Each session's own picture: a token printed by its shell, or the recorder's colour (A's
    // toggled by a key press, B's left as it started).
    let probe = (512u16, 384u16);
    let colour = move |c: &Client| c.pixel(probe.0, probe.1).unwrap_or([0, 0, 0]);
    let mut marks: HashMap<u32, String> = HashMap::new();
    let mut colours: HashMap<u32, [u8; 3]> = HashMap::new();
    match kind {
        Kind::Terminal => {
            for (seed, (c, id)) in [(&mut a_client, a), (&mut b_client, b)].into_iter().enumerate() {
                if !pump_until_shown(c, prompt_on_screen).await? {
                    bail!("session {id}: no prompt (screen saved to {})", save_screen(c, "connect-noprompt").display());
                }
                let (command, shown) = token(seed as u32 + 1);
                c.type_text(&command).await?;
                if !pump_until_shown(c, |c| on_screen(c, &shown)).await? {
                    bail!("session {id}: {shown} never appeared (screen saved to {})", save_screen(c, "connect-notoken").display());
                }
                marks.insert(id, shown);
            }
        }
        Kind::X11 => {
            for c in [&mut a_client, &mut b_client] {
                if !c.pump_until(WAIT, |c| near(colour(c), RECORDER_COLOURS[0])).await? {
                    bail!("the recorder's window never showed; host log:\n{}", host.log());
                }
            }
            // No window manager: focus follows the pointer.
            a_client.mouse_move(probe.0, probe.1).await?;
            a_client.pump_for(Duration::from_millis(300)).await?;
            a_client.key(0x1E, false, true).await?;
            a_client.key(0x1E, false, false).await?;
            if !a_client.pump_until(WAIT, |c| near(colour(c), RECORDER_COLOURS[1])).await? {
                bail!("session {a}: the recorder did not change colour on a key press");
            }
            colours.insert(a, RECORDER_COLOURS[1]);
            colours.insert(b, RECORDER_COLOURS[0]);
        }
    }
    let shows = |c: &Client, id: u32| -> bool {
        c.server_session_id() == Some(id)
            && match kind {
                Kind::Terminal => on_screen(c, &marks[&id]),
                Kind::X11 => near(colour(c), colours[&id]),
            }
    };

    eprintln!("rdhost-bench: {n} connects between sessions {a} and {b} ({} desktop)", kind.name());
    let (mut screen_ms, mut id_ms, mut cli_ms) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    // The client showed B; the first move brings it A, the next one B again, and so on.
    let (mut target, mut dest) = (a, b);
    for i in 0..n {
        let t0 = Instant::now();
        let child = tokio::process::Command::new(bin)
            .args(["connect", &target.to_string(), "--dest", &dest.to_string(), "--socket"])
            .arg(host.socket())
            .env_remove(rdhost::control::protocol::ENV_SOCKET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("run rdhost connect")?;
        let cli = async {
            let out = child.wait_with_output().await;
            (out, t0.elapsed())
        };
        let mut seen = u64::MAX;
        let (mut id_at, mut shown_at) = (None, None);
        let screen = async {
            b_client
                .pump_until(WAIT, |c| {
                    // Stamped before looking: the text search is the benchmark's cost, not the host's.
                    let now = t0.elapsed();
                    if id_at.is_none() && c.server_session_id() == Some(target) {
                        id_at = Some(now);
                    }
                    // The id alone changes no pixels: look again when either changed.
                    let key = c.frames_received() ^ u64::from(c.server_session_id().unwrap_or(0)) << 40;
                    if key == seen {
                        return false;
                    }
                    seen = key;
                    let shown = shows(c, target);
                    if shown {
                        shown_at = Some(now);
                    }
                    shown
                })
                .await
        };
        let ((out, cli_t), shown) = tokio::join!(cli, screen);
        let out = out.context("wait for rdhost connect")?;
        if !out.status.success() {
            bail!("rdhost connect {target} --dest {dest} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        if !shown? {
            bail!(
                "connect {}: the moved client does not show session {target} after {WAIT:?} (id {:?}; screen saved to {})",
                i + 1,
                b_client.server_session_id(),
                save_screen(&b_client, "connect-moved").display()
            );
        }
        let screen_t = shown_at.context("shown without a time")?;
        let id_t = id_at.unwrap_or(screen_t);
        screen_ms.push(ms(screen_t));
        id_ms.push(ms(id_t));
        cli_ms.push(ms(cli_t));
        eprintln!(
            "rdhost-bench: connect {}/{n}: {target} --dest {dest}: on screen {:.1} ms (id {:.1} ms), CLI returned {:.1} ms",
            i + 1,
            ms(screen_t),
            ms(id_t),
            ms(cli_t)
        );
        // Take the rest of the new picture before the next move (not timed).
        b_client.pump_for(Duration::from_millis(200)).await?;
        (target, dest) = (dest, target);
        host.check_running()?;
    }
    // The client that showed A before the first move was told another terminal took it over.
    let displaced_with = match a_client.pump_until(WAIT, |c| c.closed()).await {
        Ok(_) => a_client.error_info(),
        Err(e) => e.closed_with().or(a_client.error_info()),
    };
    let states = sessions(&host).await?;
    let shown = b_client.server_session_id().context("moved client's session")?;
    let state = |id: u32| states.iter().find(|s| s.id == id).map_or("gone", |s| s.state.as_str()).to_owned();
    eprintln!("rdhost-bench: after the moves: session {shown} {}, the other {}", state(shown), state(if shown == a { b } else { a }));
    b_client.disconnect().await?;
    Ok(ConnectFigure { kind, screen_ms, id_ms, cli_ms, displaced_with })
}

// ---------------------------------------------------------------------------------------------
// 2. viewers

#[derive(Default)]
pub(crate) struct Counters {
    /// Animation frames shown (forward steps of the frame number).
    pub distinct: AtomicU64,
    pub bytes: AtomicU64,
}

pub(crate) struct Pumping {
    pub counters: Arc<Counters>,
    pub task: tokio::task::JoinHandle<Result<Client>>,
}

/// Frame numbers count as shown only when they move forward (by less than half the u16 range,
/// 18 minutes at 30 fps): a code read while its tiles are half repainted (low bits new, high
/// bits old) reads as a step back, which would otherwise count twice.
const MAX_STEP: u16 = u16::MAX / 2;

/// Switches shared by every pumping client.
#[derive(Clone, Default)]
pub(crate) struct Pump {
    pub stop: Arc<AtomicBool>,
    /// Set while a viewer is being added: the clients all decode on the benchmark's one thread,
    /// and a new client's connection sequence must not wait behind them (with a dozen busy
    /// clients the host refused the thirteenth mid-handshake). Paused clients stop reading; the
    /// host's stage skips them to the newest frame.
    pub paused: Arc<AtomicBool>,
}

/// Keep `c` reading and decoding (as a real client would) until `stop`, counting the frames it shows.
pub(crate) fn keep_pumping(mut c: Client, pump: &Pump) -> Pumping {
    let counters = Arc::new(Counters::default());
    let k = Arc::clone(&counters);
    let Pump { stop, paused } = pump.clone();
    let task = tokio::spawn(async move {
        let mut last = None;
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            c.pump_until(Duration::from_millis(100), |c| {
                if let Some(n) = frame_number(c)
                    && last.is_none_or(|l: u16| (1..=MAX_STEP).contains(&n.wrapping_sub(l)))
                {
                    last = Some(n);
                    k.distinct.fetch_add(1, Ordering::Relaxed);
                }
                k.bytes.store(c.bytes_received(), Ordering::Relaxed);
                stop.load(Ordering::Relaxed) || paused.load(Ordering::Relaxed)
            })
            .await?;
        }
        Ok(c)
    });
    Pumping { counters, task }
}

/// The xterm viewers type into: a colour of its own, so the client can tell it is up.
const XTERM_BG: [u8; 3] = [0x20, 0x40, 0x60];

async fn viewers_figure(bin: &Path, counts: &[usize], secs: u64, size: (u16, u16), fps: u32) -> Result<ViewersFigure> {
    let animate = probe_bin(bin, "rdhost-xanimate")?;
    if counts.is_empty() {
        bail!("no viewer counts to measure");
    }
    if which("xterm").is_none() {
        bail!("the viewers figure needs xterm (package xterm): the viewer sessions type `rdhost shadow` into it");
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    // One host has one desktop kind: the first session to start claims the animation, every
    // later one runs an xterm to type into.
    let scratch = ScratchDir::new("claims")?;
    let claim = scratch.path().join("animation");
    let command = format!(
        "if mkdir {} 2>/dev/null; then exec {} --fps {fps} 2>/dev/null; else exec xterm -geometry 120x40+0+0 -bg '#{:02x}{:02x}{:02x}' -fg white; fi",
        claim.display(),
        animate.display(),
        XTERM_BG[0],
        XTERM_BG[1],
        XTERM_BG[2]
    );
    let config = format!("desktop = \"x11\"\nsession_command = {command:?}\ncodec = \"auto\"\nshadow = \"view\"\n");
    let mut users = vec![("anim".to_owned(), "anim-pw".to_owned())];
    users.extend((0..max).map(|i| (format!("viewer{i}"), format!("viewer{i}-pw"))));
    let mut host = Host::start(bin, "viewers", &users, &config)?;
    eprintln!("rdhost-bench: viewers figure: host pid {}", host.pid());
    let (mut primary, a) = connect_client(&host, "anim", "anim-pw", size).await?;
    if !primary.pump_until(WAIT, |c| frame_number(c).is_some()).await? {
        bail!("no animation frame number on screen (saved to {}); host log:\n{}", save_screen(&primary, "viewers-anim").display(), host.log());
    }
    let pump = Pump::default();
    let primary = keep_pumping(primary, &pump);
    let mut viewers: Vec<Pumping> = Vec::new();
    let mut levels = Vec::new();
    for &n in counts {
        while viewers.len() < n {
            let i = viewers.len();
            pump.paused.store(true, Ordering::Relaxed);
            let added = add_viewer(&host, bin, i, a, size, &pump).await;
            pump.paused.store(false, Ordering::Relaxed);
            viewers.push(added.with_context(|| format!("viewer {i}; host log:\n{}", host.log()))?);
            if (i + 1).is_multiple_of(5) || i + 1 == n {
                eprintln!("rdhost-bench: {} viewers of session {a}", i + 1);
            }
        }
        host.check_running()?;
        let listed_viewers = sessions(&host).await?.iter().find(|s| s.id == a).map_or(0, |s| s.viewers.len());
        // Let the last viewer's first full picture go by.
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("rdhost-bench: measuring {secs} s with {n} viewers");
        let snapshot = || {
            let by_name = procfs::cpu_by_name(host.pid());
            let get = |name: &str| by_name.get(name).copied().unwrap_or(0);
            let bench = procfs::process_ticks(std::process::id()).unwrap_or(0);
            (
                procfs::process_ticks(host.pid()).unwrap_or(0),
                get("Xorg") + get("Xvfb"),
                get("rdhost-xanimate"),
                bench,
                // What is neither the host's tree nor this benchmark.
                procfs::machine_busy_ticks().unwrap_or(0) as i64 - by_name.values().sum::<u64>() as i64 - bench as i64,
            )
        };
        let frames = |p: &Pumping| p.counters.distinct.load(Ordering::Relaxed);
        let bytes = |p: &Pumping| p.counters.bytes.load(Ordering::Relaxed);
        let all = || std::iter::once(&primary).chain(viewers.iter());
        let (cpu0, f0, b0, t0) = (snapshot(), all().map(frames).collect::<Vec<_>>(), all().map(bytes).sum::<u64>(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu1, f1, b1, wall) = (snapshot(), all().map(frames).collect::<Vec<_>>(), all().map(bytes).sum::<u64>(), t0.elapsed().as_secs_f64());
        let fps: Vec<f64> = f1.iter().zip(&f0).map(|(x, y)| (x - y) as f64 / wall).collect();
        let viewer_fps = &fps[1..];
        let level = ViewerLevel {
            viewers: n,
            secs: wall,
            host_cpu: cpu_pct(cpu1.0 - cpu0.0, wall),
            x_servers_cpu: cpu_pct(cpu1.1.saturating_sub(cpu0.1), wall),
            animation_cpu: cpu_pct(cpu1.2.saturating_sub(cpu0.2), wall),
            bench_cpu: cpu_pct(cpu1.3 - cpu0.3, wall),
            others_cpu: cpu_pct((cpu1.4 - cpu0.4).max(0) as u64, wall),
            primary_fps: fps[0],
            // No viewers (a baseline): NaN, printed as null.
            viewer_fps_mean: viewer_fps.iter().sum::<f64>() / viewer_fps.len() as f64,
            viewer_fps_min: viewer_fps.iter().copied().reduce(f64::min).unwrap_or(f64::NAN),
            delivered_fps: fps.iter().sum(),
            total_mbit_per_s: (b1 - b0) as f64 * 8.0 / wall / 1e6,
            listed_viewers,
        };
        eprintln!(
            "rdhost-bench: {n} viewers: host CPU {:.1} %, viewer fps mean {:.1} min {:.1}, primary {:.1} fps, {:.1} Mbit/s to all clients",
            level.host_cpu, level.viewer_fps_mean, level.viewer_fps_min, level.primary_fps, level.total_mbit_per_s
        );
        levels.push(level);
        if primary.task.is_finished() || viewers.iter().any(|v| v.task.is_finished()) {
            break; // the join below says why
        }
    }
    pump.stop.store(true, Ordering::Relaxed);
    for (i, p) in std::iter::once(primary).chain(viewers).enumerate() {
        let c = p.task.await.context("a pumping task panicked")?.with_context(|| {
            if i == 0 { "the animated session's client".to_owned() } else { format!("viewer {}'s client", i - 1) }
        })?;
        drop(c);
    }
    host.check_running()?;
    if levels.len() < counts.len() {
        bail!("a client stopped before every viewer count was measured");
    }
    Ok(ViewersFigure { size, fps, levels })
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// Log a viewer session on, have its client type `rdhost shadow A` into its xterm, and wait
/// until that client shows A's animation.
async fn add_viewer(host: &Host, bin: &Path, i: usize, a: u32, size: (u16, u16), pump: &Pump) -> Result<Pumping> {
    let (mut c, id) = connect_client(host, &format!("viewer{i}"), &format!("viewer{i}-pw"), size).await?;
    // Below the xterm's first lines, where the prompt and the command go (the xterm is larger
    // than the smallest screens: it covers the whole of them).
    let spot = (size.0 / 3, size.1 * 2 / 3);
    if !c.pump_until(WAIT, |c| c.pixel(spot.0, spot.1).is_some_and(|p| near(p, XTERM_BG))).await? {
        bail!("session {id}: no xterm on screen (saved to {})", save_screen(&c, "viewer-noxterm").display());
    }
    // No window manager: focus follows the pointer.
    c.mouse_move(spot.0, spot.1).await?;
    c.pump_for(Duration::from_millis(300)).await?;
    // The xterm's shell knows its host from RDHOST_CONTROL_SOCKET: no --socket.
    c.type_text(&format!("{} shadow {a}\n", bin.display())).await?;
    if !c.pump_until(WAIT, |c| frame_number(c).is_some()).await? {
        bail!("session {id}: `rdhost shadow {a}` typed, but the client shows no animation (saved to {})", save_screen(&c, "viewer-noshadow").display());
    }
    Ok(keep_pumping(c, pump))
}

// ---------------------------------------------------------------------------------------------
// 3. events

type Received = Arc<Mutex<Vec<(Instant, EventRecord)>>>;

/// Event subscribers on a thread of their own, so that what they note as an event's arrival is
/// not delayed by the benchmark's clients (TLS, decoding, text search all run on the main thread).
struct Subscribers {
    /// What each subscriber received, stamped on arrival.
    logs: Vec<Received>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Dropping it ends the subscriptions.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscribers {
    fn start(socket: &Path, n: usize) -> Result<Subscribers> {
        let logs: Vec<Received> = (0..n).map(|_| Received::default()).collect();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (sinks, failures, socket) = (logs.clone(), Arc::clone(&errors), socket.to_owned());
        let thread = std::thread::Builder::new().name("subscribers".into()).spawn(move || {
            runtime.block_on(async move {
                for sink in sinks {
                    let (socket, failures) = (socket.clone(), Arc::clone(&failures));
                    tokio::spawn(async move {
                        let followed = control::follow_events(&socket, |e| sink.lock().unwrap().push((Instant::now(), e))).await;
                        // A stream that ends while the benchmark still listens is a finding too.
                        let why = followed.err().map_or_else(|| "the host ended the event stream".to_owned(), |e| e.to_string());
                        failures.lock().unwrap().push(why);
                    });
                }
                let _ = stopped.await;
            });
        })?;
        Ok(Subscribers { logs, errors, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn events_figure(bin: &Path, subscribers: usize, n: usize, parallel: usize) -> Result<EventsFigure> {
    let mut users: Vec<(String, String)> = (0..n).map(|i| (format!("churn{i}"), format!("churn{i}-pw"))).collect();
    users.push(("warm".into(), "warm-pw".into()));
    eprintln!("rdhost-bench: events figure: adding {} users", users.len());
    let mut host = Host::start(bin, "events", &users, "")?;
    eprintln!("rdhost-bench: events figure: host pid {}, {subscribers} subscribers", host.pid());
    let socket = host.socket().to_owned();
    let mut subscribed = Subscribers::start(&socket, subscribers)?;
    let logs = &subscribed.logs;
    // A warm-up logon that every subscriber must see: then all of them are subscribed.
    let (warm, w) = connect_client(&host, "warm", "warm-pw", (1024, 768)).await?;
    let saw = |log: &Received, event: &str, id: u32| log.lock().unwrap().iter().any(|(_, e)| e.event == event && e.session == id);
    if let Err(e) = wait_for(|| logs.iter().all(|l| saw(l, "logon", w)), "every subscriber sees the warm-up logon").await {
        bail!("{e}; subscribers' errors: {:?}", subscribed.errors.lock().unwrap());
    }
    warm.disconnect().await?;
    wait_for(|| logs.iter().all(|l| saw(l, "disconnect", w)), "every subscriber sees the warm-up disconnect").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base: Vec<usize> = logs.iter().map(|l| l.lock().unwrap().len()).collect();

    eprintln!("rdhost-bench: {n} sessions log on and off, {parallel} at a time");
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut churn = Vec::new();
    for (user, pw) in &users[..n] {
        let gate = Arc::clone(&gate);
        let cfg = host.client(user, pw);
        let socket = socket.clone();
        let user = user.clone();
        churn.push(tokio::spawn(async move { log_on_and_off(cfg, &socket, gate).await.with_context(|| user) }));
    }
    let mut logoffs: Vec<(u32, Instant)> = Vec::new();
    for (i, task) in churn.into_iter().enumerate() {
        logoffs.push(task.await.context("a logon task panicked")??);
        if (i + 1) % 20 == 0 {
            eprintln!("rdhost-bench: {} sessions logged on and off", i + 1);
        }
    }
    host.check_running()?;
    // Every subscriber has each session's logoff, and nothing more comes for a while.
    let ids: Vec<u32> = logoffs.iter().map(|(id, _)| *id).collect();
    wait_for(|| logs.iter().all(|l| ids.iter().all(|&id| saw(l, "logoff", id))), "every subscriber sees every logoff").await?;
    let mut quiet_since = (Instant::now(), logs.iter().map(|l| l.lock().unwrap().len()).sum::<usize>());
    while quiet_since.0.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = logs.iter().map(|l| l.lock().unwrap().len()).sum::<usize>();
        if now != quiet_since.1 {
            quiet_since = (Instant::now(), now);
        }
    }
    drop(subscribed.stop.take());
    let runs: Vec<Vec<(Instant, EventRecord)>> =
        logs.iter().zip(&base).map(|(l, &from)| l.lock().unwrap()[from..].to_vec()).collect();
    let last = runs.iter().flat_map(|r| r.iter().map(|(t, _)| *t)).max().unwrap_or(t0);
    let wall_secs = last.duration_since(t0).as_secs_f64();
    let lagged: u64 = runs.iter().flatten().filter(|(_, e)| e.event == "lagged").map(|(_, e)| e.missed.unwrap_or(1)).sum();
    let key = |e: &EventRecord| (e.event.clone(), e.session, e.from.clone(), e.to.clone());
    let identical = runs.iter().all(|r| r.len() == runs[0].len() && r.iter().zip(&runs[0]).all(|(x, y)| key(&x.1) == key(&y.1)));
    let mut kinds = BTreeMap::new();
    for (_, e) in &runs[0] {
        *kinds.entry(e.event.clone()).or_insert(0) += 1;
    }
    let spread_ms = if identical {
        (0..runs[0].len())
            .map(|k| {
                let times = runs.iter().map(|r| r[k].0);
                ms(times.clone().max().unwrap().duration_since(times.min().unwrap()))
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut logoff_event_ms = Vec::new();
    for (id, asked) in &logoffs {
        for r in &runs {
            if let Some((t, _)) = r.iter().find(|(_, e)| e.event == "logoff" && e.session == *id) {
                logoff_event_ms.push(ms(t.saturating_duration_since(*asked)));
            }
        }
    }
    Ok(EventsFigure {
        subscribers,
        sessions: n,
        parallel,
        wall_secs,
        per_subscriber: runs.iter().map(Vec::len).collect(),
        kinds,
        lagged,
        identical,
        spread_ms,
        logoff_event_ms,
    })
}

/// Log a session on (until its shell's prompt shows), then log it off through the control
/// socket. Returns its id and when the logoff was asked for.
async fn log_on_and_off(cfg: rdhost_client::ClientConfig, socket: &Path, gate: Arc<tokio::sync::Semaphore>) -> Result<(u32, Instant)> {
    let _turn = gate.acquire_owned().await?;
    let mut c = rdhost_client::connect(cfg).await?;
    if !c.pump_until(WAIT, |c| c.server_session_id().is_some()).await? {
        bail!("no session id");
    }
    let id = c.server_session_id().context("session id")?;
    if !pump_until_shown(&mut c, prompt_on_screen).await? {
        bail!("session {id}: no prompt (screen saved to {})", save_screen(&c, "churn-noprompt").display());
    }
    let asked = Instant::now();
    let request = Request::Logoff { session: SessionRef::Id(id), wait: true };
    // The client keeps reading so that the host's goodbye (0x2) is taken, as a real one would.
    let (reply, _) = tokio::join!(control::call(socket, &request), c.pump_until(WAIT, |c| c.closed()));
    reply.with_context(|| format!("logoff {id}"))?;
    Ok((id, asked))
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            bail!("timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

pub fn report(f: &SessionFigures) {
    let mut t = String::new();
    let _ = writeln!(t, "rdhost-bench session-management results (loopback, headless clients, TLS, {} cores)", cores());
    let _ = writeln!(t, "{:-<78}", "");
    if !f.connect.is_empty() {
        let _ = writeln!(t, "1. `rdhost connect A --dest B` (CLI binary) -> the client that showed B shows A (its id and A's picture)");
        for c in &f.connect {
            let what = match c.kind {
                Kind::Terminal => "terminal (shell token)",
                Kind::X11 => "x11 (recorder colour)",
            };
            let _ = writeln!(
                t,
                "   {:<24} n={:<3} median {:>6.1} ms  p90 {:>6.1} ms  min {:>6.1} ms | id at {:>5.1} ms, CLI exit {:>5.1} ms (medians)",
                what,
                c.screen_ms.len(),
                median(&c.screen_ms),
                percentile(&c.screen_ms, 90.0),
                percentile(&c.screen_ms, 0.0),
                median(&c.id_ms),
                median(&c.cli_ms)
            );
        }
        let codes: Vec<String> = f.connect.iter().map(|c| format!("{}: {}", c.kind.name(), c.displaced_with.map_or("none".into(), |e| format!("0x{e:X}")))).collect();
        let _ = writeln!(t, "   (one client moved back and forth between A and B; A's own client was dropped with {})", codes.join(", "));
    }
    for v in &f.viewers {
        let _ = writeln!(t, "2. x11 session with a full-screen animation ({}x{}, {} fps at the source), N viewers (`rdhost shadow`, view)", v.size.0, v.size.1, v.fps);
        let _ = writeln!(
            t,
            "   {:>7}  {:>9}  {:>6}  {:>16}  {:>7}  {:>7}  {:>6}  {:>5}  {:>4}  {:>5}  {:>6}",
            "viewers", "host CPU%", "vs 1", "viewer fps", "primary", "all fps", "Mbit/s", "X CPU", "anim", "bench", "others"
        );
        let one = v.levels.iter().find(|l| l.viewers == 1).or(v.levels.first()).map(|l| l.host_cpu);
        for l in &v.levels {
            let ratio = one.map_or(f64::NAN, |o| l.host_cpu / o);
            let _ = writeln!(
                t,
                "   {:>7}  {:>9.1}  {:>5.2}x  {:>5.1} (min {:>4.1})  {:>7.1}  {:>7.1}  {:>6.1}  {:>5.1}  {:>4.1}  {:>5.1}  {:>6.1}",
                l.viewers, l.host_cpu, ratio, l.viewer_fps_mean, l.viewer_fps_min, l.primary_fps, l.delivered_fps, l.total_mbit_per_s, l.x_servers_cpu, l.animation_cpu, l.bench_cpu, l.others_cpu
            );
        }
        let listed: Vec<String> = v.levels.iter().map(|l| format!("{}", l.listed_viewers)).collect();
        let _ = writeln!(
            t,
            "   (CPU in % of one core over {:.0} s; host = the rdhost process; X = every session's X server; bench = the clients, all on one thread;\n    others = the rest of the machine; fps = animation frames shown per second; `query session` listed {} viewers)",
            v.levels.first().map_or(0.0, |l| l.secs),
            listed.join("/")
        );
    }
    if let Some(e) = &f.events {
        let total: usize = e.per_subscriber.iter().sum();
        let per = e.per_subscriber.iter().map(|&k| k as f64).collect::<Vec<_>>();
        let _ = writeln!(t, "3. Events to {} subscribers (GET /v1/events) while {} sessions log on and off ({} at a time)", e.subscribers, e.sessions, e.parallel);
        let _ = writeln!(
            t,
            "   {:.1} s ({:.1} sessions on and off per s): {:.0} events/s per subscriber ({} events each{}), {:.0} events/s delivered in total",
            e.wall_secs,
            e.sessions as f64 / e.wall_secs,
            median(&per) / e.wall_secs,
            e.per_subscriber.first().copied().unwrap_or(0),
            if e.per_subscriber.iter().all(|&k| Some(&k) == e.per_subscriber.first()) { "" } else { ", not all the same" },
            total as f64 / e.wall_secs
        );
        let kinds: Vec<String> = e.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(t, "   kinds: {}", kinds.join(", "));
        let _ = writeln!(
            t,
            "   lagged: {} missed; every subscriber saw the same events in the same order: {}",
            e.lagged,
            if e.identical { "yes" } else { "NO" }
        );
        let _ = writeln!(
            t,
            "   spread of one event's arrival across subscribers: median {:.2} ms, p99 {:.2} ms; logoff asked -> its event: median {:.1} ms, p90 {:.1} ms",
            median(&e.spread_ms),
            percentile(&e.spread_ms, 99.0),
            median(&e.logoff_event_ms),
            percentile(&e.logoff_event_ms, 90.0)
        );
    }
    let loads: Vec<String> = f.loads.iter().map(|(what, load)| format!("{what} {load:.2}")).collect();
    let _ = writeln!(t, "   machine load average (1 min) as each figure started: {}", loads.join(", "));
    print!("{t}");

    let mut parts = Vec::new();
    if !f.connect.is_empty() {
        let c: Vec<String> = f
            .connect
            .iter()
            .map(|c| {
                format!(
                    "{{\"desktop\":\"{}\",\"n\":{},\"to_screen_ms\":{{\"median\":{},\"p90\":{}}},\"session_id_ms_median\":{},\"cli_ms\":{{\"median\":{},\"p90\":{}}},\"displaced_error_info\":{}}}",
                    c.kind.name(),
                    c.screen_ms.len(),
                    num(median(&c.screen_ms)),
                    num(percentile(&c.screen_ms, 90.0)),
                    num(median(&c.id_ms)),
                    num(median(&c.cli_ms)),
                    num(percentile(&c.cli_ms, 90.0)),
                    c.displaced_with.map_or("null".into(), |e| e.to_string())
                )
            })
            .collect();
        parts.push(format!("\"connect\":[{}]", c.join(",")));
    }
    let mut runs = Vec::new();
    for v in &f.viewers {
        let l: Vec<String> = v
            .levels
            .iter()
            .map(|l| {
                format!(
                    "{{\"viewers\":{},\"host_cpu\":{},\"viewer_fps_mean\":{},\"viewer_fps_min\":{},\"primary_fps\":{},\"all_clients_fps\":{},\"mbit_per_s\":{},\"x_servers_cpu\":{},\"animation_cpu\":{},\"bench_cpu\":{},\"others_cpu\":{},\"listed_viewers\":{}}}",
                    l.viewers,
                    num(l.host_cpu),
                    num(l.viewer_fps_mean),
                    num(l.viewer_fps_min),
                    num(l.primary_fps),
                    num(l.delivered_fps),
                    num(l.total_mbit_per_s),
                    num(l.x_servers_cpu),
                    num(l.animation_cpu),
                    num(l.bench_cpu),
                    num(l.others_cpu),
                    l.listed_viewers
                )
            })
            .collect();
        runs.push(format!("{{\"width\":{},\"height\":{},\"source_fps\":{},\"levels\":[{}]}}", v.size.0, v.size.1, v.fps, l.join(",")));
    }
    if !runs.is_empty() {
        parts.push(format!("\"viewers\":[{}]", runs.join(",")));
    }
    if let Some(e) = &f.events {
        let total: usize = e.per_subscriber.iter().sum();
        let per: Vec<String> = e.per_subscriber.iter().map(usize::to_string).collect();
        parts.push(format!(
            "\"events\":{{\"subscribers\":{},\"sessions\":{},\"parallel\":{},\"secs\":{},\"events_per_subscriber\":[{}],\"per_subscriber_per_s\":{},\"total_per_s\":{},\"lagged_missed\":{},\"identical\":{},\"spread_ms_median\":{},\"logoff_event_ms_median\":{}}}",
            e.subscribers,
            e.sessions,
            e.parallel,
            num(e.wall_secs),
            per.join(","),
            num(median(&e.per_subscriber.iter().map(|&k| k as f64).collect::<Vec<_>>()) / e.wall_secs),
            num(total as f64 / e.wall_secs),
            e.lagged,
            e.identical,
            num(median(&e.spread_ms)),
            num(median(&e.logoff_event_ms))
        ));
    }
    println!("{{\"rdhost_bench_sessions\":{{{}}}}}", parts.join(","));
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
