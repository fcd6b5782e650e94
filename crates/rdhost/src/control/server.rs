//! The host side of the control socket: HTTP/1.1 on a Unix socket, the caller known by
//! `SO_PEERCRED`. The answers come from a [`ControlApi`] (the wiring); this file only carries
//! requests in and replies out.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::protocol::{ApiError, EVENTS_PATH, EventRecord, Reply, Request, rfc3339};

/// Who is calling, as the kernel says (never as the caller says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// What the control socket serves. Implemented by the daemon wiring.
pub trait ControlApi: Send + Sync + 'static {
    fn call(self: Arc<Self>, peer: Peer, request: Request) -> impl Future<Output = Result<Reply, ApiError>> + Send;
    /// A new subscription to session events (bounded: a slow reader is told how many it missed).
    fn events(&self, peer: Peer) -> broadcast::Receiver<EventRecord>;
}

/// Request bodies larger than this are refused: nothing the API takes is anywhere near it.
const MAX_BODY: usize = 64 * 1024;

/// Create the socket: its directory 0755, the socket 0666 (anyone may connect; every operation
/// is checked). A stale socket left by a dead host is replaced; a live one is an error.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Only a directory we created ourselves is ours to open up.
        if dir.metadata().map(|m| m.permissions().mode() & 0o777 != 0o755).unwrap_or(false) && dir.ends_with("rdhost") {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("another host is already serving the control socket {} (stop it, or pass --control-socket PATH)", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove the stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open up the control socket {}", path.display()))?;
    Ok(listener)
}

/// Removes the socket file when the host stops.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Serve connections until the listener fails.
pub async fn serve<A: ControlApi>(listener: UnixListener, api: Arc<A>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("control socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() },
            Err(e) => {
                warn!("control socket: no peer credentials: {e}");
                continue;
            }
        };
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&api), peer, req));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(?peer, "control connection ended: {e}");
            }
        });
    }
}

type Body_ = UnsyncBoxBody<Bytes, Infallible>;

async fn handle<A: ControlApi>(api: Arc<A>, peer: Peer, req: hyper::Request<Incoming>) -> Result<Response<Body_>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    if method == "GET" && req.uri().path() == EVENTS_PATH {
        return Ok(event_stream(api.events(peer)));
    }
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(e) => return Ok(error_response(&e)),
    };
    let request = match Request::from_http(&method, &path, &body) {
        Ok(request) => request,
        Err(e) => return Ok(error_response(&e)),
    };
    debug!(?peer, request = ?request.for_log(), "control request");
    Ok(match api.call(peer, request).await {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(e) => {
            debug!(?peer, "control request refused: {e}");
            error_response(&e)
        }
    })
}

async fn read_body(body: Incoming) -> Result<Vec<u8>, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) => Err(ApiError::invalid(format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"))),
    }
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body_> {
    let mut text = serde_json::to_string_pretty(value).expect("replies serialise");
    text.push('\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)).boxed_unsync())
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response<Body_> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &serde_json::json!({ "error": e }))
}

/// Newline-delimited JSON, one event per line, for as long as the client reads.
fn event_stream(events: broadcast::Receiver<EventRecord>) -> Response<Body_> {
    let lines = futures_util::stream::unfold(events, |mut events| async move {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => EventRecord {
                event: "lagged".into(),
                missed: Some(missed),
                time: rfc3339(std::time::SystemTime::now()),
                ..EventRecord::default()
            },
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let mut line = serde_json::to_string(&event).expect("events serialise");
        line.push('\n');
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), events))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-ndjson")
        .body(BodyExt::boxed_unsync(http_body_util::StreamBody::new(lines)))
        .expect("a valid response")
}
