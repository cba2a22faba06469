//! `backup-cron`: scheduled logical backups of the platform's PostgreSQL databases
//! and file storage. Wiring only: the library (`backup_cron`) does the work; this
//! parses the command line and maps a configuration error to exit status 2.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = backup_cron::cli::Cli::parse();
    let env = dsn::Environment::from_process();
    match backup_cron::execute(&cli, &env) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("backup-cron: configuration error: {error}");
            ExitCode::from(2)
        }
    }
}
