//! The fuzz targets' seed corpus and every input that ever crashed one
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`), run through the same
//! harness as the fuzzer, on the stable toolchain: a crash found once stays
//! fixed.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_runs_to_the_end() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (name, target) in harness::TARGETS {
        let corpus = harness::corpus(&fuzz.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed");
        for file in corpus
            .iter()
            .chain(&harness::corpus(&fuzz.join("regressions").join(name)))
        {
            let bytes = std::fs::read(file).unwrap();
            target(&bytes);
            ran += 1;
        }
    }
    assert!(ran >= harness::TARGETS.len());
}
