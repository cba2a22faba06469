//! LISTEN/NOTIFY wake-ups, also after a server restart.

use std::time::{Duration, Instant};

use fixtures::TestDb;
use lease::Listener;
use tokio_postgres::NoTls;

/// Far longer than any test runs: a `true` from `wait` can only be a notification.
const NEVER: Duration = Duration::from_secs(600);

async fn connected(listener: &Listener) {
    fixtures::wait_until(
        "the listener connects",
        Duration::from_secs(60),
        async || listener.is_connected(),
    )
    .await;
    // The wake-up every (re)connection gives, for notifications missed meanwhile.
    assert!(listener.wait(NEVER).await);
}

#[tokio::test]
async fn an_insert_wakes_the_listener() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let listener = Listener::spawn(db.worker_config(), NoTls, "learning_submissions").unwrap();
    connected(&listener).await;
    assert!(
        !listener.wait(Duration::from_millis(50)).await,
        "no wake-up without an insert"
    );

    fixtures::submission()
        .insert_with_job(&client)
        .await
        .unwrap();

    assert!(
        tokio::time::timeout(Duration::from_secs(60), listener.wait(NEVER))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_comes_back_after_a_restart() {
    let db = TestDb::on(fixtures::Server::private().unwrap())
        .await
        .unwrap();
    let listener = Listener::spawn(db.worker_config(), NoTls, "learning_submissions").unwrap();
    connected(&listener).await;

    tokio::task::block_in_place(|| db.server().require_cluster().unwrap().restart()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while listener.is_connected() {
        // The cut is noticed when the connection errors; waiting on wake-ups keeps
        // the test from spinning.
        assert!(Instant::now() < deadline, "the restart was never noticed");
        listener.wait(Duration::from_millis(50)).await;
    }
    connected(&listener).await;
    let client = db.connect().await.unwrap();
    fixtures::submission()
        .insert_with_job(&client)
        .await
        .unwrap();

    assert!(
        tokio::time::timeout(Duration::from_secs(60), listener.wait(NEVER))
            .await
            .unwrap()
    );
}
