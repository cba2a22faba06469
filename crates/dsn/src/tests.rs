//! Unit tests: parsing, precedence, `*_FILE`, redaction and pgpass rendering.

use proptest::prelude::*;

use crate::{Dsn, Environment, Error, ParseError, Secret, SslMode, resolve};

const DATABASE_URLS: &[&str] = &[
    "SESSION_DATABASE_URL",
    "BACKUP_DATABASE_URL",
    "DATABASE_URL",
];

#[track_caller]
fn check(input: &str, expected_debug: &str) {
    let dsn = Dsn::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"));
    assert_eq!(format!("{dsn:?}"), expected_debug, "{input}");
}

#[track_caller]
fn check_error(input: &str, expected: ParseError) {
    assert_eq!(Dsn::parse(input).unwrap_err(), expected, "{input}");
}

#[test]
fn url_with_every_part() {
    check(
        "postgresql://app%40corp:p%3Aa%40s%25s%5C%20word@db.internal:6543/app%20db?sslmode=require&application_name=backup",
        r#"Dsn { host: Some("db.internal"), port: Some(6543), user: Some("app@corp"), password: Some(***), dbname: Some("app db"), parameters: [("sslmode", "require"), ("application_name", "backup")], ignored: [] }"#,
    );
}

#[test]
fn url_short_scheme_and_defaults() {
    check(
        "postgres://localhost",
        r#"Dsn { host: Some("localhost"), port: None, user: None, password: None, dbname: None, parameters: [], ignored: [] }"#,
    );
    check(
        "postgres:///app",
        r#"Dsn { host: None, port: None, user: None, password: None, dbname: Some("app"), parameters: [], ignored: [] }"#,
    );
}

#[test]
fn url_ipv6_host() {
    check(
        "postgresql://u@[::1]:5433/db",
        r#"Dsn { host: Some("::1"), port: Some(5433), user: Some("u"), password: None, dbname: Some("db"), parameters: [], ignored: [] }"#,
    );
    check(
        "postgresql://[2001:db8::7]/db",
        r#"Dsn { host: Some("2001:db8::7"), port: None, user: None, password: None, dbname: Some("db"), parameters: [], ignored: [] }"#,
    );
}

#[test]
fn url_unix_socket_host_in_query_and_encoded() {
    check(
        "postgresql:///db?host=/var/run/postgresql&user=backup",
        r#"Dsn { host: Some("/var/run/postgresql"), port: None, user: Some("backup"), password: None, dbname: Some("db"), parameters: [], ignored: [] }"#,
    );
    check(
        "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
        r#"Dsn { host: Some("/var/run/postgresql"), port: None, user: None, password: None, dbname: Some("db"), parameters: [], ignored: [] }"#,
    );
}

#[test]
fn url_password_with_unencoded_at_sign() {
    // Not valid RFC 3986, but common in hand-written DSNs: the last `@` ends the user info.
    check(
        "postgresql://u:p@ss@host/db",
        r#"Dsn { host: Some("host"), port: None, user: Some("u"), password: Some(***), dbname: Some("db"), parameters: [], ignored: [] }"#,
    );
}

#[test]
fn jdbc_url_with_credentials_in_query() {
    check(
        "jdbc:postgresql://keycloak-db:5432/keycloak?user=kc&password=s%26cret&ssl=true&currentSchema=kc&ApplicationName=kc",
        r#"Dsn { host: Some("keycloak-db"), port: Some(5432), user: Some("kc"), password: Some(***), dbname: Some("keycloak"), parameters: [("application_name", "kc"), ("sslmode", "require")], ignored: ["`currentSchema`"] }"#,
    );
}

#[test]
fn key_value_with_quotes_and_escapes() {
    check(
        r"host=db port = 5432 dbname='my db' user=u password='it\'s a \\ secret' sslmode=verify-full",
        r#"Dsn { host: Some("db"), port: Some(5432), user: Some("u"), password: Some(***), dbname: Some("my db"), parameters: [("sslmode", "verify-full")], ignored: [] }"#,
    );
}

#[test]
fn malformed_inputs_name_the_problem() {
    check_error("", ParseError::Empty);
    check_error("   \n", ParseError::Empty);
    check_error("mysql://u:p@h/db", ParseError::UnsupportedFormat);
    check_error("just some text", ParseError::UnsupportedFormat);
    check_error("postgres://h:99999/db", ParseError::InvalidPort);
    check_error("postgres://h:0/db", ParseError::InvalidPort);
    check_error("postgres://h:abc/db", ParseError::InvalidPort);
    check_error(
        "postgres://u:p%zz@h/db",
        ParseError::InvalidPercentEncoding { field: "password" },
    );
    check_error(
        "postgres://u:p%ff@h/db",
        ParseError::InvalidPercentEncoding { field: "password" },
    );
    check_error("postgres://a,b/db", ParseError::MultipleHosts);
    check_error("postgres://[::1/db", ParseError::UnterminatedIpv6);
    check_error(
        "postgres://h/db?sslmod=require",
        ParseError::UnsupportedParameter {
            name: "`sslmod`".to_owned(),
        },
    );
    check_error(
        "postgres://h/db?sslmode=require&sslmode=disable",
        ParseError::DuplicateParameter {
            name: "`sslmode`".to_owned(),
        },
    );
    check_error("postgres://h/db?sslmode=requir", ParseError::InvalidSslMode);
    check_error("host=h sslmode=VERIFY-FULL", ParseError::InvalidSslMode);
    check_error("host=h password", ParseError::MissingEquals);
    check_error("host=h password='abc", ParseError::UnterminatedQuote);
    check_error(
        "postgres://u:p%0Aw@h/db",
        ParseError::ControlCharacter { field: "password" },
    );
    check_error(
        &"x".repeat(20_000),
        ParseError::TooLong { limit: 16 * 1024 },
    );
}

#[test]
fn ssl_mode_defaults_to_prefer_as_in_libpq() {
    let mode = |text: &str| Dsn::parse(text).unwrap().ssl_mode();
    assert_eq!(mode("postgres://h/db"), SslMode::Prefer);
    assert_eq!(
        mode("postgres://h/db?sslmode=verify-full"),
        SslMode::VerifyFull
    );
    assert_eq!(mode("host=h sslmode=verify-ca"), SslMode::VerifyCa);
    assert_eq!(mode("jdbc:postgresql://h/db?ssl=true"), SslMode::Require);
    assert_eq!(
        Dsn::parse("postgres://h/db?sslrootcert=/etc/ca.pem")
            .unwrap()
            .parameter("sslrootcert"),
        Some("/etc/ca.pem")
    );
}

#[cfg(feature = "tokio-postgres")]
#[test]
fn tokio_postgres_insists_on_tls_from_require_upwards_but_never_on_a_socket() {
    use tokio_postgres::config::SslMode as Client;
    let client_mode = |text: &str| {
        Dsn::parse(text)
            .unwrap()
            .to_tokio_postgres()
            .map(|config| config.get_ssl_mode())
    };
    assert_eq!(
        client_mode("postgres://h/db?sslmode=disable"),
        Ok(Client::Disable)
    );
    assert_eq!(client_mode("postgres://h/db"), Ok(Client::Prefer));
    for mode in ["require", "verify-ca", "verify-full"] {
        let dsn = format!("postgres://h/db?sslmode={mode}&sslrootcert=/ca.pem");
        assert_eq!(client_mode(&dsn), Ok(Client::Require), "{mode}");
    }
    assert_eq!(
        client_mode("host=/run/postgresql sslmode=require"),
        Ok(Client::Disable)
    );
    let allow = Dsn::parse("postgres://h/db?sslmode=allow")
        .unwrap()
        .to_tokio_postgres()
        .unwrap_err();
    insta::assert_snapshot!(allow, @"sslmode=allow is not supported here; use prefer, require, verify-ca or verify-full");
    let client_cert = Dsn::parse("postgres://h/db?sslcert=/c.pem")
        .unwrap()
        .to_tokio_postgres()
        .unwrap_err();
    insta::assert_snapshot!(client_cert, @"unsupported parameter `sslcert`");
}

#[test]
fn unsupported_parameter_hides_names_that_look_like_secrets() {
    let error = Dsn::parse("host=h hunter2:secret=x").unwrap_err();
    assert_eq!(error.to_string(), "unsupported parameter (name not shown)");
}

#[test]
fn display_redacts_password() {
    let dsn = Dsn::parse("postgresql://u:topsecret@[::1]:5432/d%20b?sslmode=require").unwrap();
    assert_eq!(
        dsn.to_string(),
        "postgresql://u:***@[::1]:5432/d%20b?sslmode=require"
    );
}

#[test]
fn libpq_env_has_everything_but_the_password() {
    let dsn =
        Dsn::parse("postgresql://u:topsecret@h:5432/db?sslmode=require&connect_timeout=5").unwrap();
    insta::assert_snapshot!(format!("{:?}", dsn.libpq_env()), @r#"[("PGHOST", "h"), ("PGPORT", "5432"), ("PGUSER", "u"), ("PGDATABASE", "db"), ("PGSSLMODE", "require"), ("PGCONNECT_TIMEOUT", "5")]"#);
}

#[test]
fn pgpass_line_escapes_colons_and_backslashes() {
    let dsn = Dsn::parse("postgresql://us%3Aer:p%3Aa%40s%25s%5C%20word@[::1]/db").unwrap();
    insta::assert_snapshot!(dsn.pgpass_line().unwrap(), @r"\:\:1:*:db:us\:er:p\:a@s%s\\ word");
}

#[test]
fn pgpass_line_uses_wildcards_for_open_fields_and_sockets() {
    let dsn = Dsn::parse("host=/var/run/postgresql password=pw").unwrap();
    insta::assert_snapshot!(dsn.pgpass_line().unwrap(), @"*:*:*:*:pw");
    assert_eq!(Dsn::parse("host=h user=u").unwrap().pgpass_line(), None);
}

#[test]
fn pgpass_file_is_private_and_removed_on_drop() {
    use std::os::unix::fs::PermissionsExt as _;
    let dsn = Dsn::parse("postgresql://u:pw@h:5432/db").unwrap();
    let pgpass = dsn.write_pgpass().unwrap().unwrap();
    let path = pgpass.path().to_owned();
    let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((file_mode, dir_mode), (0o600, 0o700));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "h:5432:db:u:pw\n");
    drop(pgpass);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[test]
fn precedence_session_then_backup_then_database_url() {
    let env = Environment::from_pairs([
        ("SESSION_DATABASE_URL", ""),
        ("BACKUP_DATABASE_URL", "postgres://b/db"),
        ("DATABASE_URL", "postgres://d/db"),
    ]);
    let resolved = resolve(&env, DATABASE_URLS).unwrap().unwrap();
    assert_eq!(resolved.variable, "BACKUP_DATABASE_URL");
    assert_eq!(resolved.dsn.host(), Some("b"));
    assert!(
        resolve(&Environment::from_pairs([]), DATABASE_URLS)
            .unwrap()
            .is_none()
    );
}

#[test]
fn file_variant_counts_under_the_base_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsn");
    std::fs::write(&path, "postgres://u:pw@s/db\n").unwrap();
    let path = path.to_str().unwrap();
    let env = Environment::from_pairs([
        ("SESSION_DATABASE_URL_FILE", path),
        ("DATABASE_URL", "postgres://d/db"),
    ]);
    let resolved = resolve(&env, DATABASE_URLS).unwrap().unwrap();
    assert_eq!(resolved.variable, "SESSION_DATABASE_URL");
    assert_eq!(resolved.dsn.to_string(), "postgresql://u:***@s/db");
}

#[test]
fn a_secret_file_saved_with_crlf_reads_as_its_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("password");
    std::fs::write(&path, "hunter2\r\n").unwrap();
    let env = Environment::from_pairs([("KC_DB_PASSWORD_FILE", path.to_str().unwrap())]);
    let secret = env.secret("KC_DB_PASSWORD").unwrap().unwrap();
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn both_name_and_file_is_an_error() {
    let env = Environment::from_pairs([
        ("DATABASE_URL", "postgres://d/db"),
        ("DATABASE_URL_FILE", "/x"),
    ]);
    let error = resolve(&env, DATABASE_URLS).unwrap_err();
    insta::assert_snapshot!(error, @"both DATABASE_URL and DATABASE_URL_FILE are set; set only one of them");
}

#[test]
fn unreadable_empty_or_huge_secret_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().unwrap();
    let error_for = |path: &std::path::Path| {
        let env = Environment::from_pairs([("DATABASE_URL_FILE", path.to_str().unwrap())]);
        resolve(&env, DATABASE_URLS)
            .unwrap_err()
            .to_string()
            .replace(scratch, "$SCRATCH")
    };
    insta::assert_snapshot!(error_for(&dir.path().join("missing")), @"DATABASE_URL_FILE: cannot read $SCRATCH/missing: No such file or directory (os error 2)");
    insta::assert_snapshot!(error_for(dir.path()), @"DATABASE_URL_FILE: cannot read $SCRATCH: Is a directory (os error 21)");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    insta::assert_snapshot!(error_for(&empty), @"DATABASE_URL_FILE: $SCRATCH/empty is empty");
    let bom = dir.path().join("bom");
    std::fs::write(&bom, "\u{feff}postgres://u:pw@h/db\n").unwrap();
    insta::assert_snapshot!(error_for(&bom), @"DATABASE_URL_FILE: $SCRATCH/bom starts with a byte-order mark; save it without one");
    let two_lines = dir.path().join("two-lines");
    std::fs::write(
        &two_lines,
        "postgres://u:pw@h/db\npostgres://u:other@h/db\n",
    )
    .unwrap();
    insta::assert_snapshot!(error_for(&two_lines), @"DATABASE_URL_FILE: $SCRATCH/two-lines holds more than one line; a secret is one line");

    let huge = dir.path().join("huge");
    std::fs::write(&huge, vec![b'x'; 100_000]).unwrap();
    let env = Environment::from_pairs([("DATABASE_URL_FILE", huge.to_str().unwrap())]);
    assert!(matches!(
        resolve(&env, DATABASE_URLS),
        Err(Error::SecretFileTooLarge { .. })
    ));
}

#[test]
fn invalid_dsn_error_names_the_variable_not_the_value() {
    let env = Environment::from_pairs([("DATABASE_URL", "postgres://u:hunter2@h:70000/db")]);
    let error = resolve(&env, DATABASE_URLS).unwrap_err();
    insta::assert_snapshot!(error, @"DATABASE_URL is not a valid PostgreSQL connection string: the port is not a number from 1 to 65535");
    assert!(!format!("{error:?}").contains("hunter2"));
}

#[test]
fn fill_credentials_only_fills_gaps() {
    let mut dsn = Dsn::parse("jdbc:postgresql://kc/keycloak").unwrap();
    dsn.fill_credentials(Some("kc"), Some(crate::Secret::new("pw".to_owned())));
    assert_eq!(dsn.to_string(), "postgresql://kc:***@kc/keycloak");
    let mut dsn = Dsn::parse("jdbc:postgresql://kc/keycloak?user=own").unwrap();
    dsn.fill_credentials(Some("other"), None);
    assert_eq!(dsn.user(), Some("own"));
    assert!(!dsn.has_password());
}

fn unescape_pgpass_password(line: &str) -> String {
    // The password is the fifth field: skip four unescaped colons.
    let mut fields = 0;
    let mut chars = line.trim_end_matches('\n').chars();
    let mut password = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().unwrap();
                if fields == 4 {
                    password.push(escaped);
                }
            }
            ':' if fields < 4 => fields += 1,
            c if fields == 4 => password.push(c),
            _ => {}
        }
    }
    password
}

proptest! {
    #[test]
    fn any_password_round_trips_through_url_and_pgpass(password in "[ -~\u{a0}-\u{ff}]{1,40}") {
        let url = format!("postgresql://user@host:5432/db?password={}", crate::parse::encode(&password));
        let dsn = Dsn::parse(&url).unwrap();
        prop_assert_eq!(unescape_pgpass_password(&dsn.pgpass_line().unwrap()), password);
    }

    #[test]
    fn no_password_survives_debug_display_or_errors(password in "[!-~]{8,40}") {
        let encoded = crate::parse::encode(&password);
        for text in [
            format!("postgresql://user:{encoded}@host:5432/db"),
            format!("postgresql://user:{encoded}@host:5432/db?sslmode=bogus&x=1"),
            format!("postgresql://user:{encoded}@host:99999/db"),
            format!("jdbc:postgresql://host/db?password={encoded}&user=u"),
            format!("host=host password={encoded} user=u"),
        ] {
            let shown = match Dsn::parse(&text) {
                Ok(dsn) => format!("{dsn} {dsn:?} {:?}", dsn.libpq_env()),
                Err(error) => format!("{error} {error:?}"),
            };
            prop_assert!(!shown.contains(&password), "{} leaked in {}", password, shown);
        }
    }

    #[test]
    fn the_first_set_variable_wins(set in proptest::collection::vec(proptest::option::of(any::<bool>()), 3)) {
        // None: unset; Some(false): set but empty; Some(true): set.
        let values: Vec<(&str, String)> = DATABASE_URLS
            .iter()
            .zip(&set)
            .filter_map(|(name, state)| {
                let value = if (*state)? { format!("postgres://{}/db", name.to_lowercase()) } else { String::new() };
                Some((*name, value))
            })
            .collect();
        let env = Environment::from_pairs(values.iter().map(|(name, value)| (*name, value.as_str())));
        let expected = DATABASE_URLS.iter().zip(&set).find(|(_, state)| **state == Some(true)).map(|(name, _)| *name);
        let resolved = resolve(&env, DATABASE_URLS).unwrap();
        prop_assert_eq!(resolved.as_ref().map(|resolved| resolved.variable), expected);
        if let Some(resolved) = resolved {
            let expected_host = resolved.variable.to_lowercase();
            prop_assert_eq!(resolved.dsn.host(), Some(expected_host.as_str()));
        }
    }
}

/// Found while writing the `dsn` fuzz target's filled-in case: a password filled in
/// after parsing (from `KC_DB_PASSWORD`) could carry a line break into the pgpass
/// file.
#[test]
fn a_filled_in_password_with_a_line_break_never_reaches_a_pgpass_file() {
    let mut dsn = Dsn::parse("postgres://kc@db/keycloak").unwrap();
    dsn.fill_credentials(None, Some(Secret::new("pw\n*:*:*:*:other".to_owned())));
    assert!(matches!(
        dsn.write_pgpass(),
        Err(Error::PgpassControlCharacter)
    ));
    // Found by the fuzz target: a line break at the very end, which the first
    // version of the check trimmed along with the line's own.
    let mut dsn = Dsn::parse("postgres://kc@db/keycloak").unwrap();
    dsn.fill_credentials(None, Some(Secret::new("pw\n".to_owned())));
    assert!(matches!(
        dsn.write_pgpass(),
        Err(Error::PgpassControlCharacter)
    ));
}
