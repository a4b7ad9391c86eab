//! The baseline scenario as the benches run it: scenarios/baseline.toml with its load's rate and
//! the run's length replaced (shared by benches/twin.rs and benches/long_run.rs).

/// scenarios/baseline.toml with its load's rate and the run's length replaced; empty if the file
/// cannot be read (a run of it then fails with the scenario's own error).
pub fn baseline(rate: &str, duration: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/baseline.toml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            if line.starts_with("rate = ") {
                format!("rate = \"{rate}\"")
            } else if line.starts_with("duration = ") {
                format!("duration = \"{duration}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
