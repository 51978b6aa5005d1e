//! Leader election on a real apiserver: not differential (kube-controller-manager runs with
//! `--leader-elect=false` here), but the Lease handling svcplane's controllers rely on.

use std::sync::Arc;

use anyhow::{Context, Result};
use controllers::runtime::ControllersConfig;
use e2e::controllers::InProcessControllers;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use plumbing::lease::{LeaderElectionConfig, LeaseElector};
use prometheus_client::registry::Registry;

use crate::harness::Planes;

const LEASE: &str = "differential-handover";

fn candidate(planes: &Planes, identity: &str) -> LeaseElector {
    LeaseElector::new(
        planes.svcplane.client.clone(),
        LeaderElectionConfig {
            lease_name: LEASE.into(),
            lease_namespace: "default".into(),
            identity: identity.into(),
            ..LeaderElectionConfig::default()
        },
    )
}

async fn holder(api: &Api<Lease>, name: &str) -> Result<(Option<String>, Option<i32>)> {
    let spec = api.get(name).await?.spec.unwrap_or_default();
    Ok((spec.holder_identity, spec.lease_transitions))
}

/// Two candidates race for a new Lease: one wins, the other waits while it is renewed, and
/// takes over as soon as the winner releases it. svcplane's own controllers hold theirs.
pub async fn lease_handover(planes: Arc<Planes>) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(planes.svcplane.client.clone(), "default");
    let (mut a, mut b) = (candidate(&planes, "a"), candidate(&planes, "b"));
    let (first_a, first_b) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let won = [&first_a, &first_b]
        .iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    anyhow::ensure!(
        won == 1,
        "exactly one candidate must win a new Lease: a {first_a:?}, b {first_b:?}"
    );
    let (mut winner, mut loser, winner_id, loser_id) = if matches!(first_a, Ok(true)) {
        (a, b, "a", "b")
    } else {
        (b, a, "b", "a")
    };

    anyhow::ensure!(winner.try_acquire_or_renew().await?, "the winner renews");
    anyhow::ensure!(
        !loser.try_acquire_or_renew().await?,
        "the loser must not take a freshly renewed Lease"
    );
    anyhow::ensure!(holder(&leases, LEASE).await? == (Some(winner_id.into()), Some(0)));

    winner.release().await?;
    anyhow::ensure!(holder(&leases, LEASE).await?.0.is_none(), "released");
    anyhow::ensure!(
        loser.try_acquire_or_renew().await?,
        "a released Lease is taken at once"
    );
    anyhow::ensure!(holder(&leases, LEASE).await? == (Some(loser_id.into()), Some(1)));
    anyhow::ensure!(
        !winner.try_acquire_or_renew().await?,
        "the former holder waits now"
    );

    let system: Api<Lease> = Api::namespaced(planes.svcplane.client.clone(), "kube-system");
    let (controllers, _) = holder(&system, "svcplane-controllers").await?;
    anyhow::ensure!(
        controllers.as_deref() == Some("differential-e2e"),
        "svcplane's controllers hold their Lease: {controllers:?}"
    );
    Ok(())
}

/// Readiness: the leading controllers are ready (the harness waited for their caches to
/// sync); a second instance standing by for the same Lease is ready too, and is not once
/// stopped.
pub async fn standby_readiness(planes: Arc<Planes>) -> Result<()> {
    anyhow::ensure!(
        planes.readiness.is_ready(),
        "the leading controllers are not ready"
    );
    let config = ControllersConfig {
        leader_election: LeaderElectionConfig {
            identity: "differential-standby".into(),
            ..LeaderElectionConfig::default()
        },
        ..ControllersConfig::default()
    };
    let standby = InProcessControllers::start(
        planes.svcplane.client.clone(),
        config,
        &mut Registry::default(),
    )
    .await
    .context("the standby")?;
    let readiness = standby.readiness.clone();
    let system: Api<Lease> = Api::namespaced(planes.svcplane.client.clone(), "kube-system");
    let (holder, _) = holder(&system, "svcplane-controllers").await?;
    anyhow::ensure!(
        holder.as_deref() == Some("differential-e2e"),
        "the standby took the Lease: {holder:?}"
    );
    standby.stop().await.context("the standby")?;
    anyhow::ensure!(!readiness.is_ready(), "the standby is ready after stopping");
    Ok(())
}
