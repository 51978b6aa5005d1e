//! Counting the API writes controllers make: every create, update and delete of Endpoints and
//! EndpointSlices in a namespace shows as one watch event, so a watch from the namespace's
//! creation counts them all, whoever the writer is.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use tokio::task::JoinHandle;

/// Writes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindWrites {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl KindWrites {
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.deleted
    }
}

impl fmt::Display for KindWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}c/{}u/{}d)",
            self.total(),
            self.created,
            self.updated,
            self.deleted
        )
    }
}

/// Writes of Endpoints and EndpointSlices seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    pub endpoints: KindWrites,
    pub slices: KindWrites,
}

impl Writes {
    pub fn total(&self) -> u64 {
        self.endpoints.total() + self.slices.total()
    }
}

impl fmt::Display for Writes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Endpoints {}, EndpointSlices {}",
            self.endpoints, self.slices
        )
    }
}

/// Watches a namespace's Endpoints and EndpointSlices and counts their writes; stops when
/// dropped.
pub struct WriteCounter {
    writes: Arc<Mutex<Writes>>,
    tasks: Vec<JoinHandle<()>>,
}

impl WriteCounter {
    /// Starts counting from now. Start it before anything is written in the namespace.
    pub async fn start(client: &Client, namespace: &str) -> Result<Self> {
        let writes = Arc::new(Mutex::new(Writes::default()));
        let endpoints = count::<Endpoints>(
            Api::namespaced(client.clone(), namespace),
            writes.clone(),
            |w| &mut w.endpoints,
        )
        .await?;
        let slices = count::<EndpointSlice>(
            Api::namespaced(client.clone(), namespace),
            writes.clone(),
            |w| &mut w.slices,
        )
        .await?;
        Ok(Self {
            writes,
            tasks: vec![endpoints, slices],
        })
    }

    /// The writes counted so far.
    pub fn writes(&self) -> Writes {
        *self.writes.lock().unwrap()
    }

    /// Waits until no write has been seen for `quiet`, then returns the count. Gives up waiting
    /// after `limit` and returns what it has.
    pub async fn settled(&self, quiet: Duration, limit: Duration) -> Writes {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = self.writes();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.writes();
            if now == last || tokio::time::Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for WriteCounter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn count<K>(
    api: Api<K>,
    writes: Arc<Mutex<Writes>>,
    field: fn(&mut Writes) -> &mut KindWrites,
) -> Result<JoinHandle<()>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .context("listing before counting writes")?;
    let mut version = list.metadata.resource_version.unwrap_or_default();
    let kind = K::kind(&()).to_string();
    Ok(tokio::spawn(async move {
        loop {
            let params = WatchParams::default().timeout(290);
            let stream = match api.watch_metadata(&params, &version).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%kind, %error, "write counter: watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut stream = stream.boxed();
            loop {
                let event = match stream.try_next().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%kind, %error, "write counter: watch broke; resuming");
                        break;
                    }
                };
                let mut writes = writes.lock().unwrap();
                let counts = field(&mut writes);
                match event {
                    WatchEvent::Added(object) => {
                        counts.created += 1;
                        version = object.metadata.resource_version.unwrap_or(version);
                    }
                    WatchEvent::Modified(object) => {
                        counts.updated += 1;
                        version = object.metadata.resource_version.unwrap_or(version);
                    }
                    WatchEvent::Deleted(object) => {
                        counts.deleted += 1;
                        version = object.metadata.resource_version.unwrap_or(version);
                    }
                    WatchEvent::Bookmark(bookmark) => {
                        version = bookmark.metadata.resource_version;
                    }
                    WatchEvent::Error(status) => {
                        // 410 Gone: events were compacted away; the count can no longer be
                        // exact, so say so loudly.
                        tracing::error!(%kind, ?status, "write counter: watch error; counts may be incomplete");
                        break;
                    }
                }
            }
        }
    }))
}
