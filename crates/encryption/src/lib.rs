//! Encryption at rest for backup artifacts, in the age format.
//!
//! An artifact is compressed first, then encrypted as it streams, so no plaintext
//! byte reaches the disk: the compressor writes into [`Recipients::encrypt`]'s
//! writer, which writes age's 64 KiB authenticated chunks into the file. The
//! result is a standard age file: `age -d -i key.txt supabase_db.sql.gz.age | gunzip`
//! gives the plain dump, with no tool of ours.
//!
//! Why age: one small, audited format with no options to get wrong (X25519 or
//! SSH recipients, ChaCha20-Poly1305 chunks, a header MAC), a standard
//! command-line tool operators already have, and `age`, the reference Rust
//! implementation, as the crate. A backup host only ever holds *recipients*
//! (public keys): a stolen backup host cannot read its own backups. The identity
//! (private key) is needed only to restore, drill or verify to the end
//! ([`Identities`]), and is read from a file, never from the environment.
//!
//! - [`Recipients::parse`] reads `BACKUP_AGE_RECIPIENTS` (whitespace-separated) or
//!   a recipients file as `age -R` reads it (one per line, `#` comments); an entry
//!   that is not an `age1…`, `ssh-ed25519` or `ssh-rsa` key is an [`Error`] naming
//!   the variable and the entry's position, not its text.
//! - [`check_header`] reads an age header without any key: what `verify` checks
//!   when no identity is configured.
//! - [`Identities::decrypt`] turns an age file back into the compressed stream.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The file name suffix of an encrypted artifact.
pub const SUFFIX: &str = ".age";

/// What can go wrong reading keys or decrypting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An entry is not a recipient we can encrypt to.
    #[error(
        "{source_name}: entry {position} is not an age recipient (age1…) or an ssh-ed25519/ssh-rsa public key"
    )]
    InvalidRecipient {
        /// The variable or file it came from.
        source_name: String,
        /// 1-based position of the entry.
        position: usize,
    },
    /// The variable or file holds no recipient at all.
    #[error("{source_name}: no recipient")]
    NoRecipients {
        /// The variable or file.
        source_name: String,
    },
    /// A recipients or identity file could not be read.
    #[error("{variable}: cannot read {}: {source}", path.display())]
    ReadFile {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The identity file holds no usable identity.
    #[error("{variable}: {} holds no age identity (AGE-SECRET-KEY-1…)", path.display())]
    InvalidIdentity {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The data does not start with an age header.
    #[error("not an age file, or its header is damaged")]
    NotAge,
    /// The header is fine but none of our identities opens it.
    #[error("no configured identity can decrypt this file")]
    NoMatchingIdentity,
    /// A passphrase-encrypted file: we only ever write to recipients.
    #[error("the file is passphrase-encrypted; only recipient-encrypted files are read")]
    Passphrase,
    /// Reading the header failed.
    #[error("cannot read the age header: {0}")]
    Read(#[source] io::Error),
}

/// The public keys every artifact is encrypted to.
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send + Sync>>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Recipients")
            .field("count", &self.keys.len())
            .finish()
    }
}

impl Recipients {
    /// Parses recipients separated by whitespace (the variable's form) or one per
    /// line with `#` comments (the file's form: an `ssh-…` line holds spaces, so a
    /// file is read line by line). `source_name` names the variable or file in
    /// errors.
    pub fn parse(text: &str, source_name: &str, one_per_line: bool) -> Result<Recipients, Error> {
        let entries: Vec<&str> = if one_per_line {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .collect()
        } else {
            split_recipients(text)
        };
        let keys = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                parse_recipient(entry).ok_or_else(|| Error::InvalidRecipient {
                    source_name: source_name.to_owned(),
                    position: index + 1,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if keys.is_empty() {
            return Err(Error::NoRecipients {
                source_name: source_name.to_owned(),
            });
        }
        Ok(Recipients { keys })
    }

    /// Reads a recipients file (`BACKUP_AGE_RECIPIENTS_FILE`).
    pub fn from_file(path: &Path, variable: &'static str) -> Result<Recipients, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            variable,
            path: path.to_owned(),
            source,
        })?;
        Recipients::parse(&text, variable, true)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: parsing refuses an empty set.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Starts an age stream into `sink`: the header is written now, each 64 KiB
    /// of plaintext as it fills, the last chunk by [`Encrypting::finish`].
    pub fn encrypt<W: Write>(&self, sink: W) -> io::Result<Encrypting<W>> {
        let encryptor = age::Encryptor::with_recipients(
            self.keys
                .iter()
                .map(|key| key.as_ref() as &dyn age::Recipient),
        )
        .map_err(io::Error::other)?;
        Ok(Encrypting {
            stream: encryptor.wrap_output(sink)?,
        })
    }
}

/// The variable's form: whitespace separates entries, except that an
/// `ssh-TYPE KEY` entry takes the key after its type, and the words after that key
/// which are not themselves the start of a key (`age1…`, `ssh-…`) are its comment,
/// as in an `authorized_keys` line.
fn split_recipients(text: &str) -> Vec<&str> {
    let starts_a_key = |word: &str| word.starts_with("age1") || word.starts_with("ssh-");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut entries = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        if word.starts_with("ssh-") && index + 1 < words.len() {
            let start = word.as_ptr() as usize - text.as_ptr() as usize;
            let key = words[index + 1];
            let end = key.as_ptr() as usize - text.as_ptr() as usize + key.len();
            entries.push(&text[start..end]);
            index += 2;
            while index < words.len() && !starts_a_key(words[index]) {
                index += 1;
            }
        } else {
            entries.push(word);
            index += 1;
        }
    }
    entries
}

fn parse_recipient(entry: &str) -> Option<Box<dyn age::Recipient + Send + Sync>> {
    if entry.starts_with("age1") {
        return age::x25519::Recipient::from_str(entry)
            .ok()
            .map(|key| Box::new(key) as Box<dyn age::Recipient + Send + Sync>);
    }
    if entry.starts_with("ssh-ed25519 ") || entry.starts_with("ssh-rsa ") {
        return age::ssh::Recipient::from_str(entry)
            .ok()
            .map(|key| Box::new(key) as Box<dyn age::Recipient + Send + Sync>);
    }
    None
}

/// A `Write` that encrypts into `W`; [`finish`](Encrypting::finish) must be called,
/// or the file ends without its last chunk and does not decrypt.
pub struct Encrypting<W: Write> {
    stream: age::stream::StreamWriter<W>,
}

impl<W: Write> Encrypting<W> {
    /// Writes the last chunk and hands the sink back.
    pub fn finish(self) -> io::Result<W> {
        self.stream.finish()
    }
}

impl<W: Write> Write for Encrypting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.stream.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The private keys that open artifacts: `BACKUP_AGE_IDENTITY_FILE`.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Identities")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Identities {
    /// Reads an identity file as `age -i` does (`AGE-SECRET-KEY-1…` lines, `#`
    /// comments).
    pub fn from_file(path: &Path, variable: &'static str) -> Result<Identities, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            variable,
            path: path.to_owned(),
            source,
        })?;
        let invalid = || Error::InvalidIdentity {
            variable,
            path: path.to_owned(),
        };
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                age::x25519::Identity::from_str(line)
                    .map(|key| Box::new(key) as Box<dyn age::Identity + Send + Sync>)
                    .map_err(|_| invalid())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if keys.is_empty() {
            return Err(invalid());
        }
        Ok(Identities { keys })
    }

    /// A reader of the plaintext of the age file `encrypted`. The header is
    /// checked now; each chunk's authentication tag as it is read, so a flipped or
    /// missing byte is a read error, never wrong plaintext.
    pub fn decrypt<'a, R: Read + Send + 'a>(
        &self,
        encrypted: R,
    ) -> Result<Box<dyn Read + Send + 'a>, Error> {
        let decryptor = open(encrypted)?;
        let stream = decryptor
            .decrypt(
                self.keys
                    .iter()
                    .map(|key| key.as_ref() as &dyn age::Identity),
            )
            .map_err(|error| match error {
                age::DecryptError::NoMatchingKeys => Error::NoMatchingIdentity,
                age::DecryptError::Io(error) => Error::Read(error),
                _ => Error::NotAge,
            })?;
        Ok(Box::new(stream))
    }
}

/// Reads and checks the age header of `encrypted` (its recipient stanzas and
/// MAC shape) without a key, leaving the reader just after it.
pub fn check_header<R: Read>(encrypted: R) -> Result<(), Error> {
    open(encrypted).map(drop)
}

fn open<R: Read>(encrypted: R) -> Result<age::Decryptor<R>, Error> {
    match age::Decryptor::new(encrypted) {
        Ok(decryptor) if decryptor.is_scrypt() => Err(Error::Passphrase),
        Ok(decryptor) => Ok(decryptor),
        Err(age::DecryptError::Io(error)) if error.kind() != io::ErrorKind::UnexpectedEof => {
            Err(Error::Read(error))
        }
        Err(_) => Err(Error::NotAge),
    }
}

#[cfg(test)]
mod tests;
