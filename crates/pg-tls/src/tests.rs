//! Unit tests: which `sslmode`/`sslrootcert` combinations are refused, and how.

use dsn::SslMode;

use crate::{Error, MakeTls};

#[track_caller]
fn check_refused(mode: SslMode, root_cert: Option<&str>, expected: &str) {
    let error = MakeTls::new(mode, root_cert).err().expect("refused");
    assert_eq!(error.to_string(), expected);
}

#[test]
fn verify_ca_without_a_root_certificate_is_refused() {
    check_refused(
        SslMode::VerifyCa,
        None,
        "sslmode=verify-ca needs sslrootcert (the CA that signed the server's certificate): \
         checked against the public roots without the host name, any publicly issued certificate would pass; \
         or use sslmode=verify-full",
    );
}

#[test]
fn system_roots_need_verify_full() {
    for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
        check_refused(
            mode,
            Some("system"),
            &format!("sslrootcert=system needs sslmode=verify-full, not {mode}"),
        );
    }
}

#[test]
fn an_unreadable_or_empty_root_file_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = MakeTls::new(SslMode::VerifyFull, missing.to_str())
        .err()
        .unwrap();
    assert!(matches!(error, Error::RootCertUnreadable { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "sslrootcert: cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let not_pem = dir.path().join("key.pem");
    std::fs::write(
        &not_pem,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for path in [&empty, &not_pem] {
        let error = MakeTls::new(SslMode::Require, path.to_str()).err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "sslrootcert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )
        );
    }
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = MakeTls::new(SslMode::VerifyCa, garbage.to_str())
        .err()
        .unwrap();
    assert!(matches!(error, Error::RootCertInvalid { .. }), "{error}");
}

#[test]
fn the_modes_that_need_no_file_build() {
    for mode in [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
    ] {
        assert!(MakeTls::new(mode, None).is_ok(), "{mode}");
    }
}
