//! Connection strings (URL, JDBC, key=value) from any text: no panic, the password
//! never in `Display` or `Debug`, and the pgpass line a DSN renders is exactly one
//! line whose five fields, read back the way libpq reads them, are this DSN's host,
//! port, database, user and password: no input authenticates for another host or
//! user, or breaks out of its line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Option<String>, &str)| {
    let (filled_in, text) = input;
    let Ok(mut dsn) = dsn::Dsn::parse(text) else {
        return;
    };
    // A password filled in after parsing, as `KC_DB_PASSWORD` is: anything at all,
    // behind a marker no template or field of the output holds by chance.
    let marked = filled_in.map(|password| format!("\u{1f511}{password}"));
    let filled = !dsn.has_password() && marked.is_some();
    dsn.fill_credentials(None, marked.clone().map(dsn::Secret::new));
    let pgpass = match dsn.write_pgpass() {
        Ok(Some(pgpass)) => pgpass,
        Ok(None) => return,
        Err(dsn::Error::PgpassControlCharacter) => {
            assert!(filled, "a parsed DSN never holds a control character");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let written = std::fs::read_to_string(pgpass.path()).expect("the pgpass file reads");
    let line = written.strip_suffix('\n').expect("the line ends in a newline");
    assert!(!line.contains(['\n', '\r']), "one line: {written:?}");
    let fields = libpq_fields(line);
    assert_eq!(fields.len(), 5, "five fields: {written:?}");
    let expected_host = dsn
        .host()
        .filter(|host| !host.starts_with('/') && !host.starts_with('@'));
    let port = dsn.port().map(|port| port.to_string());
    let expected = [expected_host, port.as_deref(), dsn.dbname(), dsn.user()];
    for (field, expected) in fields.iter().zip(expected) {
        match expected {
            Some(value) => assert_eq!(field.as_str(), value, "{written:?}"),
            None => assert_eq!(field.as_str(), "*", "{written:?}"),
        }
    }
    let password = fields[4].as_str();
    assert!(!password.is_empty());
    if filled {
        assert_eq!(Some(password), marked.as_deref(), "{written:?}");
        // Redaction: the marker appears in no template, and in a public field only
        // if the text put it there.
        let public: Vec<String> = dsn.libpq_env().into_iter().map(|(_, value)| value).collect();
        if !public.iter().any(|value| value.contains('\u{1f511}')) {
            assert!(!dsn.to_string().contains('\u{1f511}'), "Display redacts");
            assert!(!format!("{dsn:?}").contains('\u{1f511}'), "Debug redacts");
        }
    }
});

/// A pgpass line split as libpq splits it: `:` separates, `\` escapes the next
/// character.
fn libpq_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => {
                if let Some(escaped) = characters.next() {
                    fields.last_mut().unwrap().push(escaped);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            other => fields.last_mut().unwrap().push(other),
        }
    }
    fields
}
