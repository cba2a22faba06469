//! `BACKUP_S3_URL` parsing and what a `Remote` prints.

use super::*;

#[test]
fn a_location_is_a_bucket_and_an_optional_prefix() {
    let parse = |text: &str| text.parse::<Location>();
    let bucket = parse("s3://school-backups").unwrap();
    assert_eq!((bucket.bucket(), bucket.prefix()), ("school-backups", ""));
    let nested = parse(" s3://school-backups//db/nightly/ ").unwrap();
    assert_eq!(
        (nested.bucket(), nested.prefix()),
        ("school-backups", "db/nightly")
    );
    for (text, reason) in [
        ("", "expected s3://"),
        ("https://school-backups", "expected s3://"),
        ("s3://", "bucket name"),
        ("s3://ab", "bucket name"),
        ("s3://School", "bucket name"),
        ("s3://-bucket", "bucket name"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/x", "credentials"),
        ("s3://bucket/a/../b", "prefix"),
        ("s3://bucket/a//b", "prefix"),
        ("s3://bucket/a\nb", "prefix"),
    ] {
        let error = parse(text).unwrap_err().to_string();
        assert!(error.starts_with("BACKUP_S3_URL: "), "{text:?}: {error}");
        assert!(error.contains(reason), "{text:?}: {error}");
        assert!(
            !error.contains("hunter2") && !error.contains("AKIA"),
            "{error}"
        );
    }
}

#[test]
fn debug_output_holds_no_credential() {
    let settings = Settings {
        location: "s3://school-backups/db".parse().unwrap(),
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        region: "us-east-1".to_owned(),
        credentials: Credentials {
            access_key_id: dsn::Secret::new("AKIAEXAMPLEKEYID".to_owned()),
            secret_access_key: dsn::Secret::new("wJalrXUtnFEMI/K7MDENG".to_owned()),
            session_token: Some(dsn::Secret::new("FwoGZXIvYXdzEJr".to_owned())),
        },
    };
    let remote = Remote::new(&settings, Duration::from_secs(5)).unwrap();
    for printed in [format!("{settings:?}"), format!("{remote:?}")] {
        for secret in ["AKIAEXAMPLEKEYID", "wJalrXUtnFEMI", "FwoGZXIvYXdzEJr"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
    let not_http = Settings {
        endpoint: Some("ftp://127.0.0.1".to_owned()),
        ..settings
    };
    assert!(matches!(
        Remote::new(&not_http, Duration::from_secs(5)),
        Err(Error::Endpoint)
    ));
}
