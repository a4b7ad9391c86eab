//! The Rust in the docs cannot rot: every ```rust block of README.md and docs/*.md must be an
//! excerpt, word for word (whitespace aside), of a source file that `cargo test` compiles
//! (src/, examples/, tests/). A snippet that drifts from the code fails here. The same holds
//! for docs/ablation.patch, the measurement patch the README's speed figures come from: every
//! hunk must still find the lines it changes.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text with every run of whitespace made one space.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The ```rust blocks of a Markdown text, with the line each starts on.
fn rust_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rust") => current = Some((i + 1, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_rust_snippet_in_the_docs_is_compiled_code() {
    // Goal: docs show code that builds. Method: find each snippet, whitespace-normalised, in
    // the compiled sources; list every snippet that is not there.
    let mut files = Vec::new();
    for dir in ["src", "examples", "tests"] {
        sources(&root().join(dir), &mut files);
    }
    let code: Vec<String> = files
        .iter()
        .map(|f| squeeze(&std::fs::read_to_string(f).expect("a source file reads")))
        .collect();
    let mut docs = vec![root().join("README.md")];
    let entries = std::fs::read_dir(root().join("docs")).expect("docs/ reads");
    docs.extend(
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut snippets = 0;
    let mut stale = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("a doc reads");
        for (line, block) in rust_blocks(&text) {
            snippets += 1;
            if !code.iter().any(|c| c.contains(&squeeze(&block))) {
                stale.push(format!("{}:{line}", doc.display()));
            }
        }
    }
    assert!(
        snippets >= 5,
        "the docs have {snippets} Rust snippets; expected the walkthrough's"
    );
    assert!(
        stale.is_empty(),
        "snippets not found in any compiled source: {stale:?}"
    );
}

#[test]
fn the_snippet_reader_finds_blocks_and_ignores_other_languages() {
    let md = "text\n```rust\nlet a = 1;\n```\n```toml\nx = 1\n```\n```rust,no_run\nfoo();\n```\n";
    let blocks = rust_blocks(md);
    assert_eq!(
        blocks,
        vec![(2, "let a = 1;\n".to_string()), (8, "foo();\n".to_string())]
    );
    assert_eq!(squeeze(" a \n  b\tc "), "a b c");
}

/// One hunk of a unified diff: the file it changes, the line of the patch its header is on,
/// and the lines it expects to find (context and removed lines, in order).
#[derive(Debug, PartialEq)]
struct Hunk {
    file: String,
    at: usize,
    expected: Vec<String>,
}

/// The hunks of a unified diff, each read by the line counts of its header (`@@ -a,b +c,d @@`),
/// as `git apply` reads them; `Err` says where a hunk's lines do not match its header.
fn hunks(diff: &str) -> Result<Vec<Hunk>, String> {
    fn count(range: Option<&str>) -> Option<usize> {
        let range = range?;
        match range.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => Some(1),
        }
    }
    let mut out = Vec::new();
    let mut file = String::new();
    let mut lines = diff.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(path) = line.strip_prefix("+++ b/") {
            file = path.to_string();
            continue;
        }
        let Some(header) = line.strip_prefix("@@ ") else {
            continue;
        };
        let mut ranges = header.split_whitespace();
        let old = count(ranges.next().and_then(|r| r.strip_prefix('-')));
        let new = count(ranges.next().and_then(|r| r.strip_prefix('+')));
        let (Some(mut old), Some(mut new)) = (old, new) else {
            return Err(format!("line {}: a hunk header without its counts", n + 1));
        };
        let mut expected = Vec::new();
        while old > 0 || new > 0 {
            let Some((m, body)) = lines.next() else {
                return Err(format!("line {}: the patch ends inside a hunk", n + 1));
            };
            let (kind, text) = body.split_at(body.len().min(1));
            match kind {
                " " | "" if old > 0 && new > 0 => {
                    expected.push(text.to_string());
                    (old, new) = (old - 1, new - 1);
                }
                "-" if old > 0 => {
                    expected.push(text.to_string());
                    old -= 1;
                }
                "+" if new > 0 => new -= 1,
                "\\" => {}
                _ => return Err(format!("line {}: does not fit its hunk's header", m + 1)),
            }
        }
        out.push(Hunk {
            file: file.clone(),
            at: n + 1,
            expected,
        });
    }
    Ok(out)
}

#[test]
fn the_measurement_patch_still_finds_the_lines_it_changes() {
    // Goal: `git apply docs/ablation.patch` keeps working as the code moves on, so the speed
    // figures it gave can be measured again. Method: each hunk must match the counts of its
    // header, and its context and removed lines must appear, one after another, in the file it
    // names. (Whether the patched code still builds is not checked here.)
    let diff =
        std::fs::read_to_string(root().join("docs/ablation.patch")).expect("the patch reads");
    let hunks = hunks(&diff).unwrap_or_else(|e| panic!("docs/ablation.patch: {e}"));
    assert!(hunks.len() >= 3, "the patch has {} hunks", hunks.len());
    let mut lost = Vec::new();
    for hunk in &hunks {
        let text = std::fs::read_to_string(root().join(&hunk.file)).expect("a patched file reads");
        let lines: Vec<&str> = text.lines().collect();
        let found = lines
            .windows(hunk.expected.len().max(1))
            .any(|w| w.iter().zip(&hunk.expected).all(|(a, b)| a == b));
        if !found {
            lost.push(format!("docs/ablation.patch:{} ({})", hunk.at, hunk.file));
        }
    }
    assert!(lost.is_empty(), "hunks whose lines are gone: {lost:?}");
}

#[test]
fn the_hunk_reader_follows_the_counts_of_each_header() {
    let diff = "--- a/x.rs\n+++ b/x.rs\n@@ -1,4 +1,4 @@\n a\n---b\n+++c\n d\n\n";
    assert_eq!(
        hunks(diff),
        Ok(vec![Hunk {
            file: "x.rs".to_string(),
            at: 3,
            expected: vec!["a".into(), "--b".into(), "d".into(), "".into()],
        }])
    );
    // A header whose counts the lines do not fit, as `git apply` would refuse it.
    assert!(hunks("+++ b/x.rs\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n").is_err());
    assert!(hunks("+++ b/x.rs\n@@ -1,2 +1,2 @@\n a\n+c\n+d\n").is_err());
}
