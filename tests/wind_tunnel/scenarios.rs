//! Every shipped scenario runs at its own seed and every assertion in it holds.

use std::path::Path;

use windtunnel::scenario;
use windtunnel::services::Builtins;

use crate::support::run;

#[test]
fn every_shipped_scenario_passes_its_assertions_at_its_seed() {
    // Goal: the scenarios in scenarios/ are specifications that hold. Method: run each, and on
    // failure name the file and every failing assertion with what was observed.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the shipped scenarios, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        let s = scenario::load_file(f, &Builtins).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(f).expect("readable");
        assert!(
            text.starts_with('#'),
            "{} must open with a comment saying what it shows",
            f.display()
        );
        assert!(!s.assertions.is_empty(), "{} asserts nothing", f.display());
        let summary = run(&s);
        for a in summary.assertions.iter().filter(|a| !a.passed) {
            failures.push(format!(
                "{}: {} [{}, {}]",
                f.display(),
                a.verdict,
                a.scope,
                a.window
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "assertions failed:\n{}",
        failures.join("\n")
    );
}
