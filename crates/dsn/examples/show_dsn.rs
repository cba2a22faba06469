//! What a service would make of a connection string, without showing its secret:
//! `DATABASE_URL=postgres://u:secret@db/app cargo run -p pg-dsn --example show_dsn`
//! (or `DATABASE_URL_FILE=/run/secrets/dsn`). Prints the redacted DSN and the
//! environment a child such as `pg_dump` would get; the password goes only into a
//! private pgpass file, which is removed again at the end.
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = dsn::Environment::from_process();
    let Some(resolved) = dsn::resolve(&env, &["DATABASE_URL"])? else {
        return Err("set DATABASE_URL or DATABASE_URL_FILE".into());
    };
    println!("from {}: {}", resolved.variable, resolved.dsn);
    println!("sslmode: {}", resolved.dsn.ssl_mode());
    for (name, value) in resolved.dsn.libpq_env() {
        println!("  {name}={value}");
    }
    if let Some(pgpass) = resolved.dsn.write_pgpass()? {
        println!(
            "  PGPASSFILE={} (mode 0600, removed on exit)",
            pgpass.path().display()
        );
    }
    Ok(())
}
