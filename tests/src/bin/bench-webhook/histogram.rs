//! Prometheus histograms read from a `/metrics` text: the webhook's handling time and the
//! apiserver's request, admission and etcd latencies.

/// Cumulative bucket counts of a histogram (`le` in seconds, count), by `le`, with its
/// sum and count.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The `webhook="mutate-services"` series of the handling-time histogram in a
    /// `/metrics` text.
    pub fn parse(text: &str) -> Self {
        Self::parse_series(
            text,
            "svcplane_admission_handling_seconds",
            &["webhook=\"mutate-services\""],
        )
    }

    /// Histogram `name` of a `/metrics` text, its series carrying every label of `labels`
    /// added together.
    fn parse_series(text: &str, name: &str, labels: &[&str]) -> Self {
        let mut histogram = Self::default();
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            if !line.starts_with(name) || !labels.iter().all(|label| line.contains(label)) {
                continue;
            }
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.starts_with(&format!("{name}_bucket{{")) {
                let le = line
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(|le| {
                        if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap_or(f64::NAN)
                        }
                    });
                if let Some(le) = le.filter(|le| !le.is_nan()) {
                    match buckets.iter_mut().find(|(other, _)| *other == le) {
                        Some(bucket) => bucket.1 += value,
                        None => buckets.push((le, value)),
                    }
                }
            } else if line.starts_with(&format!("{name}_sum{{")) {
                histogram.sum += value;
            } else if line.starts_with(&format!("{name}_count{{")) {
                histogram.count += value;
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram.buckets = buckets;
        histogram
    }

    /// What was observed between `before` and `self`.
    pub fn since(&self, before: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| {
                    let earlier = before
                        .buckets
                        .iter()
                        .find(|(other, _)| *other == le)
                        .map_or(0.0, |&(_, count)| count);
                    (le, count - earlier)
                })
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// `self` and `other` together (same buckets).
    pub fn plus(&self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        let mut sum = self.clone();
        for (bucket, (_, count)) in sum.buckets.iter_mut().zip(&other.buckets) {
            bucket.1 += count;
        }
        sum.sum += other.sum;
        sum.count += other.count;
        sum
    }

    /// The bucket `(lower, upper]` holding quantile `q`, and the linear interpolation
    /// inside it (as Prometheus' `histogram_quantile` computes).
    pub fn quantile(&self, q: f64) -> Option<(f64, f64, f64)> {
        let rank = q * self.count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(upper, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > 0.0 {
                let inside = cumulative - below;
                let estimate = if upper.is_infinite() {
                    lower
                } else {
                    lower + (upper - lower) * ((rank - below) / inside)
                };
                return Some((lower, upper, estimate));
            }
            lower = upper;
            below = cumulative;
        }
        None
    }
}

/// The apiserver's own request and admission latencies, for the burst (after minus
/// before).
#[derive(Clone, Debug, Default)]
pub struct ApiserverFigures {
    /// `POST services`: the creates as the apiserver timed them.
    pub service_posts: Histogram,
    /// Its calls to svcplane's mutating webhook.
    pub webhook_calls: Histogram,
    /// Its calls to svcplane's validating webhook for Services.
    pub validating_calls: Histogram,
    /// `PUT rangeallocations`: svcplane's compare-and-swap writes.
    pub range_writes: Histogram,
    /// The etcd requests of kube-apiserver's own node-port allocator (its reads and
    /// writes of the `servicenodeportallocations` key, each under the allocator's mutex).
    pub node_port_etcd: Histogram,
    /// The etcd requests that store the created Services, for comparison.
    pub service_etcd: Histogram,
}

impl ApiserverFigures {
    pub fn parse(text: &str) -> Self {
        let pair = Histogram::parse_series;
        Self {
            service_posts: pair(
                text,
                "apiserver_request_duration_seconds",
                &["resource=\"services\"", "verb=\"POST\"", "dry_run=\"\""],
            ),
            webhook_calls: pair(
                text,
                "apiserver_admission_webhook_admission_duration_seconds",
                &[
                    "name=\"allocate.services.svcplane.io\"",
                    "operation=\"CREATE\"",
                ],
            ),
            validating_calls: pair(
                text,
                "apiserver_admission_webhook_admission_duration_seconds",
                &["name=\"services.svcplane.io\"", "operation=\"CREATE\""],
            ),
            range_writes: pair(
                text,
                "apiserver_request_duration_seconds",
                &["resource=\"rangeallocations\"", "verb=\"PUT\""],
            ),
            node_port_etcd: pair(
                text,
                "etcd_request_duration_seconds",
                &["resource=\"servicenodeportallocations\""],
            ),
            service_etcd: pair(
                text,
                "etcd_request_duration_seconds",
                &["resource=\"services\"", "operation=\"create\""],
            ),
        }
    }

    pub fn since(&self, before: &Self) -> Self {
        self.each_with(before, Histogram::since)
    }

    pub fn plus(&self, other: &Self) -> Self {
        self.each_with(other, Histogram::plus)
    }

    /// `apply` to each histogram of `self` with its counterpart in `other`.
    fn each_with(&self, other: &Self, apply: fn(&Histogram, &Histogram) -> Histogram) -> Self {
        Self {
            service_posts: apply(&self.service_posts, &other.service_posts),
            webhook_calls: apply(&self.webhook_calls, &other.webhook_calls),
            validating_calls: apply(&self.validating_calls, &other.validating_calls),
            range_writes: apply(&self.range_writes, &other.range_writes),
            node_port_etcd: apply(&self.node_port_etcd, &other.node_port_etcd),
            service_etcd: apply(&self.service_etcd, &other.service_etcd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{mean_of, p99_of};

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let text = "\
# TYPE svcplane_admission_handling_seconds histogram
svcplane_admission_handling_seconds_sum{webhook=\"mutate-services\"} 0.5
svcplane_admission_handling_seconds_count{webhook=\"mutate-services\"} 100
svcplane_admission_handling_seconds_bucket{le=\"0.001\",webhook=\"mutate-services\"} 50
svcplane_admission_handling_seconds_bucket{le=\"0.002\",webhook=\"mutate-services\"} 90
svcplane_admission_handling_seconds_bucket{le=\"+Inf\",webhook=\"mutate-services\"} 100
svcplane_admission_handling_seconds_bucket{le=\"0.001\",webhook=\"validate-endpoints\"} 7
";
        let histogram = Histogram::parse(text);
        assert_eq!(histogram.count, 100.0);
        assert_eq!(histogram.quantile(0.5), Some((0.0, 0.001, 0.001)));
        let (lower, upper, estimate) = histogram.quantile(0.7).unwrap();
        assert_eq!((lower, upper), (0.001, 0.002));
        assert!((estimate - 0.0015).abs() < 1e-12);
        assert_eq!(
            histogram.quantile(0.99),
            Some((0.002, f64::INFINITY, 0.002))
        );
        let empty = histogram.since(&histogram);
        assert_eq!(empty.quantile(0.5), None);
        assert_eq!(empty.count, 0.0);
    }

    #[test]
    fn apiserver_figures_pick_their_series() {
        let text = "\
apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 4
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 20
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"0.2\"} 15
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"0.5\"} 20
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"+Inf\"} 20
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"All\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1
apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"svcplane.io\",resource=\"rangeallocations\",scope=\"resource\",subresource=\"\",verb=\"PUT\",version=\"v1alpha1\"} 1
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"svcplane.io\",resource=\"rangeallocations\",scope=\"resource\",subresource=\"\",verb=\"PUT\",version=\"v1alpha1\"} 5
etcd_request_duration_seconds_sum{group=\"\",operation=\"get\",resource=\"servicenodeportallocations\"} 0.5
etcd_request_duration_seconds_count{group=\"\",operation=\"get\",resource=\"servicenodeportallocations\"} 10
etcd_request_duration_seconds_sum{group=\"\",operation=\"update\",resource=\"servicenodeportallocations\"} 1.5
etcd_request_duration_seconds_count{group=\"\",operation=\"update\",resource=\"servicenodeportallocations\"} 10
etcd_request_duration_seconds_sum{group=\"\",operation=\"update\",resource=\"services\"} 9
";
        let figures = ApiserverFigures::parse(text);
        let pair = |h: &Histogram| (h.sum, h.count);
        assert_eq!(pair(&figures.service_posts), (4.0, 20.0));
        assert_eq!(figures.service_posts.quantile(0.99).map(|q| q.1), Some(0.5));
        assert_eq!(pair(&figures.range_writes), (1.0, 5.0));
        assert_eq!(pair(&figures.webhook_calls), (0.0, 0.0));
        assert_eq!(pair(&figures.node_port_etcd), (2.0, 20.0));
        assert_eq!(mean_of(&figures.service_posts), "mean 200.000 ms over 20");
        assert_eq!(
            p99_of(&figures.service_posts),
            "p99 in (200.000 ms, 500.000 ms]"
        );
    }
}
