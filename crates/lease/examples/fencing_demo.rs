//! The stale write, made to happen: why every write carries the lease key.
//!
//! `cargo run -p pg-lease --example fencing_demo` (needs the PostgreSQL server
//! binaries, as the tests do; starts a throwaway cluster and removes it again).
//!
//! Two workers, A and B, share one queue. A leases a job and is then paused past its
//! lease — a `SIGSTOP`, a long garbage-collection pause, a network that stalls
//! without resetting. B leases the same job, because as far as the database knows A
//! is gone. Then A wakes up, still holding its result. The demo moves the database
//! clock instead of waiting for the lease to pass (every time-dependent statement of
//! `lease` takes an optional `now` for this); `cargo xtask chaos` does the same with
//! real `SIGSTOP`s and checks the records afterwards.
//!
//! It prints the timeline: the lease keys, A's write refused (0 rows), B's accepted,
//! and then — with a write that leaves the key out, which only this demo does — the
//! double write the key prevents.
#![expect(clippy::print_stdout, reason = "the demo's output is its timeline")]

use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, Pool};
use lease::{Queue, QueueConfig};
use serde_json::json;
use tokio_postgres::NoTls;

const LEASE: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = fixtures::TestDb::new().await?;
    let client = db.connect().await?;
    // A job table of the demo's own: `lease` works on any table with these columns.
    client
        .batch_execute(
            "create table demo_jobs (
               id uuid primary key default gen_random_uuid(),
               essay_id uuid not null default gen_random_uuid(),
               payload jsonb not null default '{}',
               status text not null default 'queued',
               retry_count int not null default 0,
               visible_at timestamptz not null default now(),
               lease_key uuid, leased_until timestamptz, error_code text,
               created_at timestamptz not null default now(),
               updated_at timestamptz not null default now());
             insert into demo_jobs default values;",
        )
        .await?;
    let pool = Pool::builder(Manager::new(db.config(), NoTls))
        .max_size(4)
        .build()?;
    let queue = Queue::new(pool.clone(), &QueueConfig::new("demo_jobs", "essay_id")?);

    let start = SystemTime::now();
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    let a = queue.lease(1, LEASE, Some(at(0))).await?.remove(0);
    println!(
        "t=0s   A leases job {}: key k1 = {}, lease {} s",
        short(a.id),
        short(a.lease_key),
        LEASE.as_secs()
    );
    println!("t=0s   A is paused: no heartbeat extends its lease");
    let b = queue.lease(1, LEASE, Some(at(31))).await?.remove(0);
    assert_eq!(b.id, a.id, "the same job");
    println!(
        "t=31s  the lease has passed; B leases the same job: key k2 = {}",
        short(b.lease_key)
    );

    let b_wrote = queue
        .merge_payload(&b, &json!({"feedback": "B's feedback"}))
        .await?;
    println!(
        "t=31s  B writes its feedback `... where id = $1 and lease_key = k2`: {} row",
        u8::from(b_wrote)
    );
    let a_wrote = queue
        .merge_payload(&a, &json!({"feedback": "A's stale feedback"}))
        .await?;
    println!(
        "t=40s  A wakes and writes `... where id = $1 and lease_key = k1`: {} rows",
        u8::from(a_wrote)
    );
    println!(
        "       A sees 0 rows: its lease is lost, it drops its result and writes nothing more"
    );
    assert!(b_wrote && !a_wrote, "fencing keeps the stale write out");
    let mut pooled = pool.get().await?;
    assert!(
        queue.fence(&mut pooled, &a).await?.is_none(),
        "A cannot complete either"
    );
    println!("       A's completion is refused too: `fence` finds no row with k1");
    println!("       the job holds: {}", feedback(&client, a.id).await?);

    // Demo only: the same write without the key. The product has no such statement.
    let unfenced = client
        .execute(
            "update demo_jobs set payload = payload || '{\"feedback\": \"A''s stale feedback\"}' where id = $1",
            &[&a.id],
        )
        .await?;
    println!();
    println!("without the key (`... where id = $1` only), A's stale write matches {unfenced} row:");
    println!(
        "       the job now holds: {}  <- B's result overwritten",
        feedback(&client, a.id).await?
    );
    Ok(())
}

async fn feedback(
    client: &tokio_postgres::Client,
    id: uuid::Uuid,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select payload ->> 'feedback' from demo_jobs where id = $1",
            &[&id],
        )
        .await?;
    Ok(format!(
        "{:?}",
        row.get::<_, Option<String>>(0).unwrap_or_default()
    ))
}

fn short(id: uuid::Uuid) -> String {
    id.to_string()[..8].to_owned()
}
