//! `--snapshot FILE.png`: connect, wait for the first picture, keep receiving for a while, write
//! the picture, leave. No window, even when a display exists.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tracing::info;

use super::RequestedLevel;
use super::explain;
use super::link;
use super::plan::{Endpoint, Plan};

/// How long to wait for the first picture: a sharer that keeps us at control level none sends
/// nothing, and we must not wait for ever.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Options {
    pub path: PathBuf,
    /// How long to keep receiving after the first picture.
    pub after: Duration,
}

pub async fn run(plan: &Plan, endpoint: Endpoint, options: Options) -> anyhow::Result<ExitCode> {
    let mut connected = link::establish(plan, endpoint).await?;
    let at = connected.peer.to_string();
    let peer = link::peer_of(plan, &at);
    let sharer = plan.target.is_sharer();
    let client = &mut connected.client;
    let ended = |e: rdhost_client::SessionError| anyhow!(explain::session_ended(peer, &e));
    if let Some(level) = plan.request {
        link::request_control(client, level).await.map_err(ended)?;
    }
    let pictured = client.pump_until(FIRST_FRAME_TIMEOUT, |c| c.frames_received() > 0).await.map_err(ended)?;
    if !pictured {
        let secs = FIRST_FRAME_TIMEOUT.as_secs();
        if !sharer {
            bail!("{at} sent no picture within {secs} s — its log may say why");
        }
        if client.graphics_paused() {
            bail!("the sharer has paused the picture and did not resume it within {secs} s — ask the sharer to resume");
        }
        let asked = match plan.request {
            Some(RequestedLevel::View) => " (your request for view access is waiting for the sharer)",
            Some(RequestedLevel::Interactive) => " (your request for interactive control is waiting for the sharer)",
            None => "",
        };
        bail!(
            "the sharer has not granted you view access within {secs} s{asked}: ask the sharer to raise your control \
             level (`rdhost share level ID view`){}",
            if plan.request.is_none() { ", or ask for it with --request-control view" } else { "" }
        );
    }
    info!(after = ?options.after, "first picture received");
    client.pump_for(options.after).await.map_err(ended)?;
    client.save_png(&options.path).with_context(|| format!("writing the picture to {}", options.path.display()))?;
    info!(path = %options.path.display(), width = client.width(), height = client.height(), "snapshot written");
    // Leave politely, without hanging on a peer that does not answer.
    let _ = tokio::time::timeout(Duration::from_secs(3), connected.client.disconnect()).await;
    Ok(ExitCode::SUCCESS)
}
