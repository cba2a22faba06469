//! The compressor an artifact streams through: [`ParallelGzip`] or zstd, both on
//! every core, both hashing what they write.

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

/// A `Write` that compresses into a file with the configured codec.
pub(crate) enum Compressor {
    Gzip(ParallelGzip<File>),
    Zstd {
        encoder: zstd::stream::write::Encoder<'static, HashingWriter<File>>,
        uncompressed_bytes: u64,
    },
}

impl Compressor {
    pub(crate) fn new(file: File, compression: Compression) -> io::Result<Compressor> {
        Ok(match compression.codec {
            Codec::Gzip => Compressor::Gzip(ParallelGzip::new(file, compression.level)),
            Codec::Zstd => {
                let level = i32::try_from(compression.level).unwrap_or(3);
                let mut encoder =
                    zstd::stream::write::Encoder::new(HashingWriter::new(file), level)?;
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                encoder.multithread(u32::try_from(cores).unwrap_or(1))?;
                encoder.include_checksum(true)?;
                Compressor::Zstd {
                    encoder,
                    uncompressed_bytes: 0,
                }
            }
        })
    }

    /// Ends the stream and hands back the file with what was written.
    pub(crate) fn finish(self) -> io::Result<Finished<File>> {
        match self {
            Compressor::Gzip(gzip) => gzip.finish(),
            Compressor::Zstd {
                encoder,
                uncompressed_bytes,
            } => {
                let hashing = encoder.finish()?;
                Ok(hashing.into_finished(uncompressed_bytes))
            }
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
