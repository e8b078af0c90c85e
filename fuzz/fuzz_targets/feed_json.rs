//! Fuzz target `feed_json`: see fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let (_, target) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == "feed_json")
        .expect("a target of the harness");
    target(bytes);
});
