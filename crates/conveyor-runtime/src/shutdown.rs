//! One shutdown signal for a whole process.
//!
//! Every long-running task holds a clone of the [`Shutdown`] token and selects on
//! [`Shutdown::cancelled`]. SIGTERM (what Kubernetes and docker send) and SIGINT (Ctrl-C) trip it
//! once; tests trip it by hand with [`Shutdown::trigger`].

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown token.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A token nobody has tripped yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that SIGTERM or SIGINT trips. Must be called inside a tokio runtime.
    pub fn on_signals() -> Self {
        let shutdown = Shutdown::new();
        let trip = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutdown requested");
            trip.trigger();
        });
        shutdown
    }

    /// Trips the token.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the token was tripped.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the token is tripped.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Registering handlers only fails when the runtime lacks signal support; fall back
            // to Ctrl-C so the process can still be stopped.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_see_the_trigger() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        let waiter = tokio::spawn(async move { clone.cancelled().await });
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}
