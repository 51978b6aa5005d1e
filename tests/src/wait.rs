//! Waiting for the cluster to reach a state, with the last thing seen in the failure.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;

/// How long to wait for controllers to converge: `$SVCPLANE_E2E_WAIT_SECONDS`, default 60.
/// A limit on waiting for a state, not a performance expectation.
pub fn wait_limit() -> Duration {
    let seconds = std::env::var("SVCPLANE_E2E_WAIT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// Calls `check` until it returns `Ok(Ok(value))`. `Ok(Err(seen))` means "not yet", and
/// `seen` describes the state observed, reported if the wait runs out. `Err` stops at once.
pub async fn until<T, S, F, Fut>(what: impl Display, mut check: F) -> Result<T>
where
    S: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, S>>>,
{
    let limit = wait_limit();
    let deadline = Instant::now() + limit;
    loop {
        match check().await? {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() > deadline => {
                anyhow::bail!("waited {limit:?} for {what}; last seen:\n{seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until `observe` returns a value equal to `expected`.
pub async fn until_eq<T, F, Fut>(what: impl Display, expected: &T, mut observe: F) -> Result<T>
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    until(what, || {
        let fut = observe();
        async move {
            let seen = fut.await?;
            Ok(if &seen == expected {
                Ok(seen)
            } else {
                Err(format!("{seen:#?}\nexpected:\n{expected:#?}"))
            })
        }
    })
    .await
}
