//! Every shipped scenario runs at its own seed, every assertion in it holds, and so does every
//! invariant of the example services it runs; and a second run at that seed has the same event
//! log, event for event.

use std::path::Path;

use windtunnel::scenario;

use windtunnel::tunnel::Tunnel;

#[test]
fn every_shipped_scenario_passes_its_assertions_at_its_seed() {
    // Goal: the scenarios in scenarios/ (and their "off" twins in scenarios/off/, which assert
    // what goes wrong without a mechanism) are specifications that hold, and replay exactly.
    // Method: run each twice (the determinism check), and on failure name the file and every
    // failing assertion with what was observed, or the first event the two runs differ at.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = [root.clone(), root.join("off")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("scenarios/ and scenarios/off/ exist"))
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
        let s = scenario::load_file(f, &windtunnel::services::catalog())
            .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(f).expect("readable");
        assert!(
            text.starts_with('#'),
            "{} must open with a comment saying what it shows",
            f.display()
        );
        assert!(!s.assertions.is_empty(), "{} asserts nothing", f.display());
        let checked = Tunnel::scenario(s)
            .with_catalog(windtunnel::services::catalog())
            .seed_from_env(false)
            .check_determinism()
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if !checked.determinism.passed() {
            failures.push(format!("{}: {}", f.display(), checked.determinism));
        }
        let summary = checked.outcome.summary();
        let uses_examples = text.contains("builtin = \"store\"");
        if uses_examples && summary.invariants.is_empty() {
            failures.push(format!("{}: no invariants were checked", f.display()));
        }
        for i in summary.invariants.iter().filter(|i| !i.holds) {
            failures.push(format!(
                "{}: invariant {} broken: {}",
                f.display(),
                i.name,
                i.detail
            ));
        }
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
        "assertions failed, invariants broke or runs differed:\n{}",
        failures.join("\n")
    );
}
