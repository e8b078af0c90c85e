//! Fuzz target `amount`: see fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let (_, target) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == "amount")
        .expect("a target of the harness");
    target(bytes);
});
