//! The control API on the host: who the caller is (from the kernel), the model's decision, and
//! carrying it out. Every rule is the model's; this file only asks and acts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdhost_desktop::{MessageAnswer, MessageBox};
use rdhost_model::{Caller, ControlLevel, Effect, PasswordProof, SessionId, Target, WtsError};
use tokio::sync::broadcast;
use tracing::{info, warn};

use super::host::Host;
use crate::control::protocol::{
    ApiError, EventRecord, MessageAnswerInfo, MessageButtons, Reply, Request, SessionInfo, SessionRef, ViewerInfo, rfc3339,
};
use crate::control::server::{ControlApi, Peer};

/// How long the target's user has to allow a shadow before it counts as refused.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `--wait` waits for a switch, a disconnect or a logoff to complete.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

fn api_error(e: WtsError) -> ApiError {
    ApiError::new(e.code(), e.name(), e.to_string())
}

fn target(r: SessionRef) -> Target {
    match r {
        SessionRef::Current => Target::Current,
        SessionRef::Id(id) => Target::Id(id),
    }
}

impl ControlApi for Host {
    async fn call(self: Arc<Self>, peer: Peer, request: Request) -> Result<Reply, ApiError> {
        let caller = self.caller(peer);
        info!(uid = peer.uid, user = caller.user, session = ?caller.session, request = ?request.for_log(), "control request");
        let done = Ok(Reply::Done { ok: true });
        let now = SystemTime::now;
        match request {
            Request::Query { filter } => Ok(Reply::Sessions(self.query(&caller, filter.as_deref())?)),
            Request::Connect { session, dest, password, wait } => {
                let logon_id = target(session);
                let needed = self.lock().table.password_needed(&caller, logon_id).map_err(api_error)?;
                let proof = match (needed, password) {
                    (None, _) => PasswordProof::NotGiven,
                    (Some(_), None) => PasswordProof::NotGiven,
                    (Some(user), Some(password)) => match self.check_password(&user, None, &password).await {
                        Ok(_) => PasswordProof::Verified,
                        Err(e) => {
                            warn!(user, "connect: password refused: {e}");
                            PasswordProof::Wrong
                        }
                    },
                };
                let effects = self.with_state(|s| s.table.connect(&caller, logon_id, target(dest), proof, now())).map_err(api_error)?;
                let shown = shown_sessions(&effects);
                self.apply(effects);
                if wait {
                    self.wait_until(|host| shown.iter().all(|(t, s)| host.lock().table.shows(*t).map(|(x, _)| x) == Some(*s))).await;
                    for (_, session) in shown {
                        let _ = tokio::time::timeout(WAIT_LIMIT, self.desktop_of(session)).await;
                    }
                }
                done
            }
            Request::Disconnect { session, wait } => {
                let effects = self.with_state(|s| s.table.disconnect_by(&caller, target(session), now())).map_err(api_error)?;
                let closed = closed_terminals(&effects);
                self.apply(effects);
                if wait {
                    self.wait_until(|host| closed.iter().all(|t| !host.lock().terminals.contains_key(t))).await;
                }
                done
            }
            Request::Logoff { session, wait } => self.end_session(&caller, target(session), wait, false).await,
            Request::Reset { session } => self.end_session(&caller, target(session), true, true).await,
            Request::Message { target: spec, title, text, buttons, time_secs, wait } => {
                let sessions = self.lock().table.message_targets(&caller, &spec).map_err(api_error)?;
                let title = if title.is_empty() { format!("Message from {}", caller.user) } else { title };
                let answers = self.send_messages(&sessions, &title, &text, buttons, time_secs, wait).await?;
                Ok(Reply::Answers { answers })
            }
            Request::Shadow { target: id, control } => {
                let plan = self.lock().table.shadow_plan(&caller, Target::Id(id), control, self.shadow_policy).map_err(api_error)?;
                let consent = if plan.ask_consent {
                    let what = if plan.level == ControlLevel::Interactive { "view and control" } else { "view" };
                    let text = format!("{} (session {}) wants to {what} your session. Do you allow it?", caller.user, plan.shadower);
                    let answers = self
                        .send_messages(&[plan.target], "Remote control request", &text, MessageButtons::Yesno, CONSENT_TIMEOUT.as_secs(), true)
                        .await?;
                    answers.first().is_some_and(|a| a.answer == MessageAnswer::Yes.id())
                } else {
                    true
                };
                let effects = self.with_state(|s| s.table.start_shadow(&plan, consent, now())).map_err(api_error)?;
                self.apply(effects);
                done
            }
            Request::ShadowStop => {
                let effects = self.with_state(|s| s.table.stop_shadow(&caller, now())).map_err(api_error)?;
                self.apply(effects);
                done
            }
            share => self.share_call(&caller, share).await,
        }
    }

    fn events(&self, _peer: Peer) -> broadcast::Receiver<EventRecord> {
        // Everyone holds QUERY on every session, so everyone sees every session's events.
        self.events.subscribe()
    }
}

/// (terminal, session) pairs a list of effects moves terminals to.
fn shown_sessions(effects: &[Effect]) -> Vec<(rdhost_model::TerminalId, SessionId)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Show { terminal, session, .. } => Some((*terminal, *session)),
            _ => None,
        })
        .collect()
}

fn closed_terminals(effects: &[Effect]) -> Vec<rdhost_model::TerminalId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Close { terminal, .. } => Some(*terminal),
            _ => None,
        })
        .collect()
}

impl Host {
    /// The caller as the model needs it: system user and groups from the uid, and its own
    /// session from its processes (a session's cgroup, else its process ancestry).
    fn caller(&self, peer: Peer) -> Caller {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid)).ok().flatten();
        let groups = user
            .as_ref()
            .and_then(|u| {
                let name = std::ffi::CString::new(u.name.as_bytes()).ok()?;
                nix::unistd::getgrouplist(&name, u.gid).ok()
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(|gid| nix::unistd::Group::from_gid(gid).ok().flatten().map(|g| g.name))
            .collect();
        let session = peer.pid.and_then(|pid| self.session_of_process(pid));
        Caller { uid: peer.uid, user: user.map_or_else(|| peer.uid.to_string(), |u| u.name), groups, session }
    }

    fn session_of_process(&self, pid: i32) -> Option<SessionId> {
        let marks: Vec<(SessionId, rdhost_desktop::SessionMarks)> = {
            let state = self.lock();
            state
                .desktops
                .iter()
                .filter_map(|(id, slot)| slot.ready.borrow().as_ref().map(|live| (*id, live.desktop.session_marks())))
                .collect()
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cgroup = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("").trim().to_owned();
        if cgroup.len() > 1 {
            for (id, m) in &marks {
                if m.cgroup.as_deref().is_some_and(|dir| dir.to_string_lossy().ends_with(&cgroup)) {
                    return Some(*id);
                }
            }
        }
        // Ancestry: the session's leader (its shell or session program) started the caller.
        let mut current = pid;
        for _ in 0..64 {
            if let Some((id, _)) = marks.iter().find(|(_, m)| m.leader == Some(current as u32)) {
                return Some(*id);
            }
            current = parent_of(current)?;
            if current <= 1 {
                return None;
            }
        }
        None
    }

    fn query(&self, caller: &Caller, filter: Option<&str>) -> Result<Vec<SessionInfo>, ApiError> {
        let state = self.lock();
        let sessions: Vec<_> = match filter {
            None => state.table.visible(caller).collect(),
            Some(f) => match f.parse::<SessionRef>() {
                Ok(r) => vec![state.table.query(caller, target(r)).map_err(api_error)?],
                Err(_) => {
                    let mine: Vec<_> = state.table.visible(caller).filter(|s| s.user == f).collect();
                    if mine.is_empty() {
                        return Err(api_error(WtsError::NoSessionForUser(f.to_owned())));
                    }
                    mine
                }
            },
        };
        let time = |t: Option<SystemTime>| t.map(rfc3339);
        Ok(sessions
            .into_iter()
            .map(|s| {
                let primary = s.primary.and_then(|t| state.terminals.get(&t));
                let client = primary.map(|t| &t.client);
                let stats = primary.map(|t| &t.stats);
                let load = |f: fn(&rdhost_rdp::TerminalStats) -> &std::sync::atomic::AtomicU64| {
                    stats.map_or(0, |s| f(s).load(std::sync::atomic::Ordering::Relaxed))
                };
                let last_input = load(|s| &s.last_input);
                SessionInfo {
                    id: s.id,
                    user: s.user.clone(),
                    state: s.state.wts_name().into(),
                    session_name: s.primary.map_or_else(String::new, |t| format!("rdp-tcp#{}", t.0)),
                    current: caller.session == Some(s.id),
                    client_name: client.map_or_else(String::new, |c| c.client_name.clone()),
                    client_address: client.map_or_else(String::new, |c| c.peer.ip().to_string()),
                    client_build: client.map_or(0, |c| c.client_build),
                    client_width: client.map_or(0, |c| c.size.width),
                    client_height: client.map_or(0, |c| c.size.height),
                    logon_time: rfc3339(s.logon_time),
                    connect_time: time(s.connect_time),
                    disconnect_time: time(s.disconnect_time),
                    last_input_time: (last_input > 0).then(|| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(last_input))),
                    bytes_in: load(|s| &s.bytes_in),
                    bytes_out: load(|s| &s.bytes_out),
                    frames_in: load(|s| &s.frames_in),
                    frames_out: load(|s| &s.frames_out),
                    desktop: self.desktop_kind().into(),
                    shadowing: s.shadowing,
                    viewers: s
                        .viewers
                        .iter()
                        .map(|v| {
                            let client = state.terminals.get(&v.terminal).map(|t| &t.client);
                            ViewerInfo {
                                session: state.table.session_of(v.terminal),
                                control_level: v.level.name().into(),
                                client_name: client.map_or_else(String::new, |c| c.client_name.clone()),
                                client_address: client.map_or_else(String::new, |c| c.peer.ip().to_string()),
                            }
                        })
                        .collect(),
                }
            })
            .collect())
    }

    /// Logoff and reset: the model decides, the desktop ends, `wait` waits for the session to go.
    async fn end_session(self: &Arc<Self>, caller: &Caller, which: Target, wait: bool, reset: bool) -> Result<Reply, ApiError> {
        let now = SystemTime::now();
        let (id, effects) = self
            .with_state(|s| {
                let id = s.table.resolve(caller, which)?;
                let effects = if reset { s.table.reset_by(caller, which, now) } else { s.table.logoff_by(caller, which, now) }?;
                Ok((id, effects))
            })
            .map_err(api_error)?;
        self.apply(effects);
        if wait {
            self.wait_until(|host| host.lock().table.get(id).is_none()).await;
        }
        Ok(Reply::Done { ok: true })
    }

    /// Show a message box in each session; with `wait`, the answers (IDTIMEOUT after
    /// `time_secs`), else IDASYNC at once.
    async fn send_messages(
        self: &Arc<Self>,
        sessions: &[SessionId],
        title: &str,
        text: &str,
        buttons: MessageButtons,
        time_secs: u64,
        wait: bool,
    ) -> Result<Vec<MessageAnswerInfo>, ApiError> {
        let buttons = match buttons {
            MessageButtons::Ok => rdhost_desktop::Buttons::Ok,
            MessageButtons::Okcancel => rdhost_desktop::Buttons::OkCancel,
            MessageButtons::Yesno => rdhost_desktop::Buttons::YesNo,
        };
        let mut pending = Vec::new();
        for &session in sessions {
            let Some(live) = self.lock().desktops.get(&session).and_then(|d| d.ready.borrow().clone()) else { continue };
            let msg = MessageBox { title: title.to_owned(), text: text.to_owned(), buttons };
            let (id, answer) = live
                .board
                .show(msg)
                .map_err(|e| ApiError::new(7024, "ERROR_CTX_WINSTATION_BUSY", format!("session {session}: {e}")))?;
            if time_secs > 0 {
                let board = Arc::clone(&live.board);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(time_secs)).await;
                    board.expire(id);
                });
            }
            pending.push((session, answer));
        }
        let mut answers = Vec::new();
        for (session, answer) in pending {
            let answer = if wait { answer.await.unwrap_or(MessageAnswer::Timeout) } else { MessageAnswer::Async };
            answers.push(MessageAnswerInfo { session, answer: answer.id(), name: answer.name().into() });
        }
        Ok(answers)
    }

    /// Poll a condition on the state until it holds or the wait limit passes.
    async fn wait_until(self: &Arc<Self>, done: impl Fn(&Host) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        while !done(self) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
