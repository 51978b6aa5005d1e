//! The churn scenario: many small Services, then readiness flips of random pods, each timed
//! until the watches show it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::kubelet::{self, PodState};
use e2e::process::Resources;
use e2e::writes::{WriteCounter, Writes};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use tokio::task::JoinHandle;

use crate::audit::{self, Reactions};
use crate::plane::{Run, create_service, pod_ip, start_pods_in_batches};
use crate::published::{Flip, Goal, Published, wait_for, watch, watch_published};
use crate::report::seconds;
use crate::scale_up::check_final;
use crate::write_requests::WriteRequests;
use crate::{Options, QUIET, Side};

pub struct Churn {
    pub side: Side,
    pub load: String,
    pub setup: Duration,
    pub flips: usize,
    pub failed_flips: usize,
    pub delays: Delays,
    /// From the audit log: the controller's reaction to each flip.
    pub reactions: Reactions,
    /// Flips the pod's, the slices' and the Endpoints' watches had not shown at the end.
    pub unshown: (usize, usize, usize),
    pub writes: Writes,
    pub requests: WriteRequests,
    pub correct: String,
    pub resources: Resources,
}

/// Delays of the flips the watches showed in full, each sorted.
pub struct Delays {
    /// From sending the status write to the pod's own watch event: the apiserver's write and
    /// watch delivery, before any controller acts.
    pub pod: Vec<Duration>,
    /// From sending the status write to the slice's, and the Endpoints', watch event.
    pub slice: Vec<Duration>,
    pub endpoints: Vec<Duration>,
    /// From the pod's watch event to the slice's: the controller's share, with its write.
    pub slice_after_pod: Vec<Duration>,
}

impl Delays {
    fn of(flips: &[Flip]) -> Self {
        let sorted = |f: &dyn Fn(&Flip) -> Option<Duration>| {
            let mut v: Vec<Duration> = flips.iter().filter_map(f).collect();
            v.sort();
            v
        };
        Self {
            pod: sorted(&|f| Some(f.pod?.saturating_duration_since(f.sent))),
            slice: sorted(&|f| Some(f.slice?.saturating_duration_since(f.sent))),
            endpoints: sorted(&|f| Some(f.endpoints?.saturating_duration_since(f.sent))),
            slice_after_pod: sorted(&|f| Some(f.slice?.saturating_duration_since(f.pod?))),
        }
    }
}

/// xorshift64*: the same flips on both sides, without a dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// The churn's objects published: `--services` Services of `--pods-per-service` ready pods,
/// and the watches that follow them.
pub struct SetUp {
    pub published: Arc<Mutex<Published>>,
    /// The slices', Endpoints' and pods' watches (abort them at the end).
    pub watches: Vec<JoinHandle<()>>,
    /// Pod name and app label, in the order of their IPs (`pod_ip`).
    pub pods: Vec<(String, String)>,
    /// From the first Service create until every pod is published ready.
    pub time: Duration,
}

/// Creates the Services and their ready pods in `namespace`, waits until the controllers have
/// published them all, then until their writes stop.
pub async fn set_up(
    run: &Run,
    scenario: &str,
    namespace: &str,
    options: &Options,
) -> Result<SetUp> {
    let client = &run.client;
    let total = options.services * options.pods_per_service;
    let published = Published::new(Goal {
        pods: total,
        endpoints: options.services,
        endpoints_ready: total,
        truncated: options.services * usize::from(options.pods_per_service > 1000),
    });
    let mut watches = Vec::from(watch_published(client, namespace, &published));
    watches.push(watch::<Pod>(
        Api::namespaced(client.clone(), namespace),
        published.clone(),
        Published::pod_seen,
    ));
    let setup_start = Instant::now();
    for s in 0..options.services {
        let name = format!("svc-{s:03}");
        create_service(client, namespace, &name, &name).await?;
    }
    let pods: Vec<(String, String)> = (0..options.services)
        .flat_map(|s| {
            (0..options.pods_per_service)
                .map(move |k| (format!("svc-{s:03}-{k}"), format!("svc-{s:03}")))
        })
        .collect();
    start_pods_in_batches(client, namespace, &pods, options.nodes, options.batch).await?;
    wait_for("the set-up to be published", options.limit(), || {
        published.lock().unwrap().missing()
    })
    .await?;
    let time = {
        let p = published.lock().unwrap();
        let done = p.slices_done.max(p.endpoints_done).unwrap_or(setup_start);
        done.saturating_duration_since(setup_start)
    };
    eprintln!(
        "{scenario}, {}: {} Services x {} pods published in {}",
        run.side,
        options.services,
        options.pods_per_service,
        seconds(time)
    );
    // Writes still trailing the set-up are not the scenario's.
    let quiet = WriteCounter::start(client, namespace).await?;
    quiet.settled(QUIET, options.limit()).await;
    drop(quiet);
    Ok(SetUp {
        published,
        watches,
        pods,
        time,
    })
}

pub async fn churn(side: Side, options: &Options) -> Result<Churn> {
    const NS: &str = "churn";
    let (run, load) = Run::for_scenario("churn", NS, side, options).await?;
    let client = &run.client;
    let total = options.services * options.pods_per_service;
    let SetUp {
        published,
        watches,
        pods,
        time: setup,
    } = set_up(&run, "churn", NS, options).await?;

    let counter = WriteCounter::start(client, NS).await?;
    let requests_before = WriteRequests::read(client).await?;
    let flips_started = Timestamp::now();
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut ready = vec![true; total];
    let mut random = Random(0x5eed_0fc0_ffee);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / options.flips_per_second));
    let end = Instant::now() + Duration::from_secs(options.churn_seconds);
    let mut writes = tokio::task::JoinSet::new();
    let mut flips = 0;
    while Instant::now() < end {
        every.tick().await;
        let pick = {
            let mut published = published.lock().unwrap();
            let pick = (0..100)
                .map(|_| random.below(total))
                .find(|&i| !published.flips.contains_key(&pods[i].0));
            if let Some(i) = pick {
                ready[i] = !ready[i];
                published
                    .flips
                    .insert(pods[i].0.clone(), Flip::new(ready[i]));
            }
            pick
        };
        let Some(i) = pick else { continue };
        flips += 1;
        let (api, name, state) = (
            api.clone(),
            pods[i].0.clone(),
            PodState::running(&pod_ip(i), ready[i]),
        );
        writes.spawn(async move {
            kubelet::set_pod_status(&api, &name, &state)
                .await
                .map(drop)
                .map_err(|e| (name, e))
        });
        while let Some(done) = writes.try_join_next() {
            note_failed_flip(done, &published);
        }
    }
    let mut failed_flips = 0;
    while let Some(done) = writes.join_next().await {
        failed_flips += usize::from(note_failed_flip(done, &published));
    }
    let _ = wait_for(
        "every flip to be published",
        Duration::from_secs(60),
        || {
            let p = published.lock().unwrap();
            (!p.flips.is_empty()).then(|| format!("{} flips not shown yet", p.flips.len()))
        },
    )
    .await;
    let writes_seen = counter.settled(QUIET, options.limit()).await;
    let requests = WriteRequests::read(client).await?.since(requests_before);
    let resources = run.resources()?;
    let reactions = audit::reactions(
        &run.audit_log(),
        NS,
        flips_started..,
        audit::strip_last_part,
        None,
    )?;
    // The final state: every pod as last flipped; check_final expects all ready, so flip the
    // not-ready ones back first and let that settle (uncounted).
    for (i, _) in ready.iter().enumerate().filter(|(_, r)| !**r) {
        kubelet::set_pod_status(&api, &pods[i].0, &PodState::running(&pod_ip(i), true)).await?;
    }
    wait_for("all pods ready again", options.limit(), || {
        published.lock().unwrap().missing()
    })
    .await?;
    let (correct, _) = check_final(client, NS, &pods).await?;
    for watch in watches {
        watch.abort();
    }
    let p = published.lock().unwrap();
    let unshown =
        |f: fn(&Flip) -> Option<Instant>| p.flips.values().filter(|x| f(x).is_none()).count();
    let unshown = (
        unshown(|f| f.pod),
        unshown(|f| f.slice),
        unshown(|f| f.endpoints),
    );
    Ok(Churn {
        side,
        load,
        setup,
        flips,
        failed_flips,
        delays: Delays::of(&p.shown),
        reactions,
        unshown,
        writes: writes_seen,
        requests,
        correct,
        resources,
    })
}

/// Forgets a flip whose write failed; true if it did.
fn note_failed_flip(
    done: Result<Result<(), (String, anyhow::Error)>, tokio::task::JoinError>,
    published: &Mutex<Published>,
) -> bool {
    match done {
        Ok(Ok(())) => false,
        Ok(Err((pod, error))) => {
            eprintln!("bench: flip of {pod} failed: {error:#}");
            published.lock().unwrap().flips.remove(&pod);
            true
        }
        Err(error) => {
            eprintln!("bench: a flip task failed: {error}");
            true
        }
    }
}
