//! Fuzz target: any bytes as a scenario file, through the parser and validator that `check` and
//! `run` use (`windtunnel::scenario::parse_str`), with and without the example systems
//! registered. Bad input must come back as a `ScenarioError` whose diagnostics render; a panic,
//! a hang or a runaway allocation is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use windtunnel::scenario::{self, NoBuiltins};

thread_local! {
    /// The example systems, built once per fuzzing thread rather than per input.
    static CATALOG: windtunnel::system::Catalog = windtunnel::services::catalog();
}

fuzz_target!(|data: &[u8]| {
    // `load_file` refuses larger files before parsing; the fuzzer need not explore them.
    if data.len() as u64 > scenario::MAX_FILE_BYTES {
        return;
    }
    // Files are read as UTF-8 text (`load_file`); other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = scenario::parse_str(text, "fuzz.toml", &NoBuiltins) {
        let _ = e.to_string(); // diagnostics point into the text: lines and columns must hold
    }
    CATALOG.with(|catalog| {
        if let Err(e) = scenario::parse_str(text, "fuzz.toml", catalog) {
            let _ = e.to_string();
        }
    });
});
