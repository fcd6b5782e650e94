//! The CLI side of the control socket: one HTTP/1.1 request per command.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::protocol::{ApiError, ENV_SOCKET, EVENTS_PATH, EventRecord, Reply, Request};

/// Where the host's control socket is when the host runs as root.
pub const SYSTEM_SOCKET: &str = "/run/rdhost/control.sock";

/// The socket `rdhost serve` creates by default: `/run/rdhost/control.sock` as root, else
/// `$XDG_RUNTIME_DIR/rdhost/control.sock` (`/tmp/rdhost-UID/control.sock` without one).
pub fn default_serve_socket(is_root: bool, xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    if is_root {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match xdg_runtime_dir.filter(|d| d.is_absolute()) {
        Some(dir) => dir.join("rdhost/control.sock"),
        None => PathBuf::from(format!("/tmp/rdhost-{uid}/control.sock")),
    }
}

/// The socket a command talks to without `--socket`: the host of the session it runs in
/// (`$RDHOST_CONTROL_SOCKET`), else a system host's socket when one exists, else this user's own.
pub fn default_client_socket() -> PathBuf {
    if let Some(path) = std::env::var_os(ENV_SOCKET).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let uid = nix::unistd::getuid().as_raw();
    if uid != 0 && Path::new(SYSTEM_SOCKET).exists() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    default_serve_socket(uid == 0, std::env::var_os("XDG_RUNTIME_DIR").as_deref().map(Path::new), uid)
}

/// Why a command got no answer from the host.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the rdhost control socket {path}: {source} (is `rdhost serve` running? pass --socket PATH)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("control socket {path}: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl CallError {
    /// The Windows error code when the host refused the request.
    pub fn code(&self) -> Option<u32> {
        match self {
            CallError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

type SendRequest = hyper::client::conn::http1::SendRequest<BoxBody<Bytes, std::convert::Infallible>>;

async fn connect(socket: &Path) -> Result<SendRequest, CallError> {
    let stream = UnixStream::connect(socket).await.map_err(|source| CallError::Connect { path: socket.to_owned(), source })?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError::Protocol { path: socket.to_owned(), detail: e.to_string() })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn http_request(method: &str, path: &str, body: Option<String>) -> hyper::Request<BoxBody<Bytes, std::convert::Infallible>> {
    let body = match body {
        Some(text) => Full::new(Bytes::from(text)).boxed(),
        None => Empty::new().boxed(),
    };
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .expect("a valid request")
}

/// Send one request and wait for the host's reply.
pub async fn call(socket: &Path, request: &Request) -> Result<Reply, CallError> {
    call_as(socket, request).await
}

/// [`call`], reading the reply as the type the request is known to answer with (the untagged
/// [`Reply`] cannot tell an empty list of one kind from another).
pub async fn call_as<T: serde::de::DeserializeOwned>(socket: &Path, request: &Request) -> Result<T, CallError> {
    let protocol = |detail: String| CallError::Protocol { path: socket.to_owned(), detail };
    let mut sender = connect(socket).await?;
    let (method, path, body) = request.to_http();
    let response = sender.send_request(http_request(method, &path, body)).await.map_err(|e| protocol(e.to_string()))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| protocol(e.to_string()))?.to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| protocol(format!("unreadable reply: {e}")));
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: ApiError,
    }
    match serde_json::from_slice::<Refusal>(&bytes) {
        Ok(refusal) => Err(CallError::Api(refusal.error)),
        Err(_) => Err(protocol(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()))),
    }
}

/// Follow the event stream, calling `each` for every event until the host closes it.
pub async fn follow_events(socket: &Path, mut each: impl FnMut(EventRecord)) -> Result<(), CallError> {
    let protocol = |detail: String| CallError::Protocol { path: socket.to_owned(), detail };
    let mut sender = connect(socket).await?;
    let response = sender.send_request(http_request("GET", EVENTS_PATH, None)).await.map_err(|e| protocol(e.to_string()))?;
    if !response.status().is_success() {
        return Err(protocol(format!("HTTP {}", response.status())));
    }
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| protocol(e.to_string()))?;
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<EventRecord>(&line) {
                Ok(event) => each(event),
                Err(e) => return Err(protocol(format!("unreadable event: {e}"))),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sockets() {
        assert_eq!(default_serve_socket(true, Some(Path::new("/run/user/0")), 0), PathBuf::from("/run/rdhost/control.sock"));
        assert_eq!(
            default_serve_socket(false, Some(Path::new("/run/user/1000")), 1000),
            PathBuf::from("/run/user/1000/rdhost/control.sock")
        );
        assert_eq!(default_serve_socket(false, None, 1000), PathBuf::from("/tmp/rdhost-1000/control.sock"));
        assert_eq!(default_serve_socket(false, Some(Path::new("relative")), 7), PathBuf::from("/tmp/rdhost-7/control.sock"));
    }
}
