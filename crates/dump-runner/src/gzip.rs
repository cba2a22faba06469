//! One standard gzip stream, compressed in parallel blocks (the way pigz does it).
//!
//! ```text
//!  write() ──► 128 KiB blocks ──► rayon pool: raw deflate of each block, with the
//!  (caller's        │               previous block's last 32 KiB as dictionary,
//!   thread)         │               ended by a sync flush; CRC-32 of the block
//!                   ▼                              │
//!        bounded queue of pending blocks, in order ◄┘
//!                   │
//!                   ▼
//!  writer thread: gzip header, blocks in order, final empty block, trailer
//!                 (combined CRC-32, size); sha256 and byte count of what it writes
//! ```
//!
//! A sync flush ends each block on a byte boundary without ending the deflate
//! stream, so the blocks concatenate into one valid stream; priming each block with
//! its predecessor's tail keeps the ratio within a fraction of a percent of serial
//! gzip. The caller never compresses: `write` only copies into a block and hands
//! full blocks to the pool, blocking only when too many blocks are in flight, which
//! bounds memory whatever the input size.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest as _, Sha256};

/// Uncompressed bytes per block.
pub const BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: the dictionary carried from one block to the next.
const DICTIONARY_SIZE: usize = 32 * 1024;
/// A final, empty, fixed-Huffman deflate block: ends the stream after sync flushes.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];
/// The gzip header every stream starts with: magic, deflate, no flags, no mtime,
/// no extra flags, OS unknown.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];

/// What was written, once the stream is finished.
#[derive(Debug)]
pub struct Finished<W> {
    /// The sink, handed back (e.g. to fsync and rename it).
    pub sink: W,
    /// Bytes written to the sink (the `.gz` size).
    pub bytes: u64,
    /// Bytes that went in.
    pub uncompressed_bytes: u64,
    /// Hex sha256 of the bytes written to the sink.
    pub sha256: String,
}

/// A `Write` that gzips into `W` using every core.
pub struct ParallelGzip<W: Write + Send + 'static> {
    level: Compression,
    block: Vec<u8>,
    previous: Option<Arc<Vec<u8>>>,
    queue: Option<SyncSender<Receiver<CompressedBlock>>>,
    writer: Option<JoinHandle<io::Result<Finished<W>>>>,
    uncompressed_bytes: u64,
}

struct CompressedBlock {
    data: Vec<u8>,
    crc: crc32fast::Hasher,
    uncompressed_len: u64,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    /// Starts a stream into `sink` at gzip `level` (1–9).
    pub fn new(sink: W, level: u32) -> ParallelGzip<W> {
        let in_flight = 4 * rayon_pool().current_num_threads();
        let (queue, pending) = sync_channel(in_flight);
        let writer = std::thread::Builder::new()
            .name("gzip-writer".to_owned())
            .spawn(move || write_in_order(sink, pending))
            .expect("the OS can start a thread");
        ParallelGzip {
            level: Compression::new(level),
            block: Vec::with_capacity(BLOCK_SIZE),
            previous: None,
            queue: Some(queue),
            writer: Some(writer),
            uncompressed_bytes: 0,
        }
    }

    /// Bytes accepted so far.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.uncompressed_bytes
    }

    /// Compresses what is buffered, ends the stream and returns the sink.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        if !self.block.is_empty() {
            self.dispatch_block()?;
        }
        drop(self.queue.take());
        let finished = self.join_writer()?;
        debug_assert_eq!(finished.uncompressed_bytes, self.uncompressed_bytes);
        Ok(finished)
    }

    fn dispatch_block(&mut self) -> io::Result<()> {
        let block = Arc::new(std::mem::replace(
            &mut self.block,
            Vec::with_capacity(BLOCK_SIZE),
        ));
        let dictionary = self.previous.replace(Arc::clone(&block));
        let (result, receiver) = sync_channel(1);
        let level = self.level;
        rayon_pool().spawn(move || {
            let _ = result.send(compress_block(&block, dictionary.as_deref(), level));
        });
        let queue = self.queue.as_ref().expect("not finished");
        if queue.send(receiver).is_err() {
            // The writer stopped early: its error says why.
            drop(self.queue.take());
            return Err(match self.join_writer() {
                Err(error) => error,
                Ok(_) => io::Error::other("gzip writer stopped"),
            });
        }
        Ok(())
    }

    fn join_writer(&mut self) -> io::Result<Finished<W>> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already stopped"))?;
        writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("gzip writer panicked")))
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let taken = room.min(data.len());
        self.block.extend_from_slice(&data[..taken]);
        self.uncompressed_bytes += taken as u64;
        if self.block.len() == BLOCK_SIZE {
            self.dispatch_block()?;
        }
        Ok(taken)
    }

    /// Blocks are flushed as they fill; a partial block waits for more data or
    /// [`finish`](ParallelGzip::finish).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// One pool for all streams of the process, sized to the machine.
fn rayon_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("gzip-{index}"))
            .build()
            .expect("the OS can start threads")
    })
}

fn compress_block(block: &[u8], previous: Option<&Vec<u8>>, level: Compression) -> CompressedBlock {
    let mut compress = Compress::new(level, false);
    if let Some(previous) = previous {
        let tail = &previous[previous.len().saturating_sub(DICTIONARY_SIZE)..];
        compress
            .set_dictionary(tail)
            .expect("a raw deflate stream accepts a dictionary");
    }
    // Deflate's worst case is a few bytes per 16 KiB over the input size.
    let mut data = Vec::with_capacity(block.len() + block.len() / 256 + 64);
    loop {
        let consumed = usize::try_from(compress.total_in()).expect("block fits in memory");
        let status = compress
            .compress_vec(&block[consumed..], &mut data, FlushCompress::Sync)
            .expect("deflate of in-memory data cannot fail");
        let done = compress.total_in() as usize == block.len() && data.len() < data.capacity();
        if done || status == Status::StreamEnd {
            break;
        }
        data.reserve(data.capacity().max(4096));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    CompressedBlock {
        data,
        crc,
        uncompressed_len: block.len() as u64,
    }
}

fn write_in_order<W: Write>(
    sink: W,
    pending: Receiver<Receiver<CompressedBlock>>,
) -> io::Result<Finished<W>> {
    let mut out = HashingWriter::new(sink);
    out.write_all(&GZIP_HEADER)?;
    let mut crc = crc32fast::Hasher::new();
    let mut uncompressed_bytes = 0u64;
    for block in pending {
        let block = block
            .recv()
            .map_err(|_| io::Error::other("a compression task died"))?;
        out.write_all(&block.data)?;
        crc.combine(&block.crc);
        uncompressed_bytes += block.uncompressed_len;
    }
    out.write_all(&FINAL_EMPTY_BLOCK)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    // ISIZE is the input size modulo 2^32, by the gzip format's definition.
    out.write_all(&(uncompressed_bytes as u32).to_le_bytes())?;
    out.flush()?;
    Ok(out.into_finished(uncompressed_bytes))
}

/// Counts and hashes every byte written through it.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) bytes: u64,
    pub(crate) hasher: Sha256,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            bytes: 0,
            hasher: Sha256::new(),
        }
    }

    /// The sink back, with what was written through it and `uncompressed_bytes`.
    pub(crate) fn into_finished(self, uncompressed_bytes: u64) -> Finished<W> {
        let sha256 = self
            .hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Finished {
            sink: self.inner,
            bytes: self.bytes,
            uncompressed_bytes,
            sha256,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.bytes += written as u64;
        self.hasher.update(&data[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
