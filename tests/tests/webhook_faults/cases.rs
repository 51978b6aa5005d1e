//! The cases. Each prints what it saw (burst summary, errors by kind, which replica
//! answered how often) on stderr; `--nocapture` is not needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use allocator::Value;
use anyhow::Result;
use e2e::load::{self, Burst, BurstReport};
use e2e::wait;
use k8s_openapi::api::core::v1::Service;

use crate::checks;
use crate::setup::{POOL_LIFETIME, RELEASER, Setup, UNCONFIRMED_TIMEOUT, entry_life};

const SERVICES: usize = 1000;
const CLIENTS: usize = 50;
/// A repair interval short enough for a test to watch leaks being freed (after three
/// sweeps: 10 to 15 s), long enough for the leaks of a burst to outlive it and be seen.
const SHORT_REPAIR: Duration = Duration::from_secs(5);
const DEFAULT_REPAIR: Duration = Duration::from_secs(180);
/// Calls the apiserver made to the webhook and then admitted without it
/// (`failurePolicy: Ignore`): the apiserver allocated those Services' values itself.
const FAIL_OPEN: &str =
    "apiserver_admission_webhook_fail_open_count{name=\"allocate.services.svcplane.io\"";

/// A ClusterIP, a NodePort, a NodePort with TCP and UDP on one port, a dual-stack ClusterIP.
fn mixed(name: &str, i: usize) -> Service {
    match i % 4 {
        0 => load::cluster_ip_service(name),
        1 => load::node_port_service(name, false),
        2 => load::node_port_service(name, true),
        _ => load::dual_stack_service(name),
    }
}

fn burst(namespace: &str, prefix: &str, count: usize, retry: bool) -> Burst {
    Burst {
        namespace: namespace.to_string(),
        count,
        prefix: prefix.to_string(),
        shape: mixed,
        // A client that keeps trying, the way controllers and `kubectl apply` loops do.
        retry_for: retry.then(|| wait::wait_limit() * 3),
        rate: None,
    }
}

/// Starts a burst in the background; returns its handle and its finished-Services count.
fn spawn_burst(
    clients: Vec<kube::Client>,
    burst: Burst,
) -> (tokio::task::JoinHandle<BurstReport>, Arc<AtomicUsize>) {
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&done);
    let handle = tokio::spawn(async move { load::run(&clients, &burst, progress).await });
    (handle, done)
}

async fn until_done(done: &AtomicUsize, count: usize) -> Result<()> {
    wait::until(
        format!("{count} Services of the burst finished"),
        || async {
            let now = done.load(Ordering::Relaxed);
            Ok(if now >= count { Ok(()) } else { Err(now) })
        },
    )
    .await
}

/// Fails when a value is held by two Services; returns how many distinct values are held.
async fn assert_no_duplicates(setup: &Setup) -> Result<usize> {
    let holders = checks::holders(&setup.client).await?;
    let duplicates = checks::duplicates(&holders);
    anyhow::ensure!(
        duplicates.is_empty(),
        "{} values held by more than one Service: {duplicates:?}",
        duplicates.len()
    );
    Ok(holders.len())
}

/// Waits until the stored state holds exactly what the Services hold, plus values in the
/// pools of live replicas.
async fn until_state_matches_services(setup: &Setup) -> Result<()> {
    wait::until(
        "svcplane's stored state equal to the values the Services hold",
        || async {
            let drift = checks::drift(&setup.client, entry_life()).await?;
            Ok(if drift.is_empty() { Ok(()) } else { Err(drift) })
        },
    )
    .await
}

fn say(case: &str, what: impl std::fmt::Display) {
    eprintln!("[{case}] {what}");
}

/// Two replicas behind the proxy, 1,000 Services from 50 concurrent clients: each create
/// succeeds at once, no value is held twice, both replicas answered, no call failed open,
/// and the stored state is exactly what the Services hold.
pub async fn two_replicas_never_hand_out_a_value_twice(_: std::sync::Arc<()>) -> Result<()> {
    const CASE: &str = "two-replicas";
    let setup = Setup::start(DEFAULT_REPAIR).await?;
    let namespace = setup.namespace("burst").await?;
    let clients = setup.clients(CLIENTS).await?;
    let report = load::run(
        &clients,
        &burst(&namespace, "svc", SERVICES, false),
        Arc::default(),
    )
    .await;
    say(CASE, report.summary());
    let answered = setup.answered().await?;
    say(
        CASE,
        format!(
            "mutating reviews answered per replica: {answered:?}; proxied connections: {:?}",
            setup.proxy.connections()
        ),
    );
    let fail_open = setup.apiserver_metric(FAIL_OPEN).await?;
    say(
        CASE,
        format!("apiserver calls that failed open: {fail_open}"),
    );

    anyhow::ensure!(
        report.error_count() == 0 && report.created == SERVICES,
        "every create should succeed at once: {}",
        report.summary()
    );
    let values = assert_no_duplicates(&setup).await?;
    say(CASE, format!("{values} distinct values held, none twice"));
    anyhow::ensure!(
        answered.iter().all(|&n| n > 0.0),
        "a replica answered nothing: {answered:?}"
    );
    anyhow::ensure!(
        fail_open == 0.0,
        "{fail_open} admissions went through without the webhook"
    );
    until_state_matches_services(&setup).await
}

/// One replica killed in the middle of a burst and restarted: every Service is created in
/// the end (clients retry), no value is held twice, and what the killed replica had
/// reserved for answers it never sent is freed by repair.
pub async fn a_replica_killed_mid_burst_leaks_only_what_repair_frees(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "replica-killed";
    let mut setup = Setup::start(SHORT_REPAIR).await?;
    let namespace = setup.namespace("burst").await?;
    let clients = setup.clients(CLIENTS).await?;
    let (running, done) = spawn_burst(clients, burst(&namespace, "svc", SERVICES, true));

    until_done(&done, SERVICES / 4).await?;
    setup.kill_replica(1);
    let killed_at = tokio::time::Instant::now();
    say(
        CASE,
        format!(
            "replica 1 killed after {} Services",
            done.load(Ordering::Relaxed)
        ),
    );
    until_done(&done, SERVICES / 2).await?;
    let addr = setup.restart_replica(1).await?;
    say(
        CASE,
        format!(
            "replica 1 restarted on {addr} after {} Services",
            done.load(Ordering::Relaxed)
        ),
    );
    let report = running.await?;
    say(CASE, report.summary());
    anyhow::ensure!(
        !report.errors.contains_key(load::NO_ANSWER),
        "creates hung instead of failing: {}",
        report.summary()
    );
    say(
        CASE,
        format!(
            "mutating reviews answered per replica (1 counts since its restart): {:?}; proxied connections: {:?}",
            setup.answered().await?,
            setup.proxy.connections()
        ),
    );
    say(
        CASE,
        format!(
            "apiserver calls that failed open: {}",
            setup.apiserver_metric(FAIL_OPEN).await?
        ),
    );
    anyhow::ensure!(
        report.given_up.is_empty() && report.created == SERVICES,
        "every Service should be created in the end: {}",
        report.summary()
    );
    let values = assert_no_duplicates(&setup).await?;
    say(CASE, format!("{values} distinct values held, none twice"));
    say(
        CASE,
        format!(
            "right after the burst: {}",
            checks::drift(&setup.client, entry_life()).await?
        ),
    );
    // Until then the killed replica's pool entry is live and its values are not leaks.
    tokio::time::sleep_until(killed_at + entry_life()).await;
    say(
        CASE,
        format!(
            "once the killed replica's pool entry is dead: {}",
            checks::drift(&setup.client, entry_life()).await?
        ),
    );
    until_state_matches_services(&setup).await?;
    say(
        CASE,
        "repair freed every leak and the dead replica's pool; state equals the Services plus live pools",
    );
    Ok(())
}

/// The apiserver killed and started again in the middle of a burst: clients see errors
/// they can act on (printed by kind), no value is held twice, and afterwards the webhook
/// serves again and its state catches up with the Services.
pub async fn an_apiserver_restart_mid_burst_gives_clean_errors_then_recovers(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "apiserver-restart";
    let setup = Setup::start(SHORT_REPAIR).await?;
    let namespace = setup.namespace("burst").await?;
    let clients = setup.clients(CLIENTS).await?;
    let (running, done) = spawn_burst(clients, burst(&namespace, "svc", SERVICES, true));

    until_done(&done, SERVICES * 3 / 10).await?;
    setup.plane.stop_apiserver();
    say(
        CASE,
        format!(
            "apiserver stopped after {} Services",
            done.load(Ordering::Relaxed)
        ),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    setup.plane.start_apiserver().await?;
    say(
        CASE,
        format!(
            "apiserver ready again after {} Services",
            done.load(Ordering::Relaxed)
        ),
    );
    let report = running.await?;
    say(CASE, report.summary());
    anyhow::ensure!(
        !report.errors.contains_key(load::NO_ANSWER),
        "creates hung instead of failing: {}",
        report.summary()
    );
    anyhow::ensure!(
        report.given_up.is_empty() && report.created == SERVICES,
        "every Service should be created in the end: {}",
        report.summary()
    );
    let values = assert_no_duplicates(&setup).await?;
    say(CASE, format!("{values} distinct values held, none twice"));
    say(
        CASE,
        format!(
            "right after the burst: {}",
            checks::drift(&setup.client, entry_life()).await?
        ),
    );

    // Recovery: the replicas are ready, a new burst goes through them, and the state
    // catches up with the Services.
    anyhow::ensure!(
        setup.replicas_ready(),
        "a replica is not ready after the apiserver came back"
    );
    let before: f64 = setup.answered().await?.iter().sum();
    let after_restart = load::run(
        &setup.clients(CLIENTS).await?,
        &burst(&namespace, "after", CLIENTS * 2, true),
        Arc::default(),
    )
    .await;
    // A port the apiserver's own allocator reserved for a create it crashed in the middle
    // of stays reserved there until its repair (minutes), while svcplane, with the short
    // repair interval of this test, may have freed it already: such a port handed out
    // again is refused by the apiserver ("provided port is already allocated"), and the
    // client's retry gets another one.
    say(CASE, format!("after recovery: {}", after_restart.summary()));
    let served = setup.answered().await?.iter().sum::<f64>() - before;
    anyhow::ensure!(
        after_restart.given_up.is_empty() && after_restart.created == CLIENTS * 2,
        "creates failed after recovery: {}",
        after_restart.summary()
    );
    anyhow::ensure!(
        served >= (CLIENTS * 2) as f64,
        "only {served} of {} creates after recovery reached the webhook",
        CLIENTS * 2
    );
    assert_no_duplicates(&setup).await?;
    until_state_matches_services(&setup).await?;
    say(CASE, "state equals the Services");
    Ok(())
}

/// A NodePort Service requesting one port, created through the replica that does not
/// release, then deleted: the releasing replica frees the port, and the next create
/// requesting it, answered by the first replica again, gets it at once (its copy of the
/// state is read again before a refusal, once it saw the other replica's write), three
/// times over.
pub async fn a_value_released_by_one_replica_is_given_by_the_other(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "released-elsewhere";
    // In the static band, which pools never take from.
    const PORT: i32 = 30040;
    let setup = Setup::start(DEFAULT_REPAIR).await?;
    let other = 1 - RELEASER;
    setup.only_through(other).await;
    let namespace = setup.namespace("released").await?;
    let services: kube::Api<Service> = kube::Api::namespaced(setup.client.clone(), &namespace);
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "fixed-port" },
        "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": PORT }] },
    }))?;
    let port = Value::NodePort(PORT as u16);
    for round in 1..=3 {
        let answered_before = setup.answered().await?;
        services
            .create(&kube::api::PostParams::default(), &service)
            .await
            .map_err(|error| anyhow::anyhow!("round {round}: create refused: {error}"))?;
        let answered_after = setup.answered().await?;
        anyhow::ensure!(
            answered_after[other] > answered_before[other]
                && answered_after[RELEASER] == answered_before[RELEASER],
            "round {round}: the create should have been answered by replica {other} only: \
             {answered_before:?} -> {answered_after:?}"
        );
        services
            .delete("fixed-port", &kube::api::DeleteParams::default())
            .await?;
        wait::until("the releasing replica freeing the port", || async {
            let (stored, _) = checks::stored(&setup.client, entry_life()).await?;
            Ok(if stored.contains(&port) {
                Err(format!("{port} still stored as allocated"))
            } else {
                Ok(())
            })
        })
        .await?;
        say(
            CASE,
            format!("round {round}: created through replica {other}, deleted, freed"),
        );
    }
    Ok(())
}

/// Replica 1 answers creates that kube-apiserver then refuses (the name is taken), so the
/// values it gave are unconfirmed, and is killed: within about a pool lifetime (half of one
/// plus the unconfirmed-allocation timeout after its last renewal) the releasing replica
/// frees its pool and those values (its entry listed them) and drops its entry. Repair
/// runs every 180 s and frees a leak only on its third sweep, so it has no part in this.
pub async fn a_dead_replicas_pool_and_unconfirmed_values_are_freed_within_a_lifetime(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "dead-replica";
    const REFUSED: usize = 5;
    let mut setup = Setup::start(DEFAULT_REPAIR).await?;
    let other = 1 - RELEASER;
    setup.only_through(other).await;
    let namespace = setup.namespace("dead").await?;
    let services: kube::Api<Service> = kube::Api::namespaced(setup.client.clone(), &namespace);
    let post = kube::api::PostParams::default();
    for i in 0..REFUSED {
        let service = mixed(&format!("taken-{i}"), i);
        services.create(&post, &service).await?;
        let again = services.create(&post, &service).await;
        anyhow::ensure!(
            matches!(&again, Err(kube::Error::Api(status)) if status.code == 409),
            "the second create of taken-{i} should be refused as AlreadyExists: {again:?}"
        );
    }
    let (stored, pooled) = checks::stored(&setup.client, entry_life()).await?;
    say(
        CASE,
        format!(
            "{REFUSED} creates refused after replica {other} answered them; {} values stored, {} in live pools",
            stored.len(),
            pooled.len()
        ),
    );
    // Its entry lists the unconfirmed values from its next renewal on (every quarter of a
    // lifetime).
    tokio::time::sleep(POOL_LIFETIME / 2).await;
    setup.kill_replica(other);
    let killed_at = tokio::time::Instant::now();
    let entries = |client: kube::Client| async move {
        let api: kube::Api<webhook::state::RangeAllocation> = kube::Api::all(client);
        let objects = api.list(&Default::default()).await?;
        anyhow::Ok(
            objects
                .items
                .iter()
                .map(|object| object.spec.reservations.len())
                .max()
                .unwrap_or(0),
        )
    };
    wait::until(
        "the dead replica's entries reclaimed and nothing leaked",
        || async {
            let drift = checks::drift(&setup.client, entry_life()).await?;
            let entries = entries(setup.client.clone()).await?;
            Ok(if drift.is_empty() && entries <= 1 {
                Ok(())
            } else {
                Err(format!("{drift}; at most {entries} entries in a range"))
            })
        },
    )
    .await?;
    say(
        CASE,
        format!(
            "replica {other} killed; its entries reclaimed and nothing leaked {:.1} s later (pool lifetime {:?}, unconfirmed timeout {:?}, repair every {:?})",
            killed_at.elapsed().as_secs_f64(),
            POOL_LIFETIME,
            UNCONFIRMED_TIMEOUT,
            DEFAULT_REPAIR
        ),
    );
    Ok(())
}

/// A replica restarted in its pod (the same pod name, as after a container restart) frees
/// what its earlier life listed one unconfirmed-allocation timeout after it starts. The pool
/// lifetime and the repair interval are ten minutes here, so neither the releasing replica
/// nor repair can be what frees it within the wait.
pub async fn a_replica_restarted_in_its_pod_frees_its_earlier_lifes_pool(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "restart-in-pod";
    const LONG: Duration = Duration::from_secs(600);
    const UNCONFIRMED: Duration = Duration::from_secs(3);
    let mut setup = Setup::start_tuned(LONG, |config| {
        config.pool.lifetime = LONG;
        config.unconfirmed.timeout = UNCONFIRMED;
    })
    .await?;
    let other = 1 - RELEASER;
    setup.only_through(other).await;
    let namespace = setup.namespace("restart").await?;
    let services: kube::Api<Service> = kube::Api::namespaced(setup.client.clone(), &namespace);
    for i in 0..8 {
        services
            .create(&Default::default(), &mixed(&format!("svc-{i}"), i))
            .await?;
    }
    let prefix = format!("replica-{other}-");
    let earlier = wait::until(format!("replica {other}'s pools stored"), || async {
        let entries = checks::entries(&setup.client).await?;
        let own: std::collections::BTreeMap<String, std::collections::BTreeSet<Value>> = entries
            .into_iter()
            .filter(|(holder, _)| holder.starts_with(&prefix))
            .collect();
        Ok(
            if own.values().map(|values| values.len()).sum::<usize>() > 0 {
                Ok(own)
            } else {
                Err(format!("no entry named {prefix}* lists a value"))
            },
        )
    })
    .await?;
    let listed: std::collections::BTreeSet<Value> = earlier.values().flatten().copied().collect();
    setup.kill_replica(other);
    setup.restart_replica(other).await?;
    let restarted = tokio::time::Instant::now();
    wait::until(
        "the earlier life's entry dropped and what it listed freed",
        || async {
            let entries = checks::entries(&setup.client).await?;
            let left: Vec<&String> = entries.keys().filter(|h| earlier.contains_key(*h)).collect();
            let relisted: std::collections::BTreeSet<Value> =
                entries.values().flatten().copied().collect();
            let held = checks::holders(&setup.client).await?;
            let (stored, _) = checks::stored(&setup.client, LONG).await?;
            let unfreed: Vec<&Value> = listed
                .iter()
                .filter(|v| stored.contains(v) && !held.contains_key(v) && !relisted.contains(v))
                .collect();
            Ok(if left.is_empty() && unfreed.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "entries of the earlier life left: {left:?}; listed by it, held by no Service and still stored: {unfreed:?}"
                ))
            })
        },
    )
    .await?;
    say(
        CASE,
        format!(
            "replica {other} restarted in its pod; the {} values its earlier life listed were freed or kept by a Service {:.1} s later (unconfirmed timeout {UNCONFIRMED:?}, pool lifetime and repair interval {LONG:?})",
            listed.len(),
            restarted.elapsed().as_secs_f64(),
        ),
    );
    // Its liveness is checked every second: the reclaim, done once, must not count as a
    // watch that ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = setup.liveness_failures(other);
    anyhow::ensure!(
        failures.is_empty(),
        "the restarted replica reports itself not live: {failures:?}"
    );
    Ok(())
}

/// A create asking for a node port (and a cluster IP) that sit in the other replica's pool
/// gets them, as kube-apiserver alone would give them: the replica it reaches marks them
/// wanted, the other gives them up.
pub async fn a_requested_value_of_the_other_replicas_pool_is_given(
    _: std::sync::Arc<()>,
) -> Result<()> {
    const CASE: &str = "wanted";
    let setup = Setup::start(DEFAULT_REPAIR).await?;
    let (pooling, asking) = (1 - RELEASER, RELEASER);
    setup.only_through(pooling).await;
    let namespace = setup.namespace("wanted").await?;
    let services: kube::Api<Service> = kube::Api::namespaced(setup.client.clone(), &namespace);
    // Through the pooling replica first, so that it pools node ports and cluster IPs.
    services
        .create(&Default::default(), &mixed("first", 1))
        .await?;
    let prefix = format!("replica-{pooling}-");
    let pooled = wait::until(format!("replica {pooling}'s pools stored"), || async {
        let entries = checks::entries(&setup.client).await?;
        // An entry may still list what its replica handed out since it last wrote it
        // ("first"'s values): those are taken, not pooled.
        let held = checks::holders(&setup.client).await?;
        let values: std::collections::BTreeSet<Value> = entries
            .into_iter()
            .filter(|(holder, _)| holder.starts_with(&prefix))
            .flat_map(|(_, values)| values)
            .filter(|value| !held.contains_key(value))
            .collect();
        let port = values
            .iter()
            .find(|v| matches!(v, Value::NodePort(_)))
            .copied();
        let ip = values
            .iter()
            .find(|v| matches!(v, Value::ClusterIp(ip) if ip.is_ipv4()))
            .copied();
        Ok(match (port, ip) {
            (Some(port), Some(ip)) => Ok((port, ip)),
            _ => Err(format!(
                "no node port and IPv4 address pooled by {prefix}*: {values:?}"
            )),
        })
    })
    .await?;
    let (Value::NodePort(port), Value::ClusterIp(ip)) = pooled else {
        unreachable!("matched above")
    };
    setup.only_through(asking).await;
    let mut wanted = load::node_port_service("wanted", false);
    let spec = wanted.spec.as_mut().expect("a spec");
    spec.cluster_ip = Some(ip.to_string());
    spec.ports.as_mut().expect("ports")[0].node_port = Some(i32::from(port));
    let asked = tokio::time::Instant::now();
    let created = services.create(&Default::default(), &wanted).await;
    let created = created.map_err(|error| {
        anyhow::anyhow!("a create asking for {ip} and node port {port}, pooled by replica {pooling}, was refused: {error}")
    })?;
    let spec = created.spec.expect("a spec");
    anyhow::ensure!(
        spec.cluster_ip.as_deref() == Some(ip.to_string().as_str())
            && spec.ports.as_ref().and_then(|ports| ports[0].node_port) == Some(i32::from(port)),
        "created with other values: {:?} {:?}",
        spec.cluster_ip,
        spec.ports
    );
    say(
        CASE,
        format!(
            "a create through replica {asking} asking for {ip} and node port {port} from replica {pooling}'s pool was admitted in {:.0} ms",
            asked.elapsed().as_secs_f64() * 1e3
        ),
    );
    until_state_matches_services(&setup).await?;
    let duplicates = assert_no_duplicates(&setup).await?;
    say(CASE, format!("{duplicates} values held, none twice"));
    Ok(())
}
