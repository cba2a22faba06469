//! `ParallelGzip` produces one standard gzip stream equal to its input.

use std::io::{Read as _, Write as _};

use dump_runner::{BLOCK_SIZE, ParallelGzip};
use proptest::prelude::*;

#[track_caller]
fn check(input: &[u8], level: u32) {
    let mut gzip = ParallelGzip::new(Vec::new(), level);
    // Uneven write sizes exercise block boundaries.
    for chunk in input.chunks(7919) {
        gzip.write_all(chunk).unwrap();
    }
    let finished = gzip.finish().unwrap();
    assert_eq!(finished.uncompressed_bytes, input.len() as u64);
    assert_eq!(finished.bytes, finished.sink.len() as u64);
    // A single-member decoder: the output is one gzip stream, not concatenated members.
    let mut decoder = flate2::read::GzDecoder::new(finished.sink.as_slice());
    let mut output = Vec::new();
    decoder.read_to_end(&mut output).unwrap();
    assert!(
        output == input,
        "round trip differs for {} bytes at level {level}",
        input.len()
    );
    let mut rest = Vec::new();
    decoder.into_inner().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no trailing bytes after the gzip member");
}

fn text(len: usize) -> Vec<u8> {
    b"1\tPhotosynthesis turns light into sugar, as **chlorophyll** absorbs it.\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[test]
fn empty_input() {
    check(b"", 6);
}

#[test]
fn exact_and_odd_block_multiples() {
    for len in [
        1,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        5 * BLOCK_SIZE + 17,
    ] {
        check(&text(len), 6);
    }
}

#[test]
fn ratio_matches_serial_gzip_on_text() {
    let input = text(4 * 1024 * 1024);
    let mut gzip = ParallelGzip::new(Vec::new(), 6);
    gzip.write_all(&input).unwrap();
    let parallel = gzip.finish().unwrap().bytes;
    let mut serial = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    serial.write_all(&input).unwrap();
    let serial = serial.finish().unwrap().len() as u64;
    // Carrying the dictionary across blocks keeps the ratio within a few percent.
    assert!(
        parallel * 100 <= serial * 105,
        "parallel {parallel} vs serial {serial}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn round_trips_any_input(
        input in proptest::collection::vec(any::<u8>(), 0..(3 * BLOCK_SIZE)),
        level in 1u32..=9,
    ) {
        check(&input, level);
    }
}
