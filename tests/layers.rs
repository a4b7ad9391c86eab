//! The layering rule of docs/design.md ("Layers"), enforced: every `crate::NAME` reference in a
//! file under src/ must name the file's own top-level module or one that `LAYERS` lets it import.
//! It reads the sources as text (std only, no dependency on the crate), skipping comments, doc
//! comments and string literals. It does not follow `super::super::..` paths out of a module.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of the crate and the modules it may import. It must stay acyclic.
#[rustfmt::skip]
const LAYERS: &[(&str, &[&str])] = &[
    ("lock", &[]),
    ("alloc", &[]),
    ("units", &[]),
    ("dist", &["units"]),
    ("framework", &["lock"]),
    ("gateway", &["framework", "lock"]),
    ("scenario", &["units", "dist"]),
    ("system", &["framework", "scenario", "lock", "units", "dist"]),
    ("topology", &["system", "framework", "gateway", "scenario", "lock", "units", "dist"]),
    ("metrics", &["framework", "system", "scenario", "lock", "units", "dist"]),
    ("load", &["framework", "system", "metrics", "scenario", "lock", "units", "dist"]),
    ("sim", &["topology", "system", "framework", "gateway", "scenario", "load", "metrics", "lock",
              "units", "dist"]),
    ("report", &["metrics", "system", "framework", "scenario", "units", "dist", "lock"]),
    ("serve", &["topology", "system", "framework", "gateway", "scenario", "lock"]),
    ("tunnel", &["sim", "report", "metrics", "system", "scenario", "topology", "framework", "lock",
                 "units", "dist"]),
    // The example systems, written against the public API only.
    ("services", &["framework", "system"]),
    ("cli", &["tunnel", "services", "serve", "report", "scenario", "system", "units", "lock", "sim"]),
];

fn allowed<'a>(table: &[(&str, &'a [&'a str])], module: &str) -> Option<&'a [&'a str]> {
    table.iter().find(|(m, _)| *m == module).map(|(_, d)| *d)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// How many bytes of `b` from `i` on satisfy `p`.
fn run(b: &[u8], i: usize, p: impl Fn(u8) -> bool) -> usize {
    b.iter().skip(i).take_while(|&&c| p(c)).count()
}

/// Where `needle` next starts in `b` at or after `i`, or the end of `b`.
fn find(b: &[u8], i: usize, needle: &[u8]) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    let at = rest.windows(needle.len()).position(|w| w == needle);
    at.map_or(b.len(), |n| i + n)
}

/// `src` with comments and string and char literals blanked out, byte for byte (newlines kept).
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let raw = usize::from(rest[0] == b'b'); // `br"..."` as well as `r"..."`
        let hashes = run(rest, raw + 1, |c| c == b'#');
        let end = if rest.starts_with(b"//") {
            find(b, i, b"\n")
        } else if rest.starts_with(b"/*") {
            find(b, i + 2, b"*/") + 2 // nested block comments are not handled
        } else if (i == 0 || !is_ident(b[i - 1]))
            && rest.get(raw) == Some(&b'r')
            && rest.get(raw + 1 + hashes) == Some(&b'"')
        {
            let close = [b"\"".as_slice(), &b"#".repeat(hashes)].concat();
            find(b, i + raw + hashes + 2, &close) + close.len()
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if let Some(n) = src.get(i..).and_then(char_literal_len) {
            i + n
        } else {
            i += 1;
            continue;
        };
        let end = end.min(b.len());
        for c in out[i..end].iter_mut().filter(|c| **c != b'\n') {
            *c = b' ';
        }
        i = end;
    }
    out
}

/// The length of the char literal `s` starts with, if any (`'a` alone is a lifetime or label).
fn char_literal_len(s: &str) -> Option<usize> {
    let s = s.strip_prefix('\'')?;
    match s.chars().next()? {
        '\\' => s.get(2..)?.find('\'').map(|n| n + 4),
        c => Some(c.len_utf8() + 2).filter(|_| s[c.len_utf8()..].starts_with('\'')),
    }
}

/// Every top-level module that a file's text refers to as `crate::NAME`, as (line, NAME), sorted.
fn references(src: &str) -> Vec<(usize, String)> {
    let code = code_only(src);
    let name_at = |i: usize| {
        let name = String::from_utf8_lossy(&code[i..i + run(&code, i, is_ident)]);
        let line = 1 + code[..i].iter().filter(|&&c| c == b'\n').count();
        (line, name.into_owned())
    };
    let mut refs = Vec::new();
    for i in (0..code.len()).filter(|&i| code[i..].starts_with(b"crate::")) {
        if i > 0 && (is_ident(code[i - 1]) || code[i - 1] == b'$') {
            continue; // `http_crate::x`, `$crate::x`
        }
        if code.get(i + 7) != Some(&b'{') {
            refs.push(name_at(i + 7));
            continue;
        }
        // A group, `crate::{a, b::{c, d}}`, names the modules at depth 1: `a` and `b`.
        let (mut depth, mut want) = (0, true);
        for (k, &c) in code.iter().enumerate().skip(i + 7) {
            match c {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' => want = depth == 1,
                _ if c.is_ascii_whitespace() || depth > 1 || !want => {}
                _ => {
                    refs.push(name_at(k));
                    want = false;
                }
            }
            if depth == 0 {
                break;
            }
        }
    }
    refs.retain(|(_, name)| !name.is_empty() && name != "self");
    refs.sort();
    refs.dedup();
    refs
}

/// Every .rs file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("reading a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A cycle in `table`, written `a -> b -> a`, if there is one: a depth-first search.
fn find_cycle(table: &[(&str, &[&str])]) -> Option<String> {
    fn visit<'a>(
        table: &[(&'a str, &'a [&'a str])],
        m: &'a str,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(start) = path.iter().position(|p| *p == m) {
            return Some(format!("{} -> {m}", path[start..].join(" -> ")));
        }
        if !seen.insert(m) {
            return None; // explored already, from another start
        }
        path.push(m);
        let deps = allowed(table, m).unwrap_or(&[]);
        let cycle = deps.iter().find_map(|d| visit(table, d, path, seen));
        path.pop();
        cycle
    }
    let mut seen = BTreeSet::new();
    let mut visit_from = |m| visit(table, m, &mut Vec::new(), &mut seen);
    table.iter().find_map(|(m, _)| visit_from(m))
}

#[test]
fn references_are_read_from_code_only() {
    // Goal: find grouped uses and expression paths, never comments or strings; method: small texts.
    let found = |src: &str| format!("{:?}", references(src));
    let grouped = "use crate::{\n    framework::{Client, Server},\n    lock::lock,\n    units,\n};";
    let want = r#"[(2, "framework"), (3, "lock"), (4, "units")]"#;
    assert_eq!(found(grouped), want);
    let doc = "//! Built by [`crate::sim::World`].\n/// See crate::sim.\nfn f() {} // crate::sim";
    assert_eq!(found(doc), "[]");
    let expr = "let x =\n  crate::metrics::Recorder::new(\"crate::sim\", '\"', http_crate::Get);";
    assert_eq!(found(expr), r#"[(2, "metrics")]"#);
    let raw = r##"let s = br#"{"a": "crate::sim"}"#; /* crate::sim */ use crate::dist;"##;
    assert_eq!(found(raw), r#"[(1, "dist")]"#);
}

#[test]
fn no_module_imports_a_layer_above_it() {
    // Goal: no forbidden edge between top-level modules; method: scan src/**/*.rs for `crate::NAME`.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(!files.is_empty(), "no .rs files under {}", src.display());
    let (mut problems, mut unlayered) = (Vec::new(), BTreeSet::new());
    for path in &files {
        let rel = path.strip_prefix(&src).expect("a path under src/");
        let rel = rel.to_string_lossy().replace('\\', "/");
        let first = rel.split('/').next().unwrap_or_default();
        let module = first.strip_suffix(".rs").unwrap_or(first);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(may) = allowed(LAYERS, module) else {
            if unlayered.insert(module.to_string()) {
                problems.push(format!("module {module} has no layer: add it to the table"));
            }
            continue;
        };
        let may_list = Some(may.join(", ")).filter(|l| !l.is_empty());
        let may_list = may_list.unwrap_or_else(|| "(nothing)".to_string());
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        for (line, to) in references(&text) {
            if to != module && !may.contains(&to.as_str()) {
                let why = format!("{module} may import: {may_list}");
                problems.push(format!("src/{rel}:{line}: {module} -> {to} ({why})"));
            }
        }
    }
    let n = problems.len();
    assert!(n == 0, "{n} layering problem(s):\n{}", problems.join("\n"));
}

#[test]
fn the_layer_table_has_no_cycle() {
    // Goal: LAYERS never allows a cycle nor names an unknown module; method: DFS, tried on a planted cycle.
    let planted: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["a"])];
    assert_eq!(find_cycle(planted).as_deref(), Some("a -> b -> c -> a"));
    assert_eq!(find_cycle(LAYERS), None, "the layer table has a cycle");
    let mut modules = BTreeSet::new();
    for (module, deps) in LAYERS {
        assert!(modules.insert(*module), "{module} is twice in the table");
        for dep in *deps {
            assert!(
                allowed(LAYERS, dep).is_some(),
                "{module} -> {dep}: no layer"
            );
        }
    }
}
