//! Connects as `DATABASE_URL` (or `DATABASE_URL_FILE`) says, TLS as its `sslmode`
//! and `sslrootcert` ask, and reports whether the session is encrypted, or which
//! TLS check failed:
//! `DATABASE_URL='postgres://u@db/app?sslmode=verify-full&sslrootcert=ca.pem' cargo run -p pg-tls --example tls_probe`
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = dsn::Environment::from_process();
    let Some(resolved) = dsn::resolve(&env, &["DATABASE_URL"])? else {
        return Err("set DATABASE_URL or DATABASE_URL_FILE".into());
    };
    let tls = pg_tls::MakeTls::for_dsn(&resolved.dsn)?;
    match resolved.dsn.to_tokio_postgres()?.connect(tls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            let row = client
                .query_one(
                    "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            let (ssl, version): (bool, Option<String>) = (row.get(0), row.get(1));
            println!(
                "connected to {}: ssl={ssl} {}",
                resolved.dsn,
                version.unwrap_or_default()
            );
        }
        Err(error) => match pg_tls::failure_of(&error) {
            Some(failure) => println!("TLS failed ({failure:?}): {error}"),
            None => println!("not a TLS problem: {error}"),
        },
    }
    Ok(())
}
