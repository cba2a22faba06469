//! The COPY row counter over any bytes cut at any points: no panic, and the counts
//! do not depend on how the stream was chunked.
#![no_main]

use dump_runner::CopyCounter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u16>, &[u8])| {
    let (cuts, dump) = input;
    let mut whole = CopyCounter::new();
    whole.feed(dump);
    let mut chunked = CopyCounter::new();
    let mut rest = dump;
    for cut in cuts {
        let (head, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        chunked.feed(head);
        rest = tail;
    }
    chunked.feed(rest);
    let whole = whole.finish();
    assert_eq!(whole, chunked.finish());
    let lines = dump.iter().filter(|byte| **byte == b'\n').count() as u64;
    assert!(whole.values().sum::<u64>() <= lines);
});
