//! The desktop-sharing figures (issue 8), against a real `rdhost share start` sharing an Xvfb of
//! the benchmark's own, with headless clients as attendees:
//!
//! 1. Sharer CPU with 1, 5 and 20 attendees watching a full-screen animation (`rdhost-xanimate`,
//!    1280x800) on the shared display, `--auto-grant view` so every attendee sees it at once. Each
//!    attendee keeps reading and decoding in its own task (all on the benchmark's one thread) and
//!    counts the animation frames it shows by the frame number drawn into them. CPU in % of one
//!    core: the sharer with its descendants, the X server, the animation, this benchmark (the
//!    clients), and the rest of the machine. The sharer's encode is demand-driven (it encodes
//!    when an attendee is ready for more), so its CPU follows what the attendees take: at 30 fps
//!    the attendees' decoding saturates the benchmark's thread well before 20 of them take every
//!    frame, and the ratio then compares unequal work. A second run at 2 fps, where all 20 take
//!    every frame, is the like-for-like comparison.
//! 2. Reverse connect: the benchmark is the listening viewer (127.0.0.1, port 0, its own
//!    connection string) and runs `rdhost share connect-to-client STRING` (the CLI binary); timed
//!    from just before the CLI starts until the first frame is decoded, and until the shared
//!    desktop's content (the input recorder's colour) is on screen. One sharer for every run.
//! 3. Input-to-pixel latency against one host session (`rdhost serve`, x11 desktop running
//!    `rdhost-xrecorder`, which repaints in another colour on every key press) with three viewers
//!    in turn: our headless client (key sent to the changed pixels decoded, as in the x11
//!    figures), and `rdhost view` and `xfreerdp` each in a window on an Xvfb of its own, where the
//!    key is an XTEST press into that window and the end is the first screen read (GetImage of one
//!    pixel of the window, polled every 0.5 ms) that shows the recorder's other colour. The two
//!    windowed viewers are measured the same way, so their figures compare; the headless one has
//!    no window to draw into, so it is the lower bound.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdhost::control::client as control;
use rdhost::control::protocol::{AttendeeInfo, ENV_SOCKET, Request};
use rdhost_client::{Client, ClientConfig};
use rdhost_model::{ConnectionString, Listener};
use rdhost_xprobe::xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat, InputFocus};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use crate::host::{Host, ScratchDir};
use crate::x11::{RECORDER_COLOURS, frame_number, near, probe_bin};
use crate::{WAIT, median, ms, num, percentile, procfs};

/// The shared display's size (figures 1 and 2).
const SHARED_SIZE: (u16, u16) = (1280, 800);
/// The host session's size and the windowed viewers' (figure 3).
const SESSION_SIZE: (u16, u16) = (1024, 768);
/// The screen the windowed viewers run on: room for a 1024x768 window and whatever frame it has.
const VIEWER_SCREEN: (u16, u16) = (1280, 1024);
/// Lines of a child's log kept for error messages.
const LOG_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Figure {
    /// Sharer CPU with N attendees of an animation.
    Attendees,
    /// `connect-to-client` to the first frame at the listening viewer.
    Reverse,
    /// Input-to-pixel latency: headless client, `rdhost view`, xfreerdp.
    Latency,
}

/// The options of `--sharing-figures`.
#[derive(Debug, Clone, clap::Args)]
pub struct SharingArgs {
    /// sharing: attendee counts at which the sharer's CPU is measured (default 1,5,20; quick 1,3).
    #[arg(long, value_delimiter = ',')]
    pub attendees: Option<Vec<usize>>,
    /// sharing: length of each attendee CPU measurement in seconds (default 10, quick 3).
    #[arg(long)]
    pub attendee_secs: Option<u64>,
    /// sharing: runs of the attendees figure, each at this many frames per second of the shared
    /// animation (default 30,2: a rate one attendee takes in full, and one that 20 attendees
    /// decoding on the benchmark's one thread can all take in full; quick 30).
    #[arg(long, value_delimiter = ',')]
    pub animation_fps: Option<Vec<u32>>,
    /// sharing: `connect-to-client` runs timed, all with one sharer (default 20, quick 4).
    #[arg(long)]
    pub reverse_connects: Option<usize>,
    /// sharing: key presses per viewer for the latency figure (default 100, quick 20).
    #[arg(long)]
    pub viewer_presses: Option<usize>,
    /// sharing: only this figure.
    #[arg(long, value_enum)]
    pub sharing_only: Option<Figure>,
}

struct Settings {
    attendees: Vec<usize>,
    attendee_secs: u64,
    animation_fps: Vec<u32>,
    reverse_connects: usize,
    presses: usize,
    only: Option<Figure>,
}

impl Settings {
    fn new(a: &SharingArgs, quick: bool) -> Settings {
        let mut attendees = a.attendees.clone().unwrap_or(if quick { vec![1, 3] } else { vec![1, 5, 20] });
        attendees.retain(|&n| n > 0);
        attendees.sort_unstable();
        attendees.dedup();
        Settings {
            attendees,
            attendee_secs: a.attendee_secs.unwrap_or(if quick { 3 } else { 10 }).max(1),
            animation_fps: {
                let mut v = a.animation_fps.clone().unwrap_or(if quick { vec![30] } else { vec![30, 2] });
                v.iter_mut().for_each(|f| *f = (*f).clamp(1, 240));
                v.dedup();
                v
            },
            reverse_connects: a.reverse_connects.unwrap_or(if quick { 4 } else { 20 }).max(1),
            presses: a.viewer_presses.unwrap_or(if quick { 20 } else { 100 }).max(1),
            only: a.sharing_only,
        }
    }
}

pub struct AttendeeLevel {
    attendees: usize,
    secs: f64,
    /// The sharer process and its descendants.
    sharer_cpu: f64,
    x_server_cpu: f64,
    animation_cpu: f64,
    /// This benchmark: every attendee's decoding, on one thread.
    bench_cpu: f64,
    /// Everything else the machine ran meanwhile.
    others_cpu: f64,
    fps_median: f64,
    fps_min: f64,
    fps_max: f64,
    /// Animation frames shown per second by all attendees together.
    fps_all: f64,
    mbit_per_s: f64,
    /// Attendees as `rdhost share attendees` lists them.
    listed: usize,
}

pub struct AttendeesFigure {
    fps: u32,
    levels: Vec<AttendeeLevel>,
    codecs: String,
}

impl AttendeesFigure {
    /// The level the others compare with: one attendee (else the fewest measured).
    fn one(&self) -> Option<&AttendeeLevel> {
        self.levels.iter().find(|l| l.attendees == 1).or(self.levels.first())
    }

    /// Sharer CPU with the most attendees over that with one (the goal: at most 1.5).
    fn ratio(&self) -> f64 {
        match (self.one(), self.levels.last()) {
            (Some(one), Some(last)) => last.sharer_cpu / one.sharer_cpu,
            _ => f64::NAN,
        }
    }
}

pub struct ReverseFigure {
    /// From just before the CLI starts: the sharer's connection accepted, the RDP connection
    /// sequence done, the first frame decoded, the desktop's content on screen, the CLI's exit.
    accepted_ms: Vec<f64>,
    connected_ms: Vec<f64>,
    first_frame_ms: Vec<f64>,
    content_ms: Vec<f64>,
    cli_ms: Vec<f64>,
}

pub struct ViewerLatency {
    viewer: &'static str,
    how: String,
    /// The codec the host chose for this viewer (its "client connected" log line).
    codec: String,
    samples_ms: Vec<f64>,
}

pub struct LatencyFigure {
    viewers: Vec<ViewerLatency>,
}

#[derive(Default)]
pub struct SharingFigures {
    attendees: Vec<AttendeesFigure>,
    reverse: Option<ReverseFigure>,
    latency: Option<LatencyFigure>,
    /// The machine's 1-minute load average as each figure started: others share this machine.
    loads: Vec<(String, f64)>,
}

impl SharingFigures {
    fn note_load(&mut self, figure: &str) {
        let load = procfs::load_average().unwrap_or(f64::NAN);
        eprintln!("rdhost-bench: {figure}: load average {load:.2} at the start");
        self.loads.push((figure.to_owned(), load));
    }
}

pub async fn run(bin: &Path, args: &SharingArgs, quick: bool) -> Result<SharingFigures> {
    let s = Settings::new(args, quick);
    if !Xvfb::installed() {
        bail!("the sharing figures need Xvfb (package xvfb): the shared displays and the viewers' screens are Xvfbs");
    }
    let wanted = |f: Figure| s.only.is_none_or(|o| o == f);
    let mut f = SharingFigures::default();
    if wanted(Figure::Attendees) {
        if s.attendees.is_empty() {
            bail!("--attendees lists no count above 0");
        }
        for &fps in &s.animation_fps {
            f.note_load(&format!("attendees at {fps} fps"));
            let run = attendees_figure(bin, &s.attendees, s.attendee_secs, fps).await;
            f.attendees.push(run.with_context(|| format!("attendees figure, animation at {fps} fps"))?);
        }
    }
    if wanted(Figure::Reverse) {
        f.note_load("reverse connect");
        f.reverse = Some(reverse_figure(bin, s.reverse_connects).await.context("reverse-connect figure")?);
    }
    if wanted(Figure::Latency) {
        f.note_load("latency");
        f.latency = Some(latency_figure(bin, s.presses).await.context("latency figure")?);
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process the benchmark started: SIGTERM when dropped, SIGKILL if it lingers.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command) -> Result<Proc> {
        let child = command.spawn().with_context(|| format!("start {name}"))?;
        Ok(Proc { child, name: name.to_owned() })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("rdhost-bench: {} (pid {}) ignored SIGTERM for 10 s; killing it", self.name, self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Log = Arc<Mutex<VecDeque<String>>>;

/// Keep the last lines of `from` in `log`; `on_line` sees each line as it comes.
fn follow_lines(from: impl std::io::Read + Send + 'static, log: Log, mut on_line: impl FnMut(&str) + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            on_line(&line);
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

fn log_text(log: &Log) -> String {
    log.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|l| format!("{l}\n")).collect()
}

/// A full-screen X client of the benchmark's (the animation, the recorder) on `xvfb`.
fn x_client(program: &Path, args: &[&str], xvfb: &Xvfb) -> Result<Proc> {
    let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
    Proc::spawn(&name, Command::new(program).args(args).envs(xvfb.env()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()))
}

/// A running `rdhost share start --display` with its own state and runtime directories and
/// control socket, `--auto-grant view`. Stopped (SIGTERM) when dropped.
struct Sharer {
    proc: Proc,
    control: PathBuf,
    invitation: ConnectionString,
    password: String,
    log: Log,
    // Last: removed after the sharer stopped.
    _dir: ScratchDir,
}

impl Sharer {
    /// Share `xvfb`'s display, listening on 127.0.0.1 (a port of the system's choosing).
    fn start(bin: &Path, xvfb: &Xvfb, label: &str) -> Result<Sharer> {
        let dir = ScratchDir::new(label)?;
        let control = dir.path().join("share.sock");
        if control.as_os_str().len() > 100 {
            bail!("the control socket path {} is too long for a Unix socket: set TMPDIR to a shorter directory", control.display());
        }
        let (state, runtime) = (dir.path().join("state"), dir.path().join("run"));
        for d in [&state, &runtime] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        let password = format!("bench-{}-pw", std::process::id());
        let mut command = Command::new(bin);
        command
            .args(["share", "start", "--display", &xvfb.display().name, "--xauthority"])
            .arg(xvfb.xauthority())
            .args(["--listen", "127.0.0.1:0", "--password", &password, "--auto-grant", "view", "--attendee-limit", "1000", "--control"])
            .arg(&control)
            .env("XDG_STATE_HOME", &state)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("NO_COLOR", "1")
            // Inside an rdhost session a sharer without --display would share that session instead;
            // with --display it never does, but leave nothing to chance.
            .env_remove(ENV_SOCKET)
            .env_remove("RDHOST_SHARE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn("rdhost share start", &mut command)?;
        let log: Log = Arc::default();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        let stdout = proc.child.stdout.take().context("sharer stdout")?;
        let stderr = proc.child.stderr.take().context("sharer stderr")?;
        let mut first = Some(first_tx);
        follow_lines(stdout, Arc::clone(&log), move |line| {
            if let Some(tx) = first.take() {
                let _ = tx.send(line.to_owned());
            }
        });
        // Printed once the control socket is bound.
        follow_lines(stderr, Arc::clone(&log), move |line| {
            if line.starts_with("control socket: ") {
                let _ = control_tx.send(());
            }
        });
        let line = match first_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => bail!("the sharer printed no invitation within 60 s (exit {:?}); its output:\n{}", proc.exited(), log_text(&log)),
        };
        let invitation = ConnectionString::parse(&line).map_err(|e| anyhow::anyhow!("the sharer's first line is not an invitation ({e}): {line:?}"))?;
        if invitation.ticket.is_none() {
            bail!("the sharer's invitation has no ticket (<A ID>): {line:?}");
        }
        if control_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            bail!("the sharer did not open its control socket {} within 30 s; its output:\n{}", control.display(), log_text(&log));
        }
        Ok(Sharer { proc, control, invitation, password, log, _dir: dir })
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn log(&self) -> String {
        log_text(&self.log)
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.proc.exited() {
            bail!("the sharer exited ({status}); its output:\n{}", self.log());
        }
        Ok(())
    }

    /// An attendee of the invitation, named `name`, asking for the shared display's size (the
    /// sharer keeps its own anyway). Its `addr` is not used for reverse connect.
    fn attendee(&self, name: &str) -> Result<ClientConfig> {
        let ticket = self.invitation.ticket.clone().context("the invitation has no ticket")?;
        let addr = match self.invitation.listeners.first() {
            Some(l) => SocketAddr::new(l.name.parse::<IpAddr>().with_context(|| format!("invitation address {:?}", l.name))?, l.port),
            None => SocketAddr::from(([127, 0, 0, 1], 9)),
        };
        let mut cfg = ClientConfig::attendee(addr, name, ticket, self.password.clone());
        (cfg.width, cfg.height) = SHARED_SIZE;
        cfg.connect_timeout = WAIT;
        cfg.client_name = "rdhost-bench".into();
        Ok(cfg)
    }

    async fn attendees(&self) -> Result<Vec<AttendeeInfo>> {
        control::call_as::<Vec<AttendeeInfo>>(&self.control, &Request::Attendees)
            .await
            .map_err(|e| anyhow::anyhow!("rdhost share attendees: {e}"))
    }
}

fn cpu_pct(ticks: u64, wall: f64) -> f64 {
    100.0 * ticks as f64 / procfs::ticks_per_sec() as f64 / wall
}

fn save_screen(c: &Client, what: &str) -> PathBuf {
    let png = std::env::temp_dir().join(format!("rdhost-bench-{what}.png"));
    let _ = c.save_png(&png);
    png
}

// ---------------------------------------------------------------------------------------------
// 1. attendees

#[derive(Default)]
struct Counters {
    /// Animation frames shown (forward steps of the frame number).
    distinct: AtomicU64,
    bytes: AtomicU64,
}

struct Pumping {
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<Result<Client>>,
}

/// Frame numbers count as shown only when they move forward (by less than half the u16 range):
/// a code read while its cells are half repainted can read as a step back, which would
/// otherwise count twice.
const MAX_STEP: u16 = u16::MAX / 2;

/// Switches shared by every pumping attendee.
#[derive(Clone, Default)]
struct Pump {
    stop: Arc<AtomicBool>,
    /// Set while an attendee connects: every client decodes on the benchmark's one thread, and a
    /// new one's connection sequence must not wait behind the others. Paused clients stop
    /// reading; the sharer's stage skips them to the newest frame.
    paused: Arc<AtomicBool>,
}

/// Keep `c` reading and decoding as fast as it can until `stop`, counting the frames it shows.
fn keep_pumping(mut c: Client, pump: &Pump) -> Pumping {
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

async fn add_attendee(sharer: &Sharer, i: usize, pump: &Pump) -> Result<Pumping> {
    let cfg = sharer.attendee(&format!("attendee{i}"))?;
    let mut c = rdhost_client::connect(cfg).await.with_context(|| format!("attendee {i} connects"))?;
    if !c.pump_until(WAIT, |c| frame_number(c).is_some()).await? {
        bail!("attendee {i}: no animation frame number on screen after {WAIT:?} (saved to {})", save_screen(&c, "sharing-attendee").display());
    }
    Ok(keep_pumping(c, pump))
}

async fn attendees_figure(bin: &Path, counts: &[usize], secs: u64, fps: u32) -> Result<AttendeesFigure> {
    let animate = probe_bin(bin, "rdhost-xanimate")?;
    let xvfb = Xvfb::start(SHARED_SIZE.0, SHARED_SIZE.1).context("start Xvfb")?;
    let _animation = x_client(&animate, &["--fps", &fps.to_string()], &xvfb)?;
    let mut sharer = Sharer::start(bin, &xvfb, "share-cpu")?;
    eprintln!(
        "rdhost-bench: attendees figure: sharer pid {} shares {} ({}x{}, animation at {fps} fps)",
        sharer.pid(),
        xvfb.display().name,
        SHARED_SIZE.0,
        SHARED_SIZE.1
    );
    let pump = Pump::default();
    let mut attendees: Vec<Pumping> = Vec::new();
    let mut levels = Vec::new();
    let me = std::process::id();
    for &n in counts {
        while attendees.len() < n {
            let i = attendees.len();
            pump.paused.store(true, Ordering::Relaxed);
            let added = add_attendee(&sharer, i, &pump).await;
            pump.paused.store(false, Ordering::Relaxed);
            attendees.push(added.with_context(|| format!("attendee {i}; sharer's output:\n{}", sharer.log()))?);
            if (i + 1).is_multiple_of(5) || i + 1 == n {
                eprintln!("rdhost-bench: {} attendees", i + 1);
            }
        }
        sharer.check_running()?;
        let listed = sharer.attendees().await?.len();
        // Let the last attendee's first full picture go by.
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("rdhost-bench: measuring {secs} s with {n} attendees");
        let snapshot = || {
            // This benchmark's tree: itself, the Xvfb, the animation, the sharer.
            let by_name = procfs::cpu_by_name(me);
            let get = |name: &str| by_name.get(name).copied().unwrap_or(0);
            let sharer_ticks: HashMap<(u32, u64), u64> = procfs::cpu_ticks(sharer.pid());
            let bench = procfs::process_ticks(me).unwrap_or(0);
            (
                sharer_ticks,
                get("Xvfb") + get("Xorg"),
                get("rdhost-xanimate"),
                bench,
                procfs::machine_busy_ticks().unwrap_or(0) as i64 - by_name.values().sum::<u64>() as i64,
            )
        };
        let frames = |p: &Pumping| p.counters.distinct.load(Ordering::Relaxed);
        let bytes = |p: &Pumping| p.counters.bytes.load(Ordering::Relaxed);
        let (cpu0, f0, b0, t0) = (snapshot(), attendees.iter().map(frames).collect::<Vec<_>>(), attendees.iter().map(bytes).collect::<Vec<_>>(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu1, f1, b1, wall) =
            (snapshot(), attendees.iter().map(frames).collect::<Vec<_>>(), attendees.iter().map(bytes).collect::<Vec<_>>(), t0.elapsed().as_secs_f64());
        let mbit_each: Vec<f64> = b1.iter().zip(&b0).map(|(x, y)| x.saturating_sub(*y) as f64 * 8.0 / wall / 1e6).collect();
        let sharer_ticks: u64 = cpu1.0.iter().map(|(k, t)| t.saturating_sub(cpu0.0.get(k).copied().unwrap_or(0))).sum();
        let fps_each: Vec<f64> = f1.iter().zip(&f0).map(|(x, y)| x.saturating_sub(*y) as f64 / wall).collect();
        let level = AttendeeLevel {
            attendees: n,
            secs: wall,
            sharer_cpu: cpu_pct(sharer_ticks, wall),
            x_server_cpu: cpu_pct(cpu1.1.saturating_sub(cpu0.1), wall),
            animation_cpu: cpu_pct(cpu1.2.saturating_sub(cpu0.2), wall),
            bench_cpu: cpu_pct(cpu1.3.saturating_sub(cpu0.3), wall),
            others_cpu: cpu_pct((cpu1.4 - cpu0.4).max(0) as u64, wall),
            fps_median: median(&fps_each),
            fps_min: fps_each.iter().copied().reduce(f64::min).unwrap_or(f64::NAN),
            fps_max: fps_each.iter().copied().reduce(f64::max).unwrap_or(f64::NAN),
            fps_all: fps_each.iter().sum(),
            mbit_per_s: mbit_each.iter().sum(),
            listed,
        };
        eprintln!(
            "rdhost-bench: {n} attendees: sharer CPU {:.1} %, X server {:.1} %, bench {:.1} %; fps median {:.1} (min {:.1}, max {:.1}); {:.1} Mbit/s in all",
            level.sharer_cpu, level.x_server_cpu, level.bench_cpu, level.fps_median, level.fps_min, level.fps_max, level.mbit_per_s
        );
        let each: Vec<String> = fps_each.iter().zip(&mbit_each).map(|(f, m)| format!("{f:.1}/{m:.0}")).collect();
        eprintln!("rdhost-bench: {n} attendees: fps/Mbit/s of each, in the order they joined: {}", each.join(" "));
        levels.push(level);
        if attendees.iter().any(|a| a.task.is_finished()) {
            break; // the join below says why
        }
    }
    pump.stop.store(true, Ordering::Relaxed);
    let mut codecs: HashMap<String, u64> = HashMap::new();
    for (i, p) in attendees.into_iter().enumerate() {
        let c = p.task.await.context("an attendee's task panicked")?.with_context(|| format!("attendee {i}'s client; sharer's output:\n{}", sharer.log()))?;
        for (codec, k) in c.codecs_seen() {
            *codecs.entry(format!("{codec:?}")).or_default() += k;
        }
        drop(c);
    }
    sharer.check_running()?;
    if levels.len() < counts.len() {
        bail!("an attendee stopped before every count was measured");
    }
    let mut codecs: Vec<(String, u64)> = codecs.into_iter().collect();
    codecs.sort();
    let codecs = codecs.iter().map(|(c, k)| format!("{c}:{k}")).collect::<Vec<_>>().join(" ");
    Ok(AttendeesFigure { fps, levels, codecs })
}

// ---------------------------------------------------------------------------------------------
// 2. reverse connect

/// The shared recorder's picture (either colour) at the centre of the client's screen.
fn shows_recorder(c: &Client) -> bool {
    let (x, y) = (c.width() / 2, c.height() / 2);
    c.pixel(x, y).is_some_and(|p| RECORDER_COLOURS.iter().any(|&k| near(p, k)))
}

struct ReverseRun {
    accepted: Duration,
    connected: Duration,
    first_frame: Duration,
    content: Duration,
    cli: Duration,
}

async fn reverse_figure(bin: &Path, n: usize) -> Result<ReverseFigure> {
    let recorder = probe_bin(bin, "rdhost-xrecorder")?;
    let xvfb = Xvfb::start(SHARED_SIZE.0, SHARED_SIZE.1).context("start Xvfb")?;
    let _recorder = x_client(&recorder, &["--override-redirect"], &xvfb)?;
    // The sharer listens too, though nothing connects there: a `--no-listen` sharer's invitation
    // has no <L> element, which ConnectionString::parse (and `rdhost view`) refuse.
    let mut sharer = Sharer::start(bin, &xvfb, "share-reverse")?;
    eprintln!("rdhost-bench: reverse-connect figure: sharer pid {} shares {}, {n} connects", sharer.pid(), xvfb.display().name);
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        let run = reverse_once(bin, &sharer, i).await.with_context(|| format!("reverse connect {}; sharer's output:\n{}", i + 1, sharer.log()))?;
        eprintln!(
            "rdhost-bench: reverse connect {}/{n}: accepted {:.1} ms, connected {:.1} ms, first frame {:.1} ms, content {:.1} ms, CLI exit {:.1} ms",
            i + 1,
            ms(run.accepted),
            ms(run.connected),
            ms(run.first_frame),
            ms(run.content),
            ms(run.cli)
        );
        runs.push(run);
        sharer.check_running()?;
        // The next run starts with no attendee: the sharer saw this one leave.
        let deadline = Instant::now() + WAIT;
        while !sharer.attendees().await?.is_empty() {
            if Instant::now() >= deadline {
                bail!("the sharer still lists an attendee {WAIT:?} after it disconnected");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let pick = |f: fn(&ReverseRun) -> Duration| runs.iter().map(|r| ms(f(r))).collect::<Vec<_>>();
    Ok(ReverseFigure {
        accepted_ms: pick(|r| r.accepted),
        connected_ms: pick(|r| r.connected),
        first_frame_ms: pick(|r| r.first_frame),
        content_ms: pick(|r| r.content),
        cli_ms: pick(|r| r.cli),
    })
}

/// One reverse connect: listen, hand our string to `connect-to-client`, serve as the RDP client
/// on the connection the sharer dials, until the recorder's picture shows.
async fn reverse_once(bin: &Path, sharer: &Sharer, i: usize) -> Result<ReverseRun> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("listen on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let ours = ConnectionString {
        ticket: None,
        kh: None,
        kh2: None,
        transport_id: "1".into(),
        sid: "0".into(),
        listeners: vec![Listener { port, name: "127.0.0.1".into() }],
    }
    .to_string();
    let cfg = sharer.attendee(&format!("reverse{i}"))?;
    let t0 = Instant::now();
    let child = tokio::process::Command::new(bin)
        .args(["share", "connect-to-client", &ours, "--control"])
        .arg(&sharer.control)
        .env_remove("RDHOST_SHARE_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("run rdhost share connect-to-client")?;
    let cli = async {
        let out = child.wait_with_output().await;
        (out, t0.elapsed())
    };
    let viewer = async {
        let (stream, _) = listener.accept().await.context("accept the sharer's connection")?;
        let accepted = t0.elapsed();
        stream.set_nodelay(true)?;
        let mut c = rdhost_client::connect_over(stream, cfg).await.context("the RDP connection sequence over the sharer's connection")?;
        let connected = t0.elapsed();
        let mut first = None;
        let mut content = None;
        let shown = c
            .pump_until(WAIT, |c| {
                let now = t0.elapsed();
                if first.is_none() && c.frames_received() > 0 {
                    first = Some(now);
                }
                if shows_recorder(c) {
                    content = Some(now);
                }
                content.is_some()
            })
            .await?;
        if !shown {
            bail!("the recorder's picture did not show within {WAIT:?} of connecting (saved to {})", save_screen(&c, "sharing-reverse").display());
        }
        let content = content.context("shown without a time")?;
        Ok::<_, anyhow::Error>((c, accepted, connected, first.unwrap_or(content), content))
    };
    let (mut cli, mut viewer) = (std::pin::pin!(cli), std::pin::pin!(viewer));
    let (mut cli_done, mut viewer_done) = (None, None);
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while cli_done.is_none() || viewer_done.is_none() {
        tokio::select! {
            (out, took) = &mut cli, if cli_done.is_none() => {
                let out = out.context("wait for rdhost share connect-to-client")?;
                if !out.status.success() {
                    bail!("rdhost share connect-to-client failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
                }
                cli_done = Some(took);
            }
            r = &mut viewer, if viewer_done.is_none() => viewer_done = Some(r?),
            _ = tokio::time::sleep_until(deadline) => bail!(
                "no picture {:?} after connect-to-client (CLI {}, viewer {})",
                2 * WAIT,
                if cli_done.is_some() { "returned" } else { "still running" },
                if viewer_done.is_some() { "done" } else { "waiting" }
            ),
        }
    }
    let (c, accepted, connected, first_frame, content) = viewer_done.context("viewer result")?;
    c.disconnect().await.context("disconnect")?;
    Ok(ReverseRun { accepted, connected, first_frame, content, cli: cli_done.context("CLI result")? })
}

// ---------------------------------------------------------------------------------------------
// 3. latency

async fn latency_figure(bin: &Path, presses: usize) -> Result<LatencyFigure> {
    let recorder = probe_bin(bin, "rdhost-xrecorder")?;
    let users = [("lat".to_owned(), "lat-pw".to_owned())];
    let command = format!("exec {} --override-redirect >/dev/null", recorder.display());
    let config = format!("desktop = \"x11\"\nsession_command = {command:?}\ncodec = \"auto\"\n");
    let mut host = Host::start(bin, "share-latency", &users, &config)?;
    eprintln!("rdhost-bench: latency figure: host pid {} on {}, {presses} key presses per viewer", host.pid(), host.addr);
    let mut viewers = Vec::new();

    let (samples, codec) = headless_latency(&host, presses).await.context("headless client")?;
    viewers.push(ViewerLatency {
        viewer: "headless client",
        how: "rdhost-client library: key PDU sent -> changed pixel decoded".into(),
        codec,
        samples_ms: samples,
    });
    host.check_running()?;

    let scratch = ScratchDir::new("viewers")?;
    let (w, h) = SESSION_SIZE;
    let mut view = Command::new(bin);
    view.args(["view", &host.addr.to_string(), "--user", "lat", "--password", "lat-pw", "--size", &format!("{w}x{h}")])
        .env("RUST_LOG", "warn");
    let (samples, codec) = window_latency(&mut host, "rdhost view", &mut view, presses, scratch.path()).await.context("rdhost view")?;
    let how = window_how(&format!("rdhost view HOST --user U --size {w}x{h}"));
    viewers.push(ViewerLatency { viewer: "rdhost view", how, codec, samples_ms: samples });
    host.check_running()?;

    if which("xfreerdp").is_some() {
        let home = scratch.path().join("home");
        std::fs::create_dir_all(&home)?;
        let options = [format!("/v:{}", host.addr), "/u:lat".into(), "/p:lat-pw".into(), "/cert:ignore".into(), "/sec:tls".into(), format!("/size:{w}x{h}")];
        let mut xfreerdp = Command::new("xfreerdp");
        xfreerdp.args(&options).env("HOME", &home).env("XDG_CONFIG_HOME", home.join(".config"));
        let (samples, codec) = window_latency(&mut host, "xfreerdp", &mut xfreerdp, presses, scratch.path()).await.context("xfreerdp")?;
        let shown: Vec<&str> = options.iter().map(|o| if o.starts_with("/p:") { "/p:PW" } else { o.as_str() }).collect();
        let how = window_how(&format!("xfreerdp {}", shown.join(" ")));
        viewers.push(ViewerLatency { viewer: "xfreerdp", how, codec, samples_ms: samples });
        host.check_running()?;
    } else {
        eprintln!("rdhost-bench: xfreerdp is not installed (package freerdp2-x11): its latency is not measured");
    }
    Ok(LatencyFigure { viewers })
}

fn window_how(command: &str) -> String {
    format!("`{command}` in a window on its own Xvfb: XTEST key press -> the window's pixel changed (GetImage poll 0.5 ms)")
}

/// The codec of the host's last "client connected" log line (`codec=…`).
fn negotiated_codec(host_log: &str) -> String {
    host_log
        .lines()
        .rev()
        .find(|l| l.contains("client connected"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("codec=")))
        .map_or_else(|| "unknown".to_owned(), |c| c.trim_matches('"').to_owned())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// A short pause after each press, varied so that presses do not lock onto the host's or the
/// viewer's frame timing: 60..76 ms.
fn pause_after(i: usize) -> Duration {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    Duration::from_millis(60 + x % 17)
}

/// Our client library against the recorder session, as the x11 figures measure it.
async fn headless_latency(host: &Host, presses: usize) -> Result<(Vec<f64>, String)> {
    let mut cfg = host.client("lat", "lat-pw");
    (cfg.width, cfg.height) = SESSION_SIZE;
    let mut c = rdhost_client::connect(cfg).await.context("connect")?;
    let probe = (SESSION_SIZE.0 / 2, SESSION_SIZE.1 / 2);
    let colour = |c: &Client| c.pixel(probe.0, probe.1).unwrap_or([0, 0, 0]);
    if !c.pump_until(WAIT, |c| RECORDER_COLOURS.iter().any(|&k| near(colour(c), k))).await? {
        bail!("the recorder's window never showed (pixel {:?}); host log:\n{}", colour(&c), host.log());
    }
    // No window manager in the session: focus follows the pointer.
    c.mouse_move(probe.0 + 100, probe.1 + 100).await?;
    c.pump_for(Duration::from_millis(300)).await?;
    eprintln!("rdhost-bench: headless client: {presses} key presses");
    let mut samples = Vec::with_capacity(presses);
    for i in 0..presses {
        let before = colour(&c);
        let t0 = Instant::now();
        c.key(0x1E, false, true).await?;
        let changed = c.pump_until(WAIT, |c| !near(colour(c), before) && RECORDER_COLOURS.iter().any(|&k| near(colour(c), k))).await?;
        let dt = t0.elapsed();
        c.key(0x1E, false, false).await?;
        if !changed {
            bail!("press {i}: the pixel did not change in {WAIT:?}");
        }
        samples.push(ms(dt));
        c.pump_for(pause_after(i)).await?;
    }
    c.disconnect().await?;
    Ok((samples, negotiated_codec(&host.log())))
}

/// One pixel of the screen (the root window, which holds what every window shows on an Xvfb).
fn screen_pixel(conn: &RustConnection, root: u32, x: i16, y: i16) -> Result<[u8; 3]> {
    let image = conn.get_image(ImageFormat::Z_PIXMAP, root, x, y, 1, 1, !0)?.reply()?;
    match image.data.get(..3) {
        // Depth 24 in 32 bits, least significant byte first: B, G, R.
        Some(&[b, g, r]) => Ok([r, g, b]),
        _ => bail!("GetImage answered {} bytes for one pixel", image.data.len()),
    }
}

/// Where the recorder shows on the screen: the bounding box of its colours, if it covers at
/// least a 200x200 area densely.
fn find_recorder(conn: &RustConnection, root: u32, (w, h): (u16, u16)) -> Result<Option<(u16, u16, u16, u16)>> {
    let image = conn.get_image(ImageFormat::Z_PIXMAP, root, 0, 0, w, h, !0)?.reply()?;
    let (mut x0, mut y0, mut x1, mut y1, mut count) = (u16::MAX, u16::MAX, 0u16, 0u16, 0usize);
    for (i, px) in image.data.chunks_exact(4).enumerate() {
        let rgb = [px[2], px[1], px[0]];
        if RECORDER_COLOURS.iter().any(|&k| near(rgb, k)) {
            let (x, y) = ((i % usize::from(w)) as u16, (i / usize::from(w)) as u16);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            count += 1;
        }
    }
    if count < 200 * 200 || x1 < x0 + 200 || y1 < y0 + 200 {
        return Ok(None);
    }
    let area = usize::from(x1 - x0 + 1) * usize::from(y1 - y0 + 1);
    Ok((count * 10 >= area * 9).then_some((x0, y0, x1, y1)))
}

/// The X key code that types `keysym` under the screen's keymap.
fn keycode_for(conn: &RustConnection, keysym: u32) -> Result<u8> {
    let setup = conn.setup();
    let (min, max) = (setup.min_keycode, setup.max_keycode);
    let map = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
    let per = usize::from(map.keysyms_per_keycode).max(1);
    let index = map.keysyms.iter().position(|&k| k == keysym).context("no key types 'a' in the viewer screen's keymap")?;
    Ok(min + u8::try_from(index / per).context("key code")?)
}

/// A viewer program in a window on an Xvfb of its own, logged on to the host's recorder
/// session: XTEST key presses into its window, timed until one pixel of the window (read from
/// the screen) shows the recorder's other colour.
async fn window_latency(host: &mut Host, name: &str, command: &mut Command, presses: usize, scratch: &Path) -> Result<(Vec<f64>, String)> {
    let screen = Xvfb::start(VIEWER_SCREEN.0, VIEWER_SCREEN.1).context("start the viewer's Xvfb")?;
    let conn = screen.connect().context("connect to the viewer's Xvfb")?;
    let root = conn.setup().roots.first().context("the viewer's Xvfb has no screen")?.root;
    let log_path = scratch.join(format!("{}.log", name.replace(' ', "-")));
    let log = std::fs::File::create(&log_path)?;
    let mut viewer = Proc::spawn(
        name,
        command.envs(screen.env()).env_remove("WAYLAND_DISPLAY").stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log),
    )?;
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    let (x0, y0, x1, y1) = loop {
        if let Some(found) = find_recorder(&conn, root, VIEWER_SCREEN)? {
            break found;
        }
        if let Some(status) = viewer.exited() {
            bail!("{name} exited ({status}) before showing the session; its output:\n{}\nhost log:\n{}", read_log(), host.log());
        }
        if Instant::now() >= deadline {
            bail!("{name} did not show the recorder's window within {WAIT:?}; its output:\n{}\nhost log:\n{}", read_log(), host.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let codec = negotiated_codec(&host.log());
    eprintln!("rdhost-bench: {name} shows the session at {x0},{y0}..{x1},{y1} of its screen (codec {codec})");
    let probe = (((x0 + x1) / 2) as i16, ((y0 + y1) / 2) as i16);
    // The pointer rests off the probed pixel (a viewer may draw the remote pointer there), inside
    // the window: the viewer takes the keyboard (no window manager here: focus it as one would)
    // and moves the remote pointer onto the recorder, which then has the session's focus.
    let rest = (probe.0 + 100, probe.1 + 100);
    conn.xtest_fake_input(xproto::MOTION_NOTIFY_EVENT, 0, x11rb::CURRENT_TIME, root, rest.0, rest.1, 0)?;
    let under = conn.query_pointer(root)?.reply()?.child;
    if under != x11rb::NONE {
        conn.set_input_focus(InputFocus::PARENT, under, x11rb::CURRENT_TIME)?;
    }
    conn.flush()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = keycode_for(&conn, 0x61)?;
    eprintln!("rdhost-bench: {name}: {presses} key presses");
    let mut samples = Vec::with_capacity(presses);
    for i in 0..presses {
        let before = screen_pixel(&conn, root, probe.0, probe.1)?;
        let t0 = Instant::now();
        conn.xtest_fake_input(xproto::KEY_PRESS_EVENT, key, x11rb::CURRENT_TIME, root, 0, 0, 0)?;
        conn.flush()?;
        let dt = loop {
            let now = screen_pixel(&conn, root, probe.0, probe.1)?;
            if !near(now, before) && RECORDER_COLOURS.iter().any(|&k| near(now, k)) {
                break t0.elapsed();
            }
            if t0.elapsed() > WAIT {
                bail!(
                    "{name}, press {}: the window's pixel stayed {now:?} for {WAIT:?}; its output:\n{}\nhost log:\n{}",
                    i + 1,
                    read_log(),
                    host.log()
                );
            }
            // Blocking on purpose: a timer of the runtime would add its own granularity.
            std::thread::sleep(Duration::from_micros(500));
        };
        conn.xtest_fake_input(xproto::KEY_RELEASE_EVENT, key, x11rb::CURRENT_TIME, root, 0, 0, 0)?;
        conn.flush()?;
        samples.push(ms(dt));
        if let Some(status) = viewer.exited() {
            bail!("{name} exited ({status}) during the presses; its output:\n{}", read_log());
        }
        tokio::time::sleep(pause_after(i)).await;
    }
    drop(viewer);
    drop(screen);
    // Let the host see the viewer leave before the next one logs on to the same session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((samples, codec))
}

// ---------------------------------------------------------------------------------------------
// Report

pub fn report(f: &SharingFigures) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut t = String::new();
    let _ = writeln!(t, "rdhost-bench desktop-sharing results (loopback, TLS, {cores} cores)");
    let _ = writeln!(t, "{:-<78}", "");
    for a in &f.attendees {
        let _ = writeln!(
            t,
            "1. `rdhost share start --display` of a full-screen animation ({}x{}, {} fps at the source), N attendees (--auto-grant view)",
            SHARED_SIZE.0, SHARED_SIZE.1, a.fps
        );
        let _ = writeln!(
            t,
            "   {:>9}  {:>10}  {:>6}  {:>22}  {:>7}  {:>6}  {:>5}  {:>4}  {:>5}  {:>6}",
            "attendees", "sharer CPU", "vs 1", "fps median (min..max)", "all fps", "Mbit/s", "X CPU", "anim", "bench", "others"
        );
        let one = a.one().map(|l| l.sharer_cpu);
        for l in &a.levels {
            let r = one.map_or(f64::NAN, |o| l.sharer_cpu / o);
            let _ = writeln!(
                t,
                "   {:>9}  {:>9.1}%  {:>5.2}x  {:>8.1} ({:>4.1}..{:>4.1})  {:>7.1}  {:>6.1}  {:>5.1}  {:>4.1}  {:>5.1}  {:>6.1}",
                l.attendees, l.sharer_cpu, r, l.fps_median, l.fps_min, l.fps_max, l.fps_all, l.mbit_per_s, l.x_server_cpu, l.animation_cpu, l.bench_cpu, l.others_cpu
            );
        }
        if let (Some(one), Some(last)) = (a.one(), a.levels.last()) {
            let ratio = a.ratio();
            let verdict = if ratio <= 1.5 { "meets" } else { "misses" };
            let _ = writeln!(t, "   sharer CPU with {} attendees / with {}: {ratio:.2}x ({verdict} the goal of <= 1.5x)", last.attendees, one.attendees);
        }
        let listed: Vec<String> = a.levels.iter().map(|l| l.listed.to_string()).collect();
        let _ = writeln!(
            t,
            "   (CPU in % of one core over {:.0} s each; sharer = `rdhost share start` and descendants; X = the shared Xvfb; anim = rdhost-xanimate;\n    bench = this process, every attendee decoding on its one thread; others = the rest of the machine; fps = animation frames\n    each attendee showed per second, all fps = by all of them together; `share attendees` listed {}; codecs seen: {})",
            a.levels.first().map_or(0.0, |l| l.secs),
            listed.join("/"),
            a.codecs
        );
    }
    if let Some(r) = &f.reverse {
        let _ = writeln!(
            t,
            "2. Reverse connect: `rdhost share connect-to-client STRING` (CLI) -> first frame at the listening viewer (n={}, one sharer, --auto-grant view)",
            r.first_frame_ms.len()
        );
        let row = |t: &mut String, what: &str, v: &[f64]| {
            let _ = writeln!(t, "   {what:<30} median {:>7.1} ms  p90 {:>7.1} ms  min {:>7.1} ms  max {:>7.1} ms", median(v), percentile(v, 90.0), percentile(v, 0.0), percentile(v, 100.0));
        };
        row(&mut t, "first frame decoded", &r.first_frame_ms);
        row(&mut t, "desktop's content on screen", &r.content_ms);
        row(&mut t, "(sharer's TCP accepted)", &r.accepted_ms);
        row(&mut t, "(RDP connection sequence done)", &r.connected_ms);
        row(&mut t, "(CLI exited: admitted)", &r.cli_ms);
    }
    if let Some(l) = &f.latency {
        let _ = writeln!(t, "3. Key press -> changed pixels, one host session (x11 desktop running rdhost-xrecorder, {}x{})", SESSION_SIZE.0, SESSION_SIZE.1);
        for v in &l.viewers {
            let s = &v.samples_ms;
            let _ = writeln!(
                t,
                "   {:<16} n={:<4} median {:>6.1} ms  p95 {:>6.1} ms  min {:>6.1} ms  max {:>6.1} ms  codec {}",
                v.viewer,
                s.len(),
                median(s),
                percentile(s, 95.0),
                percentile(s, 0.0),
                percentile(s, 100.0),
                v.codec
            );
        }
        for v in &l.viewers {
            let _ = writeln!(t, "   {}: {}", v.viewer, v.how);
        }
    }
    let loads: Vec<String> = f.loads.iter().map(|(what, load)| format!("{what} {load:.2}")).collect();
    let _ = writeln!(t, "   machine load average (1 min) as each figure started: {}", loads.join(", "));
    print!("{t}");

    let mut parts = Vec::new();
    let mut runs = Vec::new();
    for a in &f.attendees {
        let levels: Vec<String> = a
            .levels
            .iter()
            .map(|l| {
                format!(
                    "{{\"attendees\":{},\"secs\":{},\"sharer_cpu\":{},\"x_server_cpu\":{},\"animation_cpu\":{},\"bench_cpu\":{},\"others_cpu\":{},\"fps_median\":{},\"fps_min\":{},\"fps_max\":{},\"fps_all\":{},\"mbit_per_s\":{},\"listed_attendees\":{}}}",
                    l.attendees,
                    num(l.secs),
                    num(l.sharer_cpu),
                    num(l.x_server_cpu),
                    num(l.animation_cpu),
                    num(l.bench_cpu),
                    num(l.others_cpu),
                    num(l.fps_median),
                    num(l.fps_min),
                    num(l.fps_max),
                    num(l.fps_all),
                    num(l.mbit_per_s),
                    l.listed
                )
            })
            .collect();
        runs.push(format!(
            "{{\"width\":{},\"height\":{},\"source_fps\":{},\"levels\":[{}],\"sharer_cpu_ratio_last_to_1\":{},\"codecs\":\"{}\"}}",
            SHARED_SIZE.0,
            SHARED_SIZE.1,
            a.fps,
            levels.join(","),
            num(a.ratio()),
            a.codecs
        ));
    }
    if !runs.is_empty() {
        parts.push(format!("\"attendees\":[{}]", runs.join(",")));
    }
    if let Some(r) = &f.reverse {
        let stat = |v: &[f64]| format!("{{\"median\":{},\"p90\":{}}}", num(median(v)), num(percentile(v, 90.0)));
        parts.push(format!(
            "\"reverse_connect_ms\":{{\"n\":{},\"first_frame\":{},\"content\":{},\"accepted\":{},\"connected\":{},\"cli_exit\":{}}}",
            r.first_frame_ms.len(),
            stat(&r.first_frame_ms),
            stat(&r.content_ms),
            stat(&r.accepted_ms),
            stat(&r.connected_ms),
            stat(&r.cli_ms)
        ));
    }
    if let Some(l) = &f.latency {
        let v: Vec<String> = l
            .viewers
            .iter()
            .map(|v| {
                let s = &v.samples_ms;
                format!(
                    "{{\"viewer\":\"{}\",\"codec\":\"{}\",\"n\":{},\"median\":{},\"p95\":{},\"min\":{},\"max\":{}}}",
                    v.viewer,
                    v.codec.escape_default(),
                    s.len(),
                    num(median(s)),
                    num(percentile(s, 95.0)),
                    num(percentile(s, 0.0)),
                    num(percentile(s, 100.0))
                )
            })
            .collect();
        parts.push(format!("\"key_to_pixel_ms\":[{}]", v.join(",")));
    }
    println!("{{\"rdhost_bench_sharing\":{{{}}}}}", parts.join(","));
}
