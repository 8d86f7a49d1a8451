//! Process signals of the long-running commands: SIGINT and SIGTERM end a
//! run (`crisiswatch run`, `demo`), SIGHUP reloads the configuration as
//! `POST /api/v1/reload` does.

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A watch that turns true on SIGINT or SIGTERM (spawned on the current
/// runtime). A second signal during the graceful stop ends the process at
/// once (exit code 130): what was not delivered or committed yet stays
/// queued and is picked up by the next start.
pub fn shutdown_watch() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        let _ = tx.send(true);
        tracing::info!("Stopping gracefully; a second SIGINT or SIGTERM stops at once.");
        shutdown().await;
        tracing::warn!(
            "Second signal: stopping at once; undelivered notifications and uncommitted offsets are taken up by the next start."
        );
        std::process::exit(130);
    });
    rx
}

/// Turns SIGHUP into reload requests made by `request` (Unix).
pub(crate) fn spawn_sighup<T: Send + 'static>(
    tx: tokio::sync::mpsc::Sender<T>,
    request: fn() -> T,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("Cannot listen for SIGHUP; reload through the admin API only.");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: configuration reload requested.");
            if tx.send(request()).await.is_err() {
                break;
            }
        }
    });
    #[cfg(not(unix))]
    drop(tx);
}
