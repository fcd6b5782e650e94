//! The RDP side of the viewer: getting a connected [`Client`] (dial, or accept for reverse
//! connect, then the connection sequence), and the loop that moves input in and pictures out
//! while a window shows them.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use rdhost_client::{Assistance, Button, Client, ClientConfig, Pointer, Pumped, Security, SessionError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::RequestedLevel;
use super::dial;
use super::explain::{self, Peer};
use super::plan::{Endpoint, Plan, Target, host_port};
use super::reverse::Refuser;

/// The whole connection sequence, TCP connect to first activation.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the loop waits for the server with nothing to show; input, a picture due, or a
/// change of pointer or state end the wait sooner.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// At most this often a new picture goes to the window (~60 per second).
const FRAME_INTERVAL: Duration = Duration::from_millis(16);

/// A connected client and where it is connected to.
pub struct Connected {
    pub client: Client,
    pub peer: SocketAddr,
    /// Reverse connect: keeps closing further incoming connections while this one runs.
    _refuser: Option<Refuser>,
}

/// Dials (every address at once) or accepts (reverse connect), then runs the connection
/// sequence. Errors say what failed and what to do.
pub async fn establish(plan: &Plan, endpoint: Endpoint) -> anyhow::Result<Connected> {
    let (stream, peer, refuser) = match endpoint {
        Endpoint::Dial(candidates) => {
            let stream = dial::first_of(&candidates, dial::PER_ADDRESS)
                .await
                .map_err(|failed| unreachable(plan, &candidates, &failed))?;
            let peer = stream.peer_addr().map_err(|e| anyhow!("the connection dropped at once: {e}"))?;
            (stream, peer, None)
        }
        Endpoint::Listen(listening) => {
            let (stream, peer, refuser) = listening.accept().await?;
            (stream, peer, Some(refuser))
        }
    };
    // Input events are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    info!(%peer, "connected; running the RDP connection sequence");
    let client = rdhost_client::connect_over(stream, client_config(plan, peer)).await.map_err(|e| {
        let at = peer.to_string();
        anyhow!(explain::connect_failed(peer_of(plan, &at), &e))
    })?;
    info!(width = client.width(), height = client.height(), "connected");
    Ok(Connected { client, peer, _refuser: refuser })
}

fn unreachable(plan: &Plan, candidates: &[(String, u16)], failed: &[dial::Failed]) -> anyhow::Error {
    match &plan.target {
        Target::Host { host, port, .. } => {
            let target = host_port(host, *port);
            let list = dial::list(failed);
            // A literal address: its one failure says it all.
            if failed.len() == 1 && failed[0].address == target {
                anyhow!("could not reach {list} — is the host running, and is the address and port right?")
            } else {
                anyhow!("could not reach {target}: {list} — is the host running, and is the address and port right?")
            }
        }
        Target::Sharer { .. } => anyhow!(
            "could not reach any address of the invitation: {} — is the sharer still sharing? If it cannot be \
             reached from here (NAT, firewall), use reverse connect: --listen ADDR:PORT",
            if failed.is_empty() {
                candidates.iter().map(|(n, p)| host_port(n, *p)).collect::<Vec<_>>().join(", ")
            } else {
                dial::list(failed)
            }
        ),
    }
}

/// How the wording names the other side.
pub fn peer_of<'a>(plan: &'a Plan, at: &'a str) -> Peer<'a> {
    match &plan.target {
        Target::Host { user, .. } => Peer::Host { user, at },
        Target::Sharer { .. } => Peer::Sharer { at },
    }
}

fn client_config(plan: &Plan, peer: SocketAddr) -> ClientConfig {
    // The protocol carries at most 15 characters of client name.
    let client_name: String = plan.name.chars().take(15).collect();
    let mut cfg = ClientConfig {
        addr: peer,
        width: plan.size.width,
        height: plan.size.height,
        connect_timeout: CONNECT_TIMEOUT,
        client_name,
        gfx: plan.gfx,
        ..ClientConfig::default()
    };
    match &plan.target {
        Target::Host { user, .. } => {
            cfg.username = user.clone();
            cfg.password = plan.password.clone();
            // Let the host choose: TLS with the password in Client Info, or NLA.
            cfg.security = Security::Negotiate;
        }
        Target::Sharer { invitation, .. } => {
            // Assistance mode (spec §3.6): the attendee's name as the user name, the ticket and
            // the invitation's password in the Client Info; NLA is never used.
            cfg.username = plan.name.clone();
            cfg.security = Security::Tls;
            cfg.assistance = Some(Assistance {
                ticket: invitation.ticket.clone().unwrap_or_default(),
                password: plan.password.clone(),
            });
        }
    }
    cfg
}

/// Asks the sharer for `level` (MS-RDPEMC Participant Control Change).
pub async fn request_control(client: &mut Client, level: RequestedLevel) -> Result<(), SessionError> {
    info!(?level, "requesting control");
    client.request_control(level == RequestedLevel::Interactive).await
}

/// Our control level as the sharer last told us (a host session is always fully ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    None,
    View,
    Interactive,
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Control::None => "none",
            Control::View => "view",
            Control::Interactive => "interactive",
        })
    }
}

pub fn control_of(client: &Client, sharer: bool) -> Control {
    if !sharer {
        return Control::Interactive;
    }
    match client.participant() {
        Some(p) if p.may_interact => Control::Interactive,
        Some(p) if p.may_view => Control::View,
        _ => Control::None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Reverse connect: listening, nobody has dialled in yet.
    Waiting(SocketAddr),
    Connecting,
    Connected,
    Paused,
    Disconnected(String),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Waiting(addr) => write!(f, "waiting for the sharer to connect to {addr}"),
            State::Connecting => f.write_str("connecting"),
            State::Connected => f.write_str("connected"),
            State::Paused => f.write_str("paused"),
            State::Disconnected(why) => write!(f, "disconnected: {why}"),
        }
    }
}

/// What the window title shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub target: String,
    pub state: State,
    pub control: Control,
}

impl Status {
    pub fn title(&self) -> String {
        format!("rdhost view — {} — {} — control: {}", self.target, self.state, self.control)
    }
}

/// Input from the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    Key {
        code: u8,
        extended: bool,
        pressed: bool,
    },
    /// A character without a scancode (sent as a Unicode key press and release).
    Text(char),
    Move {
        x: u16,
        y: u16,
    },
    Button {
        button: Button,
        pressed: bool,
    },
    /// 120 per notch; positive is up (or right when `horizontal`).
    Wheel {
        delta: i16,
        horizontal: bool,
    },
    /// Ctrl+Alt+C: ask for interactive control, or give it back (view) when we have it.
    ToggleControl,
    /// The window was closed.
    Close,
}

/// Where the loop sends what the window shows. Implemented by the window; called from the
/// runtime's threads.
pub trait Screen: Send + Sync {
    fn status(&self, status: &Status);
    /// A new picture: `client.rgba()` at `client.width()` x `client.height()`.
    fn frame(&self, client: &Client);
    fn pointer(&self, pointer: &Pointer);
}

/// How a windowed connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The user closed the window.
    Closed,
    /// Anything else; the text says why.
    Failed(String),
}

/// Connects and runs until the window closes or the connection ends.
pub async fn drive(
    plan: &Plan,
    endpoint: Endpoint,
    screen: &dyn Screen,
    inputs: &mut mpsc::Receiver<Input>,
) -> Outcome {
    let sharer = plan.target.is_sharer();
    let mut status = Status {
        target: plan.describe(),
        state: match &endpoint {
            Endpoint::Listen(l) => State::Waiting(l.local),
            Endpoint::Dial(_) => State::Connecting,
        },
        control: if sharer { Control::None } else { Control::Interactive },
    };
    screen.status(&status);
    // Closing the window while we dial or wait for the sharer ends it at once.
    let connected = tokio::select! {
        result = establish(plan, endpoint) => result,
        () = closed(inputs) => return Outcome::Closed,
    };
    let mut connected = match connected {
        Ok(c) => c,
        Err(e) => return fail(screen, &mut status, format!("{e:#}")),
    };
    if sharer {
        status.target = format!("sharer {}", connected.peer);
    }
    status.state = State::Connected;
    screen.status(&status);
    let at = connected.peer.to_string();
    let peer = peer_of(plan, &at);
    let client = &mut connected.client;
    if let Some(level) = plan.request
        && let Err(e) = request_control(client, level).await
    {
        return fail(screen, &mut status, explain::session_ended(peer, &e));
    }
    match run_loop(client, sharer, screen, &mut status, inputs).await {
        Ok(()) => {
            // The user closed the window: leave politely, but do not hang on a dead peer.
            let _ = tokio::time::timeout(Duration::from_secs(3), connected.client.disconnect()).await;
            Outcome::Closed
        }
        Err(e) => fail(screen, &mut status, explain::session_ended(peer, &e)),
    }
}

fn fail(screen: &dyn Screen, status: &mut Status, why: String) -> Outcome {
    status.state = State::Disconnected(why.clone());
    screen.status(status);
    Outcome::Failed(why)
}

/// Resolves when the window is closed (or gone); other input before the connection is dropped.
async fn closed(inputs: &mut mpsc::Receiver<Input>) {
    while let Some(input) = inputs.recv().await {
        if input == Input::Close {
            return;
        }
    }
}

/// Input in, pictures and state out, until the window closes (`Ok`) or the connection ends.
async fn run_loop(
    client: &mut Client,
    sharer: bool,
    screen: &dyn Screen,
    status: &mut Status,
    inputs: &mut mpsc::Receiver<Input>,
) -> Result<(), SessionError> {
    let mut shown_frames = 0u64;
    let mut next_frame = Instant::now();
    let mut pointer = Pointer::Default;
    loop {
        loop {
            match inputs.try_recv() {
                Ok(Input::Close) | Err(TryRecvError::Disconnected) => return Ok(()),
                Ok(input) => apply(client, sharer, input).await?,
                Err(TryRecvError::Empty) => break,
            }
        }
        let (state, control) = shown_state(client, sharer);
        if state != status.state || control != status.control {
            status.state = state;
            status.control = control;
            screen.status(status);
        }
        if *client.pointer() != pointer {
            pointer = client.pointer().clone();
            screen.pointer(&pointer);
        }
        let now = Instant::now();
        if client.frames_received() != shown_frames && now >= next_frame {
            screen.frame(client);
            shown_frames = client.frames_received();
            next_frame = now + FRAME_INTERVAL;
        }
        // Wait for the server until a picture is due, the pointer or the state changes, or input
        // comes (it cuts short only the wait, never a PDU being handled).
        let wait = if client.frames_received() != shown_frames { next_frame.saturating_duration_since(Instant::now()) } else { IDLE_WAIT };
        let shown = (status.state.clone(), status.control);
        let changed = |c: &Client| {
            (c.frames_received() != shown_frames && Instant::now() >= next_frame) || *c.pointer() != pointer || shown_state(c, sharer) != shown
        };
        match client.pump_until_or(wait, changed, inputs.recv()).await? {
            Pumped::Interrupted(None | Some(Input::Close)) => return Ok(()),
            Pumped::Interrupted(Some(input)) => apply(client, sharer, input).await?,
            Pumped::Met | Pumped::TimedOut => {}
        }
    }
}

/// What the window's title shows: paused or connected, and our control level.
fn shown_state(client: &Client, sharer: bool) -> (State, Control) {
    let state = if sharer && client.graphics_paused() { State::Paused } else { State::Connected };
    (state, control_of(client, sharer))
}

async fn apply(client: &mut Client, sharer: bool, input: Input) -> Result<(), SessionError> {
    match input {
        Input::Key { code, extended, pressed } => client.key(code, extended, pressed).await,
        Input::Text(ch) => client.unicode(ch).await,
        Input::Move { x, y } => client.mouse_move(x, y).await,
        Input::Button { button, pressed } => client.button(button, pressed).await,
        Input::Wheel { delta, horizontal } => client.wheel(delta, horizontal).await,
        Input::ToggleControl if sharer => {
            let level = match control_of(client, true) {
                Control::Interactive => RequestedLevel::View,
                Control::View | Control::None => RequestedLevel::Interactive,
            };
            request_control(client, level).await
        }
        Input::ToggleControl => {
            debug!("Ctrl+Alt+C: control requests only exist when viewing a sharer");
            Ok(())
        }
        Input::Close => Ok(()),
    }
}

/// Logs input the window could not queue because the connection is behind.
pub fn dropped_input(input: &Input) {
    warn!(?input, "the connection is behind: dropped an input event");
}
