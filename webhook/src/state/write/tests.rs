use super::*;

#[test]
fn conflict_backoff_is_jittered_under_a_doubling_cap() {
    assert_eq!(conflict_backoff(1, 0), Duration::ZERO);
    let mut total = Duration::ZERO;
    for attempt in 1..16 {
        let cap = (CONFLICT_BACKOFF_BASE * 2u32.pow(attempt)).min(CONFLICT_BACKOFF_MAX);
        for _ in 0..64 {
            assert!(conflict_backoff(attempt, random()) <= cap);
        }
        let at_cap = conflict_backoff(attempt, u64::try_from(cap.as_nanos()).unwrap());
        assert_eq!(at_cap, cap);
        total += at_cap;
    }
    assert_eq!(total, Duration::from_millis(702));
}

#[test]
fn random_numbers_differ() {
    let draws: std::collections::BTreeSet<u64> = (0..32).map(|_| random()).collect();
    assert!(draws.len() > 30);
}

mod against_the_api {
    use super::*;
    use crate::state::crd::RangeAllocationSpec;
    use crate::state::fake_api::FakeRanges;
    use allocator::IpFamily;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    const KIND: RangeKind = RangeKind::ClusterIps(IpFamily::V4);

    fn object(used: u64) -> RangeAllocation {
        RangeAllocation {
            metadata: ObjectMeta {
                name: Some(KIND.name().to_string()),
                ..ObjectMeta::default()
            },
            spec: RangeAllocationSpec {
                range: "10.96.0.0/24".to_string(),
                data: ByteString(Vec::new()),
                used,
                size: 254,
                reservations: Default::default(),
                further_ranges: Vec::new(),
            },
        }
    }

    /// The change under test: adds one to `used` of whatever copy it is given.
    fn add_one(mut stored: RangeAllocation) -> Result<(RangeAllocation, u64), ()> {
        stored.spec.used += 1;
        let used = stored.spec.used;
        Ok((stored, used))
    }

    #[tokio::test]
    async fn a_conflict_is_written_again_on_a_fresh_copy() {
        let fake = FakeRanges::default();
        fake.put_object(object(10));
        // Another writer adds 5 just before our first write: it conflicts.
        fake.interfere(KIND.name(), Box::new(|other| other.spec.used += 5));
        let api = Api::all(fake.client());
        let mut attempts = 0;
        let (written, used) = rewrite(&api, KIND, Start::Now, &mut attempts, 4, add_one)
            .await
            .unwrap();
        assert_eq!((used, written.spec.used), (16, 16), "both changes kept");
        assert_eq!(fake.object(KIND.name()).unwrap().spec.used, 16);
        assert_eq!(attempts, 2);
        assert_eq!(fake.counts(), (2, 2));
    }

    #[tokio::test]
    async fn conflicts_on_every_write_spend_the_attempts_and_write_nothing_of_ours() {
        let fake = FakeRanges::default();
        fake.put_object(object(0));
        for _ in 0..3 {
            fake.interfere(KIND.name(), Box::new(|other| other.spec.used += 100));
        }
        let api = Api::all(fake.client());
        let mut attempts = 1;
        let result = rewrite(&api, KIND, Start::AfterConflict, &mut attempts, 4, add_one).await;
        assert!(matches!(result, Err(RewriteError::OutOfAttempts)));
        assert_eq!(attempts, 4, "the caller's earlier attempt counts");
        assert_eq!(fake.object(KIND.name()).unwrap().spec.used, 300);
    }

    #[tokio::test]
    async fn a_change_that_gives_up_writes_nothing() {
        let fake = FakeRanges::default();
        fake.put_object(object(0));
        let api = Api::all(fake.client());
        let mut attempts = 0;
        let result: Result<(RangeAllocation, ()), _> =
            rewrite(&api, KIND, Start::Now, &mut attempts, 4, |_| Err("taken")).await;
        assert!(matches!(result, Err(RewriteError::Stopped("taken"))));
        assert_eq!(fake.counts(), (1, 0));
    }

    #[tokio::test]
    async fn a_write_the_apiserver_did_not_answer_is_tried_again_on_a_fresh_copy() {
        let fake = FakeRanges::default();
        fake.put_object(object(10));
        fake.refuse_next_put(KIND.name(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let api = Api::all(fake.client());
        let mut attempts = 0;
        let (written, _) = rewrite(&api, KIND, Start::Now, &mut attempts, 4, add_one)
            .await
            .unwrap();
        assert_eq!(written.spec.used, 11);
        assert_eq!(fake.counts(), (2, 2));
    }

    #[tokio::test]
    async fn a_missing_object_is_said_so() {
        let fake = FakeRanges::default();
        let api = Api::all(fake.client());
        let mut attempts = 0;
        let result = rewrite(&api, KIND, Start::Now, &mut attempts, 4, add_one).await;
        assert!(matches!(result, Err(RewriteError::Missing)));
    }
}

#[test]
fn conflicts_and_unknown_outcomes_are_tried_again_refusals_are_not() {
    let status =
        |code| kube::Error::Api(kube::core::Status::failure("", "").with_code(code).boxed());
    assert!(worth_another_try(&status(409)));
    assert!(worth_another_try(&status(503)));
    assert!(worth_another_try(&status(429)));
    assert!(!worth_another_try(&status(422)));
    assert!(!worth_another_try(&status(403)));
    assert!(!worth_another_try(&status(404)));
    let broken = kube::Error::Service("connection reset".into());
    assert!(worth_another_try(&broken));
}
