//! svcplane's controllers run in this process against a control plane.

use anyhow::{Context, Result};
use controllers::runtime::{ControllersConfig, Readiness};
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::wait;

/// svcplane's controllers (`controllers::runtime::run`) on a task of their own.
pub struct InProcessControllers {
    /// Their readiness, as `/readyz` answers it.
    pub readiness: Readiness,
    stop: oneshot::Sender<()>,
    task: JoinHandle<controllers::runtime::Result<()>>,
}

impl InProcessControllers {
    /// Starts them with `config`, their metrics in `registry`, and waits until they are ready
    /// (leading on synced caches, or standing by for the Lease).
    pub async fn start(
        client: Client,
        config: ControllersConfig,
        registry: &mut Registry,
    ) -> Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let run = controllers::runtime::run(client, config, registry, async {
            let _ = stopped.await;
        });
        let mut readiness = run.readiness();
        let task = tokio::spawn(run);
        let ready = tokio::time::timeout(wait::wait_limit(), readiness.ready()).await;
        anyhow::ensure!(
            matches!(ready, Ok(true)),
            "svcplane's controllers are not ready: {ready:?}"
        );
        Ok(Self {
            readiness,
            stop,
            task,
        })
    }

    /// Asks them to stop; fails unless they end cleanly.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("svcplane's controllers panicked")?
            .context("svcplane's controllers failed")
    }

    /// Whether they still run (they only stop on error, or when asked).
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Waits until they end by themselves, and returns how.
    pub async fn ended(self) -> Result<controllers::runtime::Result<()>> {
        self.task.await.context("svcplane's controllers panicked")
    }
}
