//! A property test: random interleavings of lease, heartbeat, clock advance and
//! fenced completion by three workers keep the invariants:
//! - at any moment, at most one worker holds a live lease on a job;
//! - a fenced write succeeds only for the current holder;
//! - no job is completed twice, and a completed job is never leased again.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use fixtures::TestDb;
use proptest::prelude::*;
use uuid::Uuid;

use crate::{LEASE, queue, t0};

#[derive(Clone, Debug)]
enum Step {
    Lease { worker: usize, limit: usize },
    Heartbeat { worker: usize },
    Advance { seconds: u64 },
    Complete { worker: usize, pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 1..3usize).prop_map(|(worker, limit)| Step::Lease { worker, limit }),
        (0..3usize).prop_map(|worker| Step::Heartbeat { worker }),
        (1..40u64).prop_map(|seconds| Step::Advance { seconds }),
        (0..3usize, 0..4usize).prop_map(|(worker, pick)| Step::Complete { worker, pick }),
    ]
}

/// What a worker believes it holds: job → (key, lease valid until).
type Holdings = HashMap<Uuid, (Uuid, SystemTime)>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn interleavings_keep_the_lease_invariants(steps in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(steps));
    }
}

async fn run(steps: Vec<Step>) {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 4).await.unwrap();
    let queue = queue(&db, 2);
    let mut now = t0();
    let mut workers: Vec<Holdings> = vec![HashMap::new(); 3];
    let mut completed: HashMap<Uuid, usize> = HashMap::new();

    for step in steps {
        match step {
            Step::Lease { worker, limit } => {
                for job in queue.lease(limit, LEASE, Some(now)).await.unwrap() {
                    assert!(
                        !completed.contains_key(&job.id),
                        "a completed job was leased again"
                    );
                    workers[worker].insert(job.id, (job.lease_key, now + LEASE));
                }
            }
            Step::Heartbeat { worker } => {
                let keys: Vec<Uuid> = workers[worker].values().map(|(key, _)| *key).collect();
                let held = queue.heartbeat(&keys, LEASE, Some(now)).await.unwrap();
                workers[worker].retain(|_, (key, _)| held.contains(key));
                for (key, until) in workers[worker].values_mut() {
                    if held.contains(key) {
                        *until = now + LEASE;
                    }
                }
            }
            Step::Advance { seconds } => now += Duration::from_secs(seconds),
            Step::Complete { worker, pick } => {
                let Some((&job_id, &(key, _))) = workers[worker].iter().nth(pick) else {
                    continue;
                };
                let job = lease::LeasedJob {
                    id: job_id,
                    lease_key: key,
                    retry_count: 0,
                    payload: serde_json::Value::Null,
                    reference: Uuid::nil(),
                };
                let current = current_key(&client, job_id).await;
                let mut connection = queue.pool().get().await.unwrap();
                let fence = queue.fence(&mut connection, &job).await.unwrap();
                assert_eq!(
                    fence.is_some(),
                    current == Some(key),
                    "the fence admits exactly the current key"
                );
                if let Some(fence) = fence {
                    fence.complete().await.unwrap();
                    *completed.entry(job_id).or_default() += 1;
                }
                workers[worker].remove(&job_id);
            }
        }
        // At most one live holder per job, by the clock the database used.
        let mut live: HashMap<Uuid, usize> = HashMap::new();
        for holdings in &workers {
            for (job, (_, until)) in holdings {
                if *until > now {
                    *live.entry(*job).or_default() += 1;
                }
            }
        }
        assert!(
            live.values().all(|holders| *holders <= 1),
            "two live holders: {live:?}"
        );
        assert!(completed.values().all(|times| *times == 1));
    }
}

async fn current_key(client: &tokio_postgres::Client, job: Uuid) -> Option<Uuid> {
    client
        .query_opt(
            "select lease_key from learning_submission_jobs where id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .and_then(|row| row.get(0))
}
