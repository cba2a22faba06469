//! Key parsing, round trips through real key pairs, and every way a file or key is refused.

use std::io::{Read as _, Write as _};

use super::*;

const SSH_ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHB+Y64KXzVG1YNRtwn8yIREA3g5Tqdq/rlGM3rGP77k test";

fn key_pair() -> (String, String) {
    use age::secrecy::ExposeSecret as _;
    let identity = age::x25519::Identity::generate();
    (
        identity.to_public().to_string(),
        identity.to_string().expose_secret().to_owned(),
    )
}

fn identity_file(secret: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# created: by a test\n{secret}").unwrap();
    file
}

fn encrypt(recipients: &Recipients, plaintext: &[u8]) -> Vec<u8> {
    let mut writer = recipients.encrypt(Vec::new()).unwrap();
    // Odd write sizes cross age's 64 KiB chunk boundaries.
    for piece in plaintext.chunks(10_007) {
        writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn round_trips_through_a_key_pair() {
    let (public, secret) = key_pair();
    let recipients = Recipients::parse(&public, "BACKUP_AGE_RECIPIENTS", false).unwrap();
    let plaintext: Vec<u8> = (0..300_000u32).map(|index| (index % 251) as u8).collect();
    let encrypted = encrypt(&recipients, &plaintext);
    assert!(encrypted.starts_with(b"age-encryption.org/v1\n"));
    assert!(
        !encrypted
            .windows(64)
            .any(|window| window == &plaintext[1000..1064]),
        "no plaintext run survives in the ciphertext"
    );
    let file = identity_file(&secret);
    let identities = Identities::from_file(file.path(), "BACKUP_AGE_IDENTITY_FILE").unwrap();
    let mut decrypted = Vec::new();
    identities
        .decrypt(encrypted.as_slice())
        .unwrap()
        .read_to_end(&mut decrypted)
        .unwrap();
    assert_eq!(decrypted, plaintext);
}

#[test]
fn several_recipients_each_open_the_file() {
    let (first_public, first_secret) = key_pair();
    let (second_public, second_secret) = key_pair();
    let recipients = Recipients::parse(
        &format!("  {first_public}\n\t{SSH_ED25519}  {second_public} "),
        "BACKUP_AGE_RECIPIENTS",
        false,
    )
    .unwrap();
    assert_eq!(recipients.len(), 3, "{recipients:?}");
    let encrypted = encrypt(&recipients, b"hello");
    for secret in [first_secret, second_secret] {
        let file = identity_file(&secret);
        let identities = Identities::from_file(file.path(), "BACKUP_AGE_IDENTITY_FILE").unwrap();
        let mut plain = String::new();
        identities
            .decrypt(encrypted.as_slice())
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello");
    }
}

#[test]
fn a_recipients_file_has_one_key_per_line_and_comments() {
    let (public, _) = key_pair();
    let text = format!("# the backup key\n{public}\n\n{SSH_ED25519}\n");
    let recipients = Recipients::parse(&text, "BACKUP_AGE_RECIPIENTS_FILE", true).unwrap();
    assert_eq!(recipients.len(), 2);
}

#[test]
fn a_bad_entry_is_named_by_position_never_echoed() {
    let (public, _) = key_pair();
    for (text, position) in [
        (format!("{public} age1notakey"), 2),
        ("AGE-SECRET-KEY-1QQQQ".to_owned(), 1),
        (format!("{public} ssh-ed25519 AAAAbroken"), 2),
        ("ssh-dss AAAAB3NzaC1kc3M".to_owned(), 1),
    ] {
        let error = Recipients::parse(&text, "BACKUP_AGE_RECIPIENTS", false).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, Error::InvalidRecipient { position: found, .. } if found == position),
            "{text}: {message}"
        );
        assert!(
            message.starts_with("BACKUP_AGE_RECIPIENTS: entry"),
            "{message}"
        );
        assert!(
            !message.contains("SECRET") && !message.contains("AAAA"),
            "{message}"
        );
    }
    for empty in ["", "  \n", "# only a comment"] {
        let error = Recipients::parse(empty, "BACKUP_AGE_RECIPIENTS_FILE", true).unwrap_err();
        assert!(matches!(error, Error::NoRecipients { .. }), "{error}");
    }
}

#[test]
fn a_stranger_identity_opens_nothing() {
    let (public, _) = key_pair();
    let (_, other_secret) = key_pair();
    let encrypted = encrypt(
        &Recipients::parse(&public, "BACKUP_AGE_RECIPIENTS", false).unwrap(),
        b"secret data",
    );
    let file = identity_file(&other_secret);
    let identities = Identities::from_file(file.path(), "BACKUP_AGE_IDENTITY_FILE").unwrap();
    assert!(matches!(
        identities.decrypt(encrypted.as_slice()),
        Err(Error::NoMatchingIdentity)
    ));
    check_header(encrypted.as_slice()).expect("the header is fine without any key");
}

#[test]
fn a_flipped_or_missing_byte_is_an_error_not_plaintext() {
    let (public, secret) = key_pair();
    let plaintext = vec![7u8; 200_000];
    let encrypted = encrypt(
        &Recipients::parse(&public, "BACKUP_AGE_RECIPIENTS", false).unwrap(),
        &plaintext,
    );
    let file = identity_file(&secret);
    let identities = Identities::from_file(file.path(), "BACKUP_AGE_IDENTITY_FILE").unwrap();
    let mut flipped = encrypted.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let truncated = &encrypted[..encrypted.len() - 100];
    for damaged in [flipped.as_slice(), truncated] {
        let mut sink = Vec::new();
        let result = identities.decrypt(damaged).unwrap().read_to_end(&mut sink);
        assert!(result.is_err(), "damage must be detected");
    }
}

#[test]
fn garbage_and_gzip_are_not_age() {
    for data in [
        &b""[..],
        b"\x1f\x8b\x08\x00",
        b"age-encryption.org/v1\n-> X25519 broken\n",
    ] {
        assert!(
            matches!(check_header(data), Err(Error::NotAge)),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn an_identity_file_must_hold_an_identity() {
    let (public, _) = key_pair();
    for text in ["", "# nothing\n", public.as_str()] {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let error = Identities::from_file(file.path(), "BACKUP_AGE_IDENTITY_FILE").unwrap_err();
        assert!(matches!(error, Error::InvalidIdentity { .. }), "{error}");
        assert!(!error.to_string().contains("age1"), "{error}");
    }
    let missing = Identities::from_file(
        Path::new("/nonexistent/key.txt"),
        "BACKUP_AGE_IDENTITY_FILE",
    )
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("BACKUP_AGE_IDENTITY_FILE: cannot read")
    );
}
