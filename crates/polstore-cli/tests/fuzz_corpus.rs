//! Replays the checked-in fuzz corpora (`fuzz/corpus/TARGET/`) through the fuzz targets'
//! bodies, so that every input that ever found a problem, and every seed, runs in CI.

use std::fs;
use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} makes it panic",
            path.display()
        );
        count += 1;
    }
    assert!(
        count >= 5,
        "{target}: only {count} inputs in {}",
        directory.display()
    );
}

#[test]
fn manifest_corpus() {
    replay("manifest", polstore::fuzzing::manifest);
}

#[test]
fn signify_corpus() {
    replay("signify", polstore::fuzzing::signify);
}

#[test]
fn tar_corpus() {
    replay("tar", polstore::fuzzing::tar);
}

#[test]
fn records_corpus() {
    replay("records", polstore::fuzzing::records);
}
