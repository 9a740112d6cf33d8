//! SIGTERM reaches the shutdown future. In its own test binary: the signal goes to the
//! whole process.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

#[tokio::test]
async fn sigterm_resolves_the_shutdown_signal() {
    let mut signal = Box::pin(gatekit_bin::shutdown_signal());
    // The first poll installs the SIGTERM and SIGINT handlers (before that, SIGTERM
    // would end the test process).
    std::future::poll_fn(|cx| {
        assert!(signal.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), signal)
        .await
        .expect("SIGTERM did not resolve the shutdown signal");
}
