//! The write requests the apiserver counted for Endpoints and EndpointSlices.

use anyhow::Result;
use e2e::bench::apiserver_metrics;
use kube::Client;

/// Write requests (POST, PUT, PATCH, DELETE, any answer) the apiserver counted for Endpoints
/// and EndpointSlices, from its `apiserver_request_total`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteRequests {
    pub endpoints: u64,
    pub slices: u64,
}

impl WriteRequests {
    fn parse(metrics: &str) -> Self {
        let mut requests = Self::default();
        for line in metrics.lines() {
            let Some(labels) = line
                .strip_prefix("apiserver_request_total{")
                .and_then(|rest| rest.split_once('}'))
            else {
                continue;
            };
            let (labels, value) = labels;
            let has = |label: &str| labels.split(',').any(|l| l == label);
            let write = ["POST", "PUT", "PATCH", "DELETE"]
                .iter()
                .any(|verb| has(&format!("verb=\"{verb}\"")));
            let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            if write && has("dry_run=\"\"") && has("subresource=\"\"") {
                if has("resource=\"endpoints\"") && has("group=\"\"") {
                    requests.endpoints += count;
                } else if has("resource=\"endpointslices\"") {
                    requests.slices += count;
                }
            }
        }
        requests
    }

    pub async fn read(client: &Client) -> Result<Self> {
        Ok(Self::parse(&apiserver_metrics(client).await?))
    }

    pub fn since(self, before: Self) -> Self {
        Self {
            endpoints: self.endpoints.saturating_sub(before.endpoints),
            slices: self.slices.saturating_sub(before.slices),
        }
    }

    pub fn total(self) -> u64 {
        self.endpoints + self.slices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_count_endpoint_writes_only() {
        let metrics = r#"
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="PUT",version="v1"} 52
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="PUT",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="GET",version="v1"} 900
apiserver_request_total{code="201",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="POST",version="v1"} 50
apiserver_request_total{code="200",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="DELETE",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PUT",version="v1"} 5000
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="POST",version="v1"} 7
"#;
        let before = WriteRequests::parse(metrics);
        assert_eq!((before.endpoints, before.slices), (56, 52));
        let after = WriteRequests::parse(&metrics.replace("} 52\n", "} 60\n"));
        assert_eq!(after.since(before).total(), 8);
    }
}
