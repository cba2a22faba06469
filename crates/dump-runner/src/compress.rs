//! The compressor an artifact streams through: [`ParallelGzip`] or zstd, both on
//! every core, then optionally age encryption, with the file's bytes hashed as
//! they are written.

use std::fs::File;
use std::io::{self, Write};

use manifest::Codec;

use crate::gzip::{Finished, HashingWriter, ParallelGzip};

/// A codec and its level (gzip 1–9, zstd 1–19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Which.
    pub codec: Codec,
    /// How hard.
    pub level: u32,
}

impl Compression {
    /// gzip at `level` (1–9).
    pub fn gzip(level: u32) -> Compression {
        Compression {
            codec: Codec::Gzip,
            level,
        }
    }

    /// zstd at `level` (1–19).
    pub fn zstd(level: u32) -> Compression {
        Compression {
            codec: Codec::Zstd,
            level,
        }
    }
}

/// The file an artifact's compressed bytes go to: as they are, or encrypted to
/// age recipients on their way (hashed below the encryption, so that the
/// manifest's sha256 describes the file as stored).
pub(crate) enum Sealed {
    Plain(File),
    Age(encryption::Encrypting<HashingWriter<File>>),
}

impl Write for Sealed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(file) => file.write(data),
            Sealed::Age(encrypting) => encrypting.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(file) => file.flush(),
            Sealed::Age(encrypting) => encrypting.flush(),
        }
    }
}

/// A `Write` that compresses (and, with recipients, encrypts) into a file.
pub(crate) enum Compressor {
    Gzip(ParallelGzip<Sealed>),
    Zstd {
        // Boxed: the encoder's state is large next to the gzip handle.
        encoder: Box<zstd::stream::write::Encoder<'static, HashingWriter<Sealed>>>,
        uncompressed_bytes: u64,
    },
}

impl Compressor {
    pub(crate) fn new(
        file: File,
        compression: Compression,
        recipients: Option<&encryption::Recipients>,
    ) -> io::Result<Compressor> {
        let sink = match recipients {
            None => Sealed::Plain(file),
            Some(recipients) => Sealed::Age(recipients.encrypt(HashingWriter::new(file))?),
        };
        Ok(match compression.codec {
            Codec::Gzip => Compressor::Gzip(ParallelGzip::new(sink, compression.level)),
            Codec::Zstd => {
                let level = i32::try_from(compression.level).unwrap_or(3);
                let mut encoder =
                    zstd::stream::write::Encoder::new(HashingWriter::new(sink), level)?;
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                encoder.multithread(u32::try_from(cores).unwrap_or(1))?;
                encoder.include_checksum(true)?;
                Compressor::Zstd {
                    encoder: Box::new(encoder),
                    uncompressed_bytes: 0,
                }
            }
        })
    }

    /// Ends the stream(s) and hands back the file with what was written to it.
    pub(crate) fn finish(self) -> io::Result<Finished<File>> {
        let compressed = match self {
            Compressor::Gzip(gzip) => gzip.finish()?,
            Compressor::Zstd {
                encoder,
                uncompressed_bytes,
            } => encoder.finish()?.into_finished(uncompressed_bytes),
        };
        match compressed.sink {
            Sealed::Plain(file) => Ok(Finished {
                sink: file,
                bytes: compressed.bytes,
                uncompressed_bytes: compressed.uncompressed_bytes,
                sha256: compressed.sha256,
            }),
            // The compressor's digest was of the plaintext stream; the file's is
            // the one below the encryption.
            Sealed::Age(encrypting) => Ok(encrypting
                .finish()?
                .into_finished(compressed.uncompressed_bytes)),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(gzip) => gzip.write(data),
            Compressor::Zstd {
                encoder,
                uncompressed_bytes,
            } => {
                let written = encoder.write(data)?;
                *uncompressed_bytes += written as u64;
                Ok(written)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(gzip) => gzip.flush(),
            Compressor::Zstd { encoder, .. } => encoder.flush(),
        }
    }
}
