//! Desktop sharing on the wire: our headless client as an attendee (assistance mode) against a
//! real Terminal on loopback. The ticket and invitation password reach the authenticator, the
//! attendee's control requests reach the input sink, participant and pause notices reach the
//! attendee, a pause stops the picture, and all of it works over a connection the sharer dialled
//! (reverse connect).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeDesktop, Proc, Served, TICKET, Transport, serve, serve_reverse, xvfb};
use rdhost_client::{Client, ClientConfig, ConnectError, ParticipantState, SessionError};
use rdhost_desktop::Size;
use rdhost_rdp::{ControlRequest, Participant, TerminalCommand, TerminalEnd, error_info};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);
const RED: [u8; 3] = [200, 0, 0];
const BLUE: [u8; 3] = [0, 0, 200];

async fn wait_for(client: &mut Client, what: &str, mut pred: impl FnMut(&Client) -> bool) {
    let seen = client.pump_until(WAIT, |c| pred(c)).await.unwrap();
    assert!(
        seen,
        "{what}: pixel {:?}, participant {:?}, paused {}, encomsp {:?}",
        client.pixel(10, 10),
        client.participant(),
        client.graphics_paused(),
        client.encomsp_counters()
    );
}

/// Pump until `desktop` has `count` control requests.
async fn control_requests(client: &mut Client, desktop: &FakeDesktop, count: usize) -> Vec<ControlRequest> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while desktop.control_requests.lock().unwrap().len() < count && tokio::time::Instant::now() < deadline {
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    desktop.control_requests.lock().unwrap().clone()
}

fn me(id: u32, interact: bool) -> Participant {
    Participant {
        participant_id: id,
        group_id: 1,
        may_view: true,
        may_interact: interact,
        is_participant: true,
        name: "Expert".into(),
    }
}

/// The frames the client gets for `d` (it pumps meanwhile).
async fn frames_during(client: &mut Client, d: Duration) -> u64 {
    let before = client.frames_received();
    client.pump_for(d).await.unwrap();
    client.frames_received() - before
}

#[tokio::test]
async fn an_attendee_asks_for_control_is_told_its_level_and_sees_pauses() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), false);
            desktop.fill(RED);
            let Served { addr, commands, connected, end } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut config = ClientConfig::attendee(addr, "Expert", TICKET, "pw");
            config.client_name = "expert-pc".into();
            let mut client = rdhost_client::connect(config).await.unwrap();
            let connected = connected.await.unwrap();

            // The admission material, untouched: ticket, invitation password, "*", the name.
            let seen = &connected.authenticated;
            assert_eq!((seen.user.as_str(), seen.client_name.as_str()), ("Expert", "expert-pc"));
            assert_eq!((seen.working_dir.as_str(), seen.alternate_shell.as_str()), (TICKET, "pw"));
            assert!(connected.encomsp_joined, "an attendee joins encomsp");
            wait_for(&mut client, "the desktop", |c| c.pixel(10, 10) == Some(RED)).await;
            assert_eq!(client.participant(), None, "nobody told it anything yet");

            // Ctrl+Alt+C in xfreerdp, then pressed again: interact, then view only.
            client.request_control(true).await.unwrap();
            client.request_control(false).await.unwrap();
            assert_eq!(
                control_requests(&mut client, &desktop, 2).await,
                vec![ControlRequest { view: true, interact: true }, ControlRequest { view: true, interact: false }]
            );
            assert_eq!(client.encomsp_counters().control_requests_sent, 2);

            // The owner grants view, then interaction; a notice about someone else changes
            // nothing about us.
            commands.send(TerminalCommand::Participant(me(7, false))).await.unwrap();
            let viewer = ParticipantState { participant_id: 7, may_view: true, may_interact: false };
            wait_for(&mut client, "view granted", |c| c.participant() == Some(viewer)).await;
            let other = Participant { is_participant: false, participant_id: 8, name: "Other".into(), ..me(8, true) };
            commands.send(TerminalCommand::Participant(other)).await.unwrap();
            commands.send(TerminalCommand::Participant(me(7, true))).await.unwrap();
            let driver = ParticipantState { participant_id: 7, may_view: true, may_interact: true };
            wait_for(&mut client, "interaction granted", |c| c.participant() == Some(driver)).await;
            assert_eq!(client.encomsp_counters().participant_created, 3);

            // The other attendee leaves: the client is told, and stays who it is.
            commands.send(TerminalCommand::ParticipantRemoved { participant_id: 8, disc_type: 2 }).await.unwrap();
            wait_for(&mut client, "the other attendee removed", |c| c.encomsp_counters().participant_removed == 1).await;
            assert_eq!(client.participant(), Some(driver));

            // Pause: the client is told, and gets no pictures, not even when it asks for a
            // refresh or when the terminal is given a new feed.
            commands.send(TerminalCommand::Pause(true)).await.unwrap();
            wait_for(&mut client, "paused", |c| c.graphics_paused()).await;
            desktop.fill(BLUE);
            assert_eq!(frames_during(&mut client, Duration::from_millis(400)).await, 0);
            client.request_refresh().await.unwrap();
            assert_eq!(frames_during(&mut client, Duration::from_millis(300)).await, 0, "a refresh does not end a pause");
            commands.send(TerminalCommand::Show(desktop.showing(1, connected.profile))).await.unwrap();
            assert_eq!(frames_during(&mut client, Duration::from_millis(300)).await, 0, "the pause outlasts a new feed");
            assert_eq!(client.pixel(10, 10), Some(RED));

            // Resume: the newest picture.
            commands.send(TerminalCommand::Pause(false)).await.unwrap();
            wait_for(&mut client, "resumed with the new picture", |c| !c.graphics_paused() && c.pixel(10, 10) == Some(BLUE)).await;
            desktop.fill(RED);
            wait_for(&mut client, "pictures flow again", |c| c.pixel(600, 400) == Some(RED)).await;
            let counters = client.encomsp_counters();
            assert_eq!((counters.graphics_paused, counters.graphics_resumed, counters.malformed), (1, 1, 0));

            client.disconnect().await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::ClientLeft);
        })
        .await;
}

/// xfreerdp /assistance without /u: sends no user name; the ticket still gets it in.
#[tokio::test]
async fn a_nameless_attendee_reaches_the_authenticator() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(320, 240), false);
            let Served { addr, connected, commands: _commands, end: _end } = serve(desktop, 1, Transport::Tcp).await;
            let client = rdhost_client::connect(ClientConfig::attendee(addr, "", TICKET, "pw")).await.unwrap();
            let seen = connected.await.unwrap().authenticated;
            assert_eq!((seen.user.as_str(), seen.working_dir.as_str()), ("", TICKET));
            client.disconnect().await.unwrap();
        })
        .await;
}

/// A wrong invitation password is an authentication failure whose code the viewer can show.
#[tokio::test]
async fn a_wrong_invitation_password_is_refused_with_a_code() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(320, 240), false);
            let Served { addr, connected, .. } = serve(desktop, 1, Transport::Tcp).await;
            let err = rdhost_client::connect(ClientConfig::attendee(addr, "Expert", TICKET, "nope")).await.err().expect("refused");
            assert!(matches!(err, ConnectError::AuthenticationFailed { .. }), "{err:?}");
            assert_eq!(err.error_info(), Some(error_info::SERVER_INSUFFICIENT_PRIVILEGES), "{err}");
            assert!(connected.await.is_err(), "no terminal for a refused attendee");
        })
        .await;
}

/// A client that is no attendee does not join encomsp: participant notices are dropped, a pause
/// still stops its picture, and it cannot ask for control.
#[tokio::test]
async fn without_encomsp_a_pause_still_stops_the_picture() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), false);
            desktop.fill(RED);
            let Served { addr, commands, connected, end } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            let mut client = rdhost_client::connect(ClientConfig::new(addr, "alice", "pw")).await.unwrap();
            assert!(!connected.await.unwrap().encomsp_joined);
            wait_for(&mut client, "the desktop", |c| c.pixel(10, 10) == Some(RED)).await;
            assert!(matches!(client.request_control(true).await, Err(SessionError::Unavailable(_))));

            commands.send(TerminalCommand::Participant(me(1, true))).await.unwrap();
            commands.send(TerminalCommand::Pause(true)).await.unwrap();
            // Nothing tells this client about the pause: give the terminal time to take it.
            client.pump_for(Duration::from_millis(300)).await.unwrap();
            desktop.fill(BLUE);
            assert_eq!(frames_during(&mut client, Duration::from_millis(400)).await, 0);
            assert_eq!((client.participant(), client.graphics_paused()), (None, false));
            commands.send(TerminalCommand::Pause(false)).await.unwrap();
            wait_for(&mut client, "resumed", |c| c.pixel(10, 10) == Some(BLUE)).await;
            assert_eq!(client.encomsp_counters(), Default::default());

            client.disconnect().await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::ClientLeft);
        })
        .await;
}

/// Reverse connect: the viewer listens, the sharer dials, and the viewer is the RDP client all
/// the same.
#[tokio::test]
async fn reverse_connect_runs_the_same_sequence_over_the_sharers_connection() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), false);
            desktop.fill(BLUE);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let viewer = listener.local_addr().unwrap();
            let Served { connected, commands, end, .. } = serve_reverse(Arc::clone(&desktop), 4, viewer);
            let (stream, _) = listener.accept().await.unwrap();
            // `addr` is not used: the sharer is whoever dialled.
            let config = ClientConfig::attendee("192.0.2.1:9".parse().unwrap(), "Expert", TICKET, "pw");
            let mut client = rdhost_client::connect_over(stream, config).await.unwrap();
            let connected = connected.await.unwrap();
            assert_eq!(connected.authenticated.working_dir, TICKET);
            assert!(connected.encomsp_joined);
            wait_for(&mut client, "the desktop", |c| c.pixel(10, 10) == Some(BLUE) && c.server_session_id() == Some(4)).await;

            client.request_control(true).await.unwrap();
            assert_eq!(control_requests(&mut client, &desktop, 1).await, vec![ControlRequest { view: true, interact: true }]);
            commands.send(TerminalCommand::Participant(me(2, true))).await.unwrap();
            wait_for(&mut client, "granted", |c| c.participant().is_some_and(|p| p.may_interact)).await;

            client.disconnect().await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::ClientLeft);
        })
        .await;
}

/// A refusal right after the connection sequence (`Terminal::refuse`, as a sharer refuses an
/// attendee over its limit) reaches the viewer with its code.
#[tokio::test]
async fn a_refusal_after_the_sequence_carries_its_code() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::task::spawn_local(async move {
                let (stream, peer) = listener.accept().await.unwrap();
                let auth = common::Password::default();
                let accepted = rdhost_rdp::accept(stream, peer, &common::accept_config(rdhost_rdp::Security::Tls), &auth).await.unwrap();
                accepted.terminal.refuse(error_info::SERVER_DENIED_CONNECTION).await;
            });
            let code = match rdhost_client::connect(ClientConfig::attendee(addr, "Expert", TICKET, "pw")).await {
                Err(e) => e.error_info(),
                Ok(mut client) => match client.pump_until(WAIT, |_| false).await {
                    Err(e) => e.closed_with(),
                    Ok(_) => None,
                },
            };
            assert_eq!(code, Some(error_info::SERVER_DENIED_CONNECTION));
        })
        .await;
}

/// Debian 12's xfreerdp as the attendee: it opens a bare WDS invitation saved as
/// `.msrcIncident`, sends the ticket and password as FreeRDP's assistance mode does, joins
/// encomsp, asks for control by itself (`/auto-request-control`) once told it may view, and stays
/// through participant and pause notices until told to leave.
#[tokio::test]
async fn xfreerdp_attends_asks_for_control_and_takes_our_notices() {
    let Some((_xvfb, display)) = xvfb() else { return };
    let home = tempfile::tempdir().unwrap();
    tokio::task::LocalSet::new()
        .run_until(async {
            let desktop = FakeDesktop::new(Size::new(640, 480), false);
            desktop.fill(RED);
            let Served { addr, commands, connected, end } = serve(Arc::clone(&desktop), 1, Transport::Tcp).await;
            // FreeRDP 2.11 needs `<L P=".." N=".."` exactly so, and skips addresses of 8
            // characters or fewer.
            let invitation = format!(
                r#"<E><A KH="BNRjdu97DyczQSRuMRrDWoue+HA=" ID="{TICKET}"/><C><T ID="1" SID="0"><L P="{}" N="127.0.0.1"/></T></C></E>"#,
                addr.port()
            );
            let file = home.path().join("inv.msrcIncident");
            std::fs::write(&file, invitation).unwrap();
            let log = home.path().join("xfreerdp.log");
            let mut xfreerdp = Proc(
                Command::new("xfreerdp")
                    // The invitation must be the first argument.
                    .arg(&file)
                    .args(["/assistance:pw", "/u:Expert", "/sec:tls", "/cert:ignore", "/auto-request-control", "/size:640x480"])
                    .env("DISPLAY", &display)
                    .env("HOME", home.path())
                    .env("XDG_CONFIG_HOME", home.path().join(".config"))
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&log).unwrap())
                    .stderr(std::fs::File::create(home.path().join("xfreerdp.err")).unwrap())
                    .spawn()
                    .unwrap(),
            );
            let client_log = || {
                let read = |name: &str| std::fs::read_to_string(home.path().join(name)).unwrap_or_default();
                format!("{}{}", read("xfreerdp.log"), read("xfreerdp.err"))
            };
            let accepted = tokio::time::timeout(Duration::from_secs(30), connected).await;
            let Ok(Ok(connected)) = accepted else { panic!("xfreerdp did not connect:\n{}", client_log()) };
            let seen = &connected.authenticated;
            assert_eq!(
                (seen.user.as_str(), seen.working_dir.as_str(), seen.alternate_shell.as_str()),
                ("Expert", TICKET, "pw"),
                "what xfreerdp /assistance sends"
            );
            assert!(connected.encomsp_joined, "xfreerdp joins encomsp:\n{}", client_log());

            // May view, may not interact: /auto-request-control asks for interaction.
            let viewer = Participant { may_interact: false, ..me(3, false) };
            commands.send(TerminalCommand::Participant(viewer)).await.unwrap();
            let deadline = Instant::now() + WAIT;
            while desktop.control_requests.lock().unwrap().is_empty() {
                assert!(Instant::now() < deadline, "xfreerdp asked for no control:\n{}", client_log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(desktop.control_requests.lock().unwrap()[0], ControlRequest { view: true, interact: true });

            let still_there = |xfreerdp: &mut Proc, step: &str| {
                if let Some(status) = xfreerdp.0.try_wait().unwrap() {
                    panic!("xfreerdp left after {step} ({status}):\n{}", client_log());
                }
            };
            for (step, command) in [
                ("interaction granted", TerminalCommand::Participant(me(3, true))),
                ("another attendee", TerminalCommand::Participant(Participant { is_participant: false, ..me(4, false) })),
                ("a pause", TerminalCommand::Pause(true)),
                ("the resume", TerminalCommand::Pause(false)),
            ] {
                commands.send(command).await.unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
                still_there(&mut xfreerdp, step);
            }

            commands.send(TerminalCommand::Disconnect { error_info: error_info::LOGOFF_BY_USER }).await.unwrap();
            assert_eq!(end.await.unwrap(), TerminalEnd::Disconnected { error_info: error_info::LOGOFF_BY_USER });
            let deadline = Instant::now() + WAIT;
            let status = loop {
                if let Some(status) = xfreerdp.0.try_wait().unwrap() {
                    break status;
                }
                assert!(Instant::now() < deadline, "xfreerdp did not exit after the disconnect");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(status.code(), Some(12), "{}", client_log());
            let log = client_log().to_lowercase();
            let complaints: Vec<&str> =
                log.lines().filter(|l| l.contains("encomsp") && (l.contains("error") || l.contains("warn"))).collect();
            assert!(complaints.is_empty(), "xfreerdp complained about encomsp:\n{log}");
        })
        .await;
}
