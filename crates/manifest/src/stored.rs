//! From an artifact as stored to its plain bytes: decrypted when its name ends in
//! `.age`, then decompressed by its codec. The one way back that `verify`,
//! `restore` and `drill` share, so that a file they accept is one they can read.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::Codec;

/// How an artifact is encrypted (`BACKUP_AGE_RECIPIENTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// An age file (`.age`) to one or more recipients.
    Age,
}

impl Encryption {
    /// The encryption of a file, by its name.
    pub fn of_file(file: &str) -> Option<Encryption> {
        file.ends_with(encryption::SUFFIX)
            .then_some(Encryption::Age)
    }
}

/// Why an artifact's plain stream cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file is encrypted and no identity is configured.
    #[error("the artifact is encrypted and BACKUP_AGE_IDENTITY_FILE is not set")]
    NoIdentity,
    /// The age layer could not be opened.
    #[error("cannot decrypt: {0}")]
    Decrypt(#[source] encryption::Error),
    /// The name has no codec we know.
    #[error("not a .gz or .zst file name")]
    UnknownCodec,
    /// The decompressor could not start.
    #[error("cannot decompress: {0}")]
    Decompress(#[source] std::io::Error),
}

/// The plain bytes of the artifact named `file`, read from `stored`: decrypted
/// with `identities` when the name ends in `.age`, then decompressed. Every read
/// checks as it goes (age's per-chunk tags, the codec's checksum), so damage is
/// a read error.
pub fn plain_reader<'a, R: Read + Send + 'a>(
    file: &str,
    stored: R,
    identities: Option<&encryption::Identities>,
) -> Result<Box<dyn Read + Send + 'a>, OpenError> {
    let codec = Codec::of_file(file).ok_or(OpenError::UnknownCodec)?;
    let compressed: Box<dyn Read + Send + 'a> = match Encryption::of_file(file) {
        None => Box::new(stored),
        Some(Encryption::Age) => identities
            .ok_or(OpenError::NoIdentity)?
            .decrypt(stored)
            .map_err(OpenError::Decrypt)?,
    };
    codec.decoder(compressed).map_err(OpenError::Decompress)
}
