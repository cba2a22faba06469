//! `MakeTls` against a real PostgreSQL that serves TLS with a certificate from a CA
//! made for this test process, and against one that serves no TLS at all.

use std::sync::{Arc, OnceLock};

use fixtures::{Server, TLS_HOST, TestCa, TestDb};
use pg_tls::{HandshakeFailure, MakeTls};

/// One TLS server for the whole binary, with the CA it trusts and one it does not.
struct World {
    ca: TestCa,
    stranger: TestCa,
    server: Arc<Server>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let ca = TestCa::new().unwrap();
        let server = Server::private_with_tls(&ca).unwrap();
        World {
            stranger: TestCa::new().unwrap(),
            ca,
            server,
        }
    })
}

/// A DSN for `db` on `host`, with the given query (sslmode, sslrootcert).
fn dsn(db: &TestDb, host: &str, query: &str) -> dsn::Dsn {
    let url = db.url_as_on(host, "gustav_worker", db.server().worker_password());
    dsn::Dsn::parse(&format!("{url}?{query}")).unwrap()
}

/// Connects as the DSN says; `Ok(true)` when the session is encrypted.
async fn connect(dsn: &dsn::Dsn) -> Result<bool, tokio_postgres::Error> {
    let tls = MakeTls::for_dsn(dsn).unwrap();
    let (client, connection) = dsn.to_tokio_postgres().unwrap().connect(tls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[track_caller]
fn check_refused(result: Result<bool, tokio_postgres::Error>, expected: HandshakeFailure) {
    let error = result.expect_err("the connection must fail");
    assert_eq!(pg_tls::failure_of(&error), Some(expected), "{error}");
}

fn root(ca: &TestCa) -> String {
    format!("sslrootcert={}", ca.ca_cert().display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_with_the_right_ca_and_host_name() {
    let world = world();
    let db = TestDb::on(world.server.clone()).await.unwrap();
    let query = format!("sslmode=verify-full&{}", root(&world.ca));
    assert!(connect(&dsn(&db, TLS_HOST, &query)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_for_another_host_name() {
    let world = world();
    let db = TestDb::on(world.server.clone()).await.unwrap();
    let query = format!("sslmode=verify-full&{}", root(&world.ca));
    check_refused(
        connect(&dsn(&db, fixtures::HOST, &query)).await,
        HandshakeFailure::WrongHost,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_and_verify_ca_refuse_an_unknown_ca() {
    let world = world();
    let db = TestDb::on(world.server.clone()).await.unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let query = format!("sslmode={mode}&{}", root(&world.stranger));
        check_refused(
            connect(&dsn(&db, TLS_HOST, &query)).await,
            HandshakeFailure::Untrusted,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let world = world();
    let db = TestDb::on(world.server.clone()).await.unwrap();
    let query = format!("sslmode=verify-ca&{}", root(&world.ca));
    assert!(connect(&dsn(&db, fixtures::HOST, &query)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_without_a_root_and_disable_does_not() {
    let world = world();
    let db = TestDb::on(world.server.clone()).await.unwrap();
    assert!(
        connect(&dsn(&db, fixtures::HOST, "sslmode=require"))
            .await
            .unwrap()
    );
    assert!(
        connect(&dsn(&db, fixtures::HOST, "sslmode=prefer"))
            .await
            .unwrap()
    );
    assert!(
        connect(&dsn(&db, fixtures::HOST, "application_name=x"))
            .await
            .unwrap()
    );
    assert!(
        !connect(&dsn(&db, fixtures::HOST, "sslmode=disable"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_from_require_upwards_and_used_plain_by_prefer() {
    let db = TestDb::new().await.unwrap();
    check_refused(
        connect(&dsn(&db, fixtures::HOST, "sslmode=require")).await,
        HandshakeFailure::Refused,
    );
    let query = format!("sslmode=verify-full&{}", root(&world().ca));
    check_refused(
        connect(&dsn(&db, TLS_HOST, &query)).await,
        HandshakeFailure::Refused,
    );
    assert!(
        !connect(&dsn(&db, fixtures::HOST, "sslmode=prefer"))
            .await
            .unwrap()
    );
}

#[test]
fn a_plain_connection_error_is_not_called_a_tls_failure() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = runtime.block_on(async {
        let dsn = dsn::Dsn::parse("postgresql://u:p@127.0.0.1:1/db?sslmode=require").unwrap();
        connect(&dsn).await.unwrap_err()
    });
    assert_eq!(pg_tls::failure_of(&error), None, "{error}");
}
