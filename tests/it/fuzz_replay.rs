//! Replays every committed fuzz input, seeds (`fuzz/corpus/<target>/`) and regressions
//! (`fuzz/regressions/<target>/`), through the same `dflockd::fuzzing` harness the fuzz target
//! calls, so that ordinary `cargo test` on stable keeps the harnesses compiling and every crash
//! once found stays fixed.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// A harness: panics if the input breaks a property.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness.
const TARGETS: [(&str, Harness); 6] = [
    ("frame", dflockd::fuzzing::frame),
    ("request", dflockd::fuzzing::request),
    ("engine", dflockd::fuzzing::engine),
    ("session", dflockd::fuzzing::session),
    ("subject", dflockd::fuzzing::subject),
    ("timer", dflockd::fuzzing::timer),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly inside `dir` (none if it does not exist), sorted for a stable order.
fn inputs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file() && !is_hidden(path) && !is_campaign_input(path))
        .collect();
    files.sort();
    files
}

/// Whether `path` is an input a local fuzzing campaign added to the corpus: libFuzzer names them by
/// the SHA-1 of their content (40 hex digits). Committed inputs have descriptive names, so a test
/// run replays the same inputs on every checkout, whatever campaigns ran there.
fn is_campaign_input(path: &Path) -> bool {
    path.file_name().is_some_and(|name| {
        let name = name.to_string_lossy();
        name.len() == 40
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}

/// Runs `harness` on every input of `target` under `kind` (corpus or regressions); returns the
/// number of inputs and the files whose run panicked, with the panic message.
fn replay(kind: &str, target: &str, harness: Harness) -> (usize, Vec<String>) {
    let files = inputs_in(&fuzz_dir().join(kind).join(target));
    let mut failures = Vec::new();
    for file in &files {
        let data = fs::read(file).expect("readable fuzz input");
        if let Err(panic) = panic::catch_unwind(|| harness(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    (files.len(), failures)
}

#[test]
fn every_committed_fuzz_input_passes_its_harness() {
    let mut failures = Vec::new();
    for (target, harness) in TARGETS {
        let (seeds, mut failed) = replay("corpus", target, harness);
        assert!(seeds > 0, "no seed inputs for the {target} target");
        failures.append(&mut failed);
        let (_, mut failed) = replay("regressions", target, harness);
        failures.append(&mut failed);
    }
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_input_directory_names_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("readable directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                name.starts_with('.') || TARGETS.iter().any(|(target, _)| *target == name),
                "fuzz/{kind}/{name} is not a fuzz target"
            );
        }
    }
}

#[test]
fn campaign_inputs_are_told_from_committed_ones_by_name() {
    let corpus = fuzz_dir().join("corpus").join("engine");
    assert!(is_campaign_input(
        &corpus.join("003c0f3d0d82bb588b65609e84cb323a26dbe24b")
    ));
    assert!(!is_campaign_input(&corpus.join("lock-fifo-three-clients")));
    assert!(!is_campaign_input(
        &corpus.join("003c0f3d0d82bb588b65609e84cb323a26dbe24")
    ));
    assert!(!is_campaign_input(
        &corpus.join("003C0F3D0D82BB588B65609E84CB323A26DBE24B")
    ));
}
