//! Verifies a backup directory as `backup-cron verify` does, from the library:
//! `cargo run -p backup-manifest --example check_backup -- /backups/2026-11-29_020000`.
#![expect(clippy::print_stdout, reason = "an example reports on stdout")]

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: check_backup <backup directory>");
        return ExitCode::from(2);
    };
    let verification = match manifest::verify(std::path::Path::new(&dir)) {
        Ok(verification) => verification,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    println!("manifest status: {:?}", verification.manifest.status);
    for check in &verification.artifacts {
        match &check.problem {
            None => println!("ok      {}", check.file),
            Some(problem) => println!("FAILED  {}: {problem}", check.file),
        }
    }
    for leftover in &verification.leftovers {
        println!("FAILED  {leftover}: leftover of an interrupted write");
    }
    if verification.is_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
