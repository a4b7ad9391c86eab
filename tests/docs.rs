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

/// The hunks of a unified diff: for each, the file it changes, the line its header names, and
/// the lines it expects to find there (context and removed lines, in order).
fn hunks(diff: &str) -> Vec<(String, usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut file = String::new();
    for (n, line) in diff.lines().enumerate() {
        if let Some(path) = line.strip_prefix("+++ b/") {
            file = path.to_string();
        } else if line.starts_with("@@") {
            out.push((file.clone(), n + 1, Vec::new()));
        } else if let Some((_, _, expected)) = out.last_mut() {
            if let Some(kept) = line.strip_prefix(' ').or_else(|| line.strip_prefix('-')) {
                if !line.starts_with("---") {
                    expected.push(kept.to_string());
                }
            } else if line.is_empty() {
                expected.push(String::new());
            }
        }
    }
    out
}

#[test]
fn the_measurement_patch_still_finds_the_lines_it_changes() {
    // Goal: `git apply docs/ablation.patch` keeps working as the code moves on, so the speed
    // figures it gave can be measured again. Method: each hunk's context and removed lines must
    // appear, one after another, in the file it names.
    let diff =
        std::fs::read_to_string(root().join("docs/ablation.patch")).expect("the patch reads");
    let hunks = hunks(&diff);
    assert!(hunks.len() >= 3, "the patch has {} hunks", hunks.len());
    let mut lost = Vec::new();
    for (file, at, expected) in &hunks {
        let text = std::fs::read_to_string(root().join(file)).expect("a patched file reads");
        let lines: Vec<&str> = text.lines().collect();
        let found = lines
            .windows(expected.len().max(1))
            .any(|w| w.iter().zip(expected).all(|(a, b)| a == b));
        if !found {
            lost.push(format!("docs/ablation.patch:{at} ({file})"));
        }
    }
    assert!(lost.is_empty(), "hunks whose lines are gone: {lost:?}");
}

#[test]
fn the_hunk_reader_keeps_context_and_removed_lines_in_order() {
    let diff = "--- a/x.rs\n+++ b/x.rs\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n";
    assert_eq!(
        hunks(diff),
        vec![(
            "x.rs".to_string(),
            3,
            vec!["a".to_string(), "b".to_string(), "d".to_string()]
        )]
    );
}
