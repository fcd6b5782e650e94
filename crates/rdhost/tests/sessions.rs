//! Sessions at the boundary: a real host on loopback, our headless client.

mod common;

use std::time::Duration;

use common::{Host, on_screen, shell_token};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_survives_disconnect_and_reconnect() {
    let host = Host::start(&[("alice", "alice-pw-1")], "");
    let mut client = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.expect("alice logs in");
    assert!(client.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "host announces the session id");
    let session = client.server_session_id().unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "a prompt appears");

    let (command, token) = shell_token();
    client.type_text(&command).await.unwrap();
    let shown = client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap();
    if !shown {
        client.save_png(&common::artifacts_dir().join("typed.png")).unwrap();
    }
    assert!(shown, "the shell's output {token} is on the client's screen");
    client.disconnect().await.unwrap();

    let mut again = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.expect("alice logs in again");
    again.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap();
    assert_eq!(again.server_session_id(), Some(session), "same session after reconnect");
    assert!(
        again.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap(),
        "the earlier output is still on screen"
    );
    again.disconnect().await.unwrap();
}
