//! The tables a run prints, and the goals.

use std::time::Duration;

use e2e::load::percentile;
use e2e::process::Resources;
use e2e::writes::Writes;

use crate::audit::Reactions;
use crate::churn::Churn;
use crate::load::{Load, Phase};
use crate::restart::{ClientUpdates, QueueTotals, Restart};
use crate::scale_up::ScaleUp;
use crate::write_requests::WriteRequests;
use crate::{Options, QUIET, Side};

pub fn print_scale_up(options: &Options, runs: &[ScaleUp]) {
    println!(
        "\nscale-up: 1 Service, 0 -> {} ready pods over {} Nodes, batches of {} (created, then marked ready)",
        options.pods, options.nodes, options.batch
    );
    println!(
        "times from the first pod create: all pod status written; slices hold every pod once, ready (and the lag after the last pod write); Endpoints hold {} ready addresses{}; last Endpoints/slice write seen",
        options.pods.min(1000),
        if options.pods > 1000 {
            " and over-capacity: truncated"
        } else {
            ""
        }
    );
    println!(
        "{:<16} {:>5} {:>8} {:>8} {:>7} {:>9} {:>8} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {:>6} correct",
        "side",
        "load",
        "pods",
        "slices",
        "lag",
        "Endpoints",
        "last",
        "writes",
        "Endpoints",
        "EndpointSlices",
        "requests (E/S)",
        "slices",
        "RSS",
        "peak",
        "CPU",
    );
    for r in runs {
        println!(
            "{:<16} {:>5} {:>8} {:>8} {:>7} {:>9} {:>8} {} {:>6} {} {}",
            r.side.to_string(),
            r.load.split(' ').next().unwrap_or(""),
            seconds(r.pods_written),
            seconds(r.slices_complete),
            seconds(r.slices_complete.saturating_sub(r.pods_written)),
            seconds(r.endpoints_complete),
            seconds(r.last_write),
            writes_columns(&r.writes, r.requests),
            r.slices,
            process_columns(&r.resources),
            r.correct
        );
    }
    print_reactions(runs.iter().map(|r| (r.side, &r.reactions)));
}

/// The reaction times read from the audit log, per side.
fn print_reactions<'a>(runs: impl Iterator<Item = (Side, &'a Reactions)>) {
    println!(
        "reaction (kube-apiserver's audit log): from the response to a pod status write to the apiserver receiving the controller's next write of the Service's slices / Endpoints; unanswered: pod writes no such write followed"
    );
    println!(
        "{:<16} {:>22} {:>22} {:>12}",
        "side", "slices p50/p99/max", "Endpoints p50/p99/max", "unanswered"
    );
    for (side, r) in runs {
        println!(
            "{:<16} {:>22} {:>22} {:>12}",
            side.to_string(),
            p50_p99_max(&r.slices),
            p50_p99_max(&r.endpoints),
            format!("{}/{}", r.unanswered_slices, r.unanswered_endpoints),
        );
    }
}

fn p50_p99(d: &[Duration]) -> String {
    format!(
        "{}/{}",
        millis(percentile(d, 50.0)),
        millis(percentile(d, 99.0))
    )
}

fn p50_p99_max(d: &[Duration]) -> String {
    format!(
        "{}/{}",
        p50_p99(d),
        millis(d.last().copied().unwrap_or_default())
    )
}

pub fn print_churn(options: &Options, runs: &[Churn]) {
    println!(
        "\nchurn: {} Services x {} pods, then {} readiness flips/s on random pods for {} s",
        options.services, options.pods_per_service, options.flips_per_second, options.churn_seconds
    );
    println!(
        "set-up: from the first Service create until every pod is published ready; delays of a flip from sending the pod status write to the watch event that shows it: of the pod itself (no controller involved), of its slice, of its Endpoints, and from the pod's event to the slice's; unshown: flips the pod/slices/Endpoints watches had not shown 60 s after the last; writes: during the flips only"
    );
    println!(
        "{:<16} {:>5} {:>7} {:>5} {:>11} {:>20} {:>20} {:>14} {:>7} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} correct",
        "side",
        "load",
        "set-up",
        "flips",
        "pod p50/p99",
        "slices p50/p99/max",
        "Endpoints p50/p99/max",
        "pod->slice p50/p99",
        "unshown",
        "writes",
        "Endpoints",
        "EndpointSlices",
        "requests (E/S)",
        "RSS",
        "peak",
        "CPU",
    );
    for r in runs {
        println!(
            "{:<16} {:>5} {:>7} {:>5} {:>11} {:>20} {:>20} {:>14} {:>7} {} {} {}",
            r.side.to_string(),
            r.load.split(' ').next().unwrap_or(""),
            seconds(r.setup),
            if r.failed_flips == 0 {
                r.flips.to_string()
            } else {
                format!("{}({}!)", r.flips, r.failed_flips)
            },
            p50_p99(&r.delays.pod),
            p50_p99_max(&r.delays.slice),
            p50_p99_max(&r.delays.endpoints),
            p50_p99(&r.delays.slice_after_pod),
            format!("{}/{}/{}", r.unshown.0, r.unshown.1, r.unshown.2),
            writes_columns(&r.writes, r.requests),
            process_columns(&r.resources),
            r.correct
        );
    }
    print_reactions(runs.iter().map(|r| (r.side, &r.reactions)));
}

pub fn print_load(options: &Options, runs: &[Load]) {
    println!(
        "\nload: {} pods in Deployments of 250/30/5 replicas (a quarter/a quarter/half of the pods), a Service for every other one, on {} KWOK Nodes in 3 zones; kube-scheduler, kube-controller-manager's Deployment, ReplicaSet and garbage collector controllers and KWOK beside the controllers measured",
        options.load_pods, options.load_nodes
    );
    println!(
        "per phase: converged: from the phase's first write to the first poll (every 500 ms) that saw every Deployment rolled out, its pods ready and each Service's slices and Endpoints listing exactly its ready pods; writes, reactions (to pod status writes and pod deletes) and CPU: from the phase's first write until {} s without an Endpoints or slice write; RSS, peak: at that end",
        QUIET.as_secs()
    );
    println!(
        "reactions split where a watcher of the pods in the bench process received the pod write's change: delivered: from the pod write's response to that arrival (the apiserver's watch delivery, the same for every side); from there: to the apiserver receiving the controller's write (what the controller adds)"
    );
    let phases = runs.first().map_or(0, |r| r.phases.len());
    for i in 0..phases {
        println!(
            "{:<16} {:<16} {:>5} {:>9} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {:>22} {:>22} {:>10}",
            "phase",
            "side",
            "load",
            "converged",
            "writes",
            "Endpoints",
            "EndpointSlices",
            "requests (E/S)",
            "RSS",
            "peak",
            "CPU",
            "slices p50/p99/max",
            "Endpoints p50/p99/max",
            "unanswered",
        );
        for r in runs {
            let phase = &r.phases[i];
            println!(
                "{:<16} {:<16} {:>5} {:>9} {} {} {:>22} {:>22} {:>10}",
                phase.name,
                r.side.to_string(),
                r.load.split(' ').next().unwrap_or(""),
                seconds(phase.converged),
                writes_columns(&phase.writes, phase.requests),
                process_columns(&phase.resources),
                p50_p99_max(&phase.reactions.slices),
                p50_p99_max(&phase.reactions.endpoints),
                format!(
                    "{}/{}",
                    phase.reactions.unanswered_slices, phase.reactions.unanswered_endpoints
                ),
            );
        }
        for r in runs {
            let reactions = &r.phases[i].reactions;
            println!(
                "{:<16} {:<16} delivered to a watcher p50/p99/max {} ({} not seen); from there to the controller's write: slices {}, Endpoints {}; Endpoints from the later of that and the answer to the Service's previous Endpoints write {} ({} of {} arrived while it was in flight)",
                "",
                r.side.to_string(),
                p50_p99_max(&reactions.delivery),
                reactions.undelivered,
                p50_p99_max(&reactions.slices_after_delivery),
                p50_p99_max(&reactions.endpoints_after_delivery),
                p50_p99_max(&reactions.endpoints_after_turn),
                reactions.arrived_during_write,
                reactions.endpoints_after_turn.len(),
            );
        }
        for r in runs {
            let phase = &r.phases[i];
            let [endpoints, slices] = phase.queues;
            println!(
                "{:<16} {:<16} work queues, mean wait / mean sync per key taken (keys): Endpoints {}, slices {}",
                "",
                r.side.to_string(),
                queue_means(endpoints),
                queue_means(slices),
            );
            println!(
                "{:<16} {:<16} updates (PUT) of Endpoints and slices, mean time in the apiserver / in the controller's client (updates): {} / {}",
                "",
                r.side.to_string(),
                mean_of(&phase.reactions.updates_in_apiserver),
                client_mean(phase.client_updates),
            );
            println!(
                "{:<16} {:<16} syncs outside their writes: {}",
                "",
                r.side.to_string(),
                outside_writes(phase),
            );
        }
    }
}

pub fn print_restart(options: &Options, runs: &[Restart]) {
    println!(
        "\nrestart: {} Services x {} ready pods published, then the controller process stopped (SIGTERM) and started again with the same flags, nothing changed",
        options.services, options.pods_per_service
    );
    println!(
        "set-up: as churn's; stop: from SIGTERM to the exit; verified: from the new start to the first /metrics read (every 100 ms) showing every Service verified: slice syncs >= Services and endpoint_slice_controller_endpoints_desired >= pods (both sides), and, where served (both sides since svcplane serves client-go's work-queue metrics), keys processed from the endpoint and endpoint_slice queues >= Services, both queues empty; writes: from the new start until {} s without one; RSS, peak, CPU: the new process's when verified",
        QUIET.as_secs()
    );
    println!(
        "{:<16} {:>5} {:>7} {:>6} {:>9} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {:>23} correct",
        "side",
        "load",
        "set-up",
        "stop",
        "verified",
        "writes",
        "Endpoints",
        "EndpointSlices",
        "requests (E/S)",
        "RSS",
        "peak",
        "CPU",
        "syncs/desired/queues",
    );
    for r in runs {
        let p = &r.progress;
        println!(
            "{:<16} {:>5} {:>7} {:>6} {:>9} {} {} {:>23} {}",
            r.side.to_string(),
            r.load.split(' ').next().unwrap_or(""),
            seconds(r.setup),
            seconds(r.stop),
            seconds(r.verified),
            writes_columns(&r.writes, r.requests),
            process_columns(&r.resources),
            format!(
                "{}/{}/{}",
                p.slice_syncs,
                p.endpoints_desired,
                p.queues.map_or("-".to_string(), |q| format!(
                    "{}+{}",
                    q.endpoints_processed, q.slices_processed
                ))
            ),
            r.correct
        );
    }
}

/// svcplane's figures against each in-tree side's: writes no more, times and RSS at most
/// half (load: peak RSS at most a third).
pub fn print_goals(
    scale_runs: &[ScaleUp],
    churn_runs: &[Churn],
    restart_runs: &[Restart],
    load_runs: &[Load],
) {
    let half = |ours: f64, theirs: f64| ratio(ours, theirs, 0.5);
    let writes = |ours: (&Writes, WriteRequests), theirs: (&Writes, WriteRequests)| {
        let (events, requests) = (
            (ours.0.total(), theirs.0.total()),
            (ours.1.total(), theirs.1.total()),
        );
        format!(
            "writes {} vs {} ({}); write requests {} vs {} ({})",
            events.0,
            events.1,
            verdict(events.0 <= events.1),
            requests.0,
            requests.1,
            verdict(requests.0 <= requests.1),
        )
    };
    let memory = |ours: &Resources, theirs: &Resources| {
        format!(
            "RSS {}; peak RSS {}",
            half(ours.rss_kib as f64, theirs.rss_kib as f64),
            half(ours.hwm_kib as f64, theirs.hwm_kib as f64),
        )
    };
    println!(
        "\ngoals (svcplane / in-tree; writes, as watch events and as write requests, at most 1x; times and RSS at most 0.5x; restart: zero writes when nothing changed, and verified in at most 0.5x in-tree's time; load, per phase: CPU and reaction p50/p99 at most 0.5x, write requests at most 1x, peak RSS at most 0.33x):"
    );
    let p = |d: &[Duration], q: f64| percentile(d, q).as_secs_f64();
    for (ours, theirs) in pairs(scale_runs, |r| r.side) {
        let after_pods = |r: &ScaleUp| {
            r.slices_complete
                .saturating_sub(r.pods_written)
                .as_secs_f64()
        };
        let (o, t) = (&ours.reactions, &theirs.reactions);
        println!(
            "  scale-up, {} vs {}: reaction (audit log) to slices p50 {}, p99 {}",
            ours.side,
            theirs.side,
            half(p(&o.slices, 50.0), p(&t.slices, 50.0)),
            half(p(&o.slices, 99.0), p(&t.slices, 99.0)),
        );
        println!(
            "  scale-up, {} vs {}: {}; slices complete {}; after the last pod write {}; Endpoints complete {}; {}",
            ours.side,
            theirs.side,
            writes(
                (&ours.writes, ours.requests),
                (&theirs.writes, theirs.requests)
            ),
            half(
                ours.slices_complete.as_secs_f64(),
                theirs.slices_complete.as_secs_f64()
            ),
            half(after_pods(ours), after_pods(theirs)),
            half(
                ours.endpoints_complete.as_secs_f64(),
                theirs.endpoints_complete.as_secs_f64()
            ),
            memory(&ours.resources, &theirs.resources),
        );
    }
    for (ours, theirs) in pairs(churn_runs, |r| r.side) {
        let (o, t) = (&ours.reactions, &theirs.reactions);
        println!(
            "  churn, {} vs {}: reaction (audit log) to slices p50 {}, p99 {}; to Endpoints p50 {}, p99 {}",
            ours.side,
            theirs.side,
            half(p(&o.slices, 50.0), p(&t.slices, 50.0)),
            half(p(&o.slices, 99.0), p(&t.slices, 99.0)),
            half(p(&o.endpoints, 50.0), p(&t.endpoints, 50.0)),
            half(p(&o.endpoints, 99.0), p(&t.endpoints, 99.0)),
        );
        let (o, t) = (&ours.delays, &theirs.delays);
        println!(
            "  churn, {} vs {}: {}; slice delay p50 {}; p99 {}; pod->slice p50 {}; p99 {}; set-up {}; {}",
            ours.side,
            theirs.side,
            writes(
                (&ours.writes, ours.requests),
                (&theirs.writes, theirs.requests)
            ),
            half(p(&o.slice, 50.0), p(&t.slice, 50.0)),
            half(p(&o.slice, 99.0), p(&t.slice, 99.0)),
            half(p(&o.slice_after_pod, 50.0), p(&t.slice_after_pod, 50.0)),
            half(p(&o.slice_after_pod, 99.0), p(&t.slice_after_pod, 99.0)),
            half(ours.setup.as_secs_f64(), theirs.setup.as_secs_f64()),
            memory(&ours.resources, &theirs.resources),
        );
    }
    for (ours, theirs) in pairs(restart_runs, |r| r.side) {
        println!(
            "  restart, {} vs {}: zero writes when nothing changed: write requests {} vs {} ({}), watch events {} vs {}; verified {}; peak RSS {}; CPU {:.1}s vs {:.1}s",
            ours.side,
            theirs.side,
            ours.requests.total(),
            theirs.requests.total(),
            verdict(ours.requests.total() == 0 && ours.writes.total() == 0),
            ours.writes.total(),
            theirs.writes.total(),
            half(ours.verified.as_secs_f64(), theirs.verified.as_secs_f64()),
            half(
                ours.resources.hwm_kib as f64,
                theirs.resources.hwm_kib as f64
            ),
            ours.resources.cpu_seconds,
            theirs.resources.cpu_seconds,
        );
    }
    for (ours, theirs) in pairs(load_runs, |r| r.side) {
        print_load_goals(ours, theirs);
    }
}

/// Each svcplane run with each in-tree run of the same scenario, in the order run.
fn pairs<R>(runs: &[R], side: impl Fn(&R) -> Side) -> impl Iterator<Item = (&R, &R)> {
    let (ours, theirs): (Vec<&R>, Vec<&R>) = runs.iter().partition(|r| side(r).is_svcplane());
    ours.into_iter()
        .flat_map(move |o| theirs.clone().into_iter().map(move |t| (o, t)))
}

/// Each load phase's goals, svcplane's run against an in-tree one.
fn print_load_goals(ours: &Load, theirs: &Load) {
    for (o, t) in ours.phases.iter().zip(&theirs.phases) {
        let (or, tr) = (&o.reactions, &t.reactions);
        let (oq, tq) = (o.requests.total(), t.requests.total());
        println!(
            "  load {}, {} vs {}: CPU {}; reaction to slices {}; to Endpoints {}; from the delivery, to slices {}; to Endpoints {}; to Endpoints from the Service's turn {}; sync time outside its writes {}; write requests {} vs {} ({}); peak RSS {}; converged in {} vs {}",
            o.name,
            ours.side,
            theirs.side,
            ratio(o.resources.cpu_seconds, t.resources.cpu_seconds, 0.5),
            half_p50_p99(&or.slices, &tr.slices),
            half_p50_p99(&or.endpoints, &tr.endpoints),
            half_p50_p99(&or.slices_after_delivery, &tr.slices_after_delivery),
            half_p50_p99(&or.endpoints_after_delivery, &tr.endpoints_after_delivery),
            half_p50_p99(&or.endpoints_after_turn, &tr.endpoints_after_turn),
            match (own_sync_time(o), own_sync_time(t)) {
                (Some(ours), Some(theirs)) => ratio(ours, theirs, 0.5),
                _ => "not served".to_string(),
            },
            oq,
            tq,
            verdict(oq <= tq),
            ratio(o.resources.hwm_kib as f64, t.resources.hwm_kib as f64, 0.33),
            seconds(o.converged),
            seconds(t.converged),
        );
    }
}

/// A queue's mean wait and mean sync per key taken, and the keys taken.
fn queue_means(totals: Option<QueueTotals>) -> String {
    match totals {
        Some(t) if t.taken > 0.0 => format!(
            "{:.1}ms / {:.1}ms ({})",
            t.waited / t.taken * 1e3,
            t.worked / t.taken * 1e3,
            t.taken
        ),
        Some(_) => "no key taken".to_string(),
        None => "not served".to_string(),
    }
}

/// A phase's keys taken from both work queues, the seconds their syncs took, and the seconds
/// of those the client spent on writes.
fn sync_totals(phase: &Phase) -> Option<(f64, f64, f64)> {
    let [Some(endpoints), Some(slices)] = phase.queues else {
        return None;
    };
    let taken = endpoints.taken + slices.taken;
    let worked = endpoints.worked + slices.worked;
    let written = phase.client_writes.map_or(0.0, |w| w.seconds);
    (taken > 0.0 && worked > 0.0).then_some((taken, worked, written))
}

/// The syncs' seconds outside the writes their client timed (both queues): what the
/// controller's own work added to its syncs over the phase, the rest being the apiserver's
/// answers and the way to and from it. In all, not per key: a side that takes a key more
/// often for the same changes (a sync finding its cache behind) is not credited for it.
fn own_sync_time(phase: &Phase) -> Option<f64> {
    let (_, worked, written) = sync_totals(phase)?;
    Some((worked - written).max(0.0))
}

/// [`own_sync_time`], in all and per key taken, and the writes' share of the syncs' time.
fn outside_writes(phase: &Phase) -> String {
    let (Some((taken, worked, written)), Some(own)) = (sync_totals(phase), own_sync_time(phase))
    else {
        return "no key taken, or the work queues not served".to_string();
    };
    format!(
        "{own:.2}s of {worked:.2}s over {taken} keys taken ({:.2}ms per key), writes {:.0}% of the syncs' time",
        own / taken * 1e3,
        written / worked * 1e2
    )
}

/// The mean of `times` in ms, and their count.
fn mean_of(times: &[Duration]) -> String {
    match times.len() {
        0 => "none".to_string(),
        n => format!(
            "{:.1}ms ({n})",
            times.iter().sum::<Duration>().as_secs_f64() / n as f64 * 1e3
        ),
    }
}

/// The mean time a controller's client took per update, and the updates.
fn client_mean(updates: Option<ClientUpdates>) -> String {
    match updates {
        Some(u) if u.count > 0.0 => format!("{:.1}ms ({})", u.seconds / u.count * 1e3, u.count),
        Some(_) => "none".to_string(),
        None => "not served".to_string(),
    }
}

/// `p50 <ratio>, p99 <ratio>` of two sides' sorted times, each against the goal of 0.5x.
fn half_p50_p99(ours: &[Duration], theirs: &[Duration]) -> String {
    let p = |d: &[Duration], q: f64| percentile(d, q).as_secs_f64();
    format!(
        "p50 {}, p99 {}",
        ratio(p(ours, 50.0), p(theirs, 50.0), 0.5),
        ratio(p(ours, 99.0), p(theirs, 99.0), 0.5)
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// `ours / theirs`, and whether it is at most `goal`. Against 0 there is no ratio: the
/// figure is shown as it is.
fn ratio(ours: f64, theirs: f64, goal: f64) -> String {
    let ok = verdict(ours <= theirs * goal);
    if theirs == 0.0 {
        return format!("{ours} against 0 ({ok})");
    }
    format!("{:.2}x ({ok})", ours / theirs)
}

pub fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A row's writes: watch events (all, Endpoints, EndpointSlices), then write requests as
/// `total (Endpoints/slices)`.
fn writes_columns(writes: &Writes, requests: WriteRequests) -> String {
    format!(
        "{:>6} {:>18} {:>20} {:>15}",
        writes.total(),
        writes.endpoints.to_string(),
        writes.slices.to_string(),
        format!(
            "{} ({}/{})",
            requests.total(),
            requests.endpoints,
            requests.slices
        )
    )
}

/// A row's controller process: RSS, peak RSS, CPU time.
fn process_columns(resources: &Resources) -> String {
    format!(
        "{:>6} {:>6} {:>6}",
        mib(resources.rss_kib),
        mib(resources.hwm_kib),
        format!("{:.1}s", resources.cpu_seconds)
    )
}

fn mib(kib: u64) -> String {
    format!("{:.0}MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn a_ratio_against_zero_shows_the_figure() {
        assert_eq!(ratio(1.0, 4.0, 0.5), "0.25x (yes)");
        assert_eq!(ratio(3.0, 4.0, 0.5), "0.75x (NO)");
        assert_eq!(ratio(0.0, 0.0, 0.5), "0 against 0 (yes)");
        assert_eq!(ratio(53.0, 0.0, 0.5), "53 against 0 (NO)");
    }
}
