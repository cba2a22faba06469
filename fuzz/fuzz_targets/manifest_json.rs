//! `manifest.json`, `offsite.json` and `drill.json` from any bytes: no panic, unknown
//! fields refused, and what parses writes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifest::{Drill, Manifest, Offsite};
use serde::{Serialize, de::DeserializeOwned};

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    match which % 3 {
        0 => round_trip::<Manifest>(bytes),
        1 => round_trip::<Offsite>(bytes),
        _ => round_trip::<Drill>(bytes),
    }
});

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<T>(bytes) else {
        return;
    };
    let written = serde_json::to_vec(&parsed).expect("a parsed file serializes");
    let again: T = serde_json::from_slice(&written).expect("what we write, we read");
    assert_eq!(parsed, again);
    // Every key of the input is one the type knows: unknown fields are refused.
    let input: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
    let output: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_keys_known(&input, &output);
}

fn assert_keys_known(input: &serde_json::Value, output: &serde_json::Value) {
    if let (Some(input), Some(output)) = (input.as_object(), output.as_object()) {
        for (key, value) in input {
            let known = output.get(key).unwrap_or_else(|| panic!("unknown key {key:?} accepted"));
            assert_keys_known(value, known);
        }
    }
}
