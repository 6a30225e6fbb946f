//! The code's own imports, drawn file by file: no cycles. A file that names another
//! (`use crate::a::b`, `crate::a::b::f(..)`, `super::x`) depends on it; a module naming
//! its own descendants (a `mod.rs` re-exporting or wiring its children) is how a module
//! is built, not a dependency, and is left out. Anything else that goes round in a circle
//! (metrics assembled in the file whose helper the components import back; sibling files
//! importing each other) fails here, with the circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module path of a file (`src/http/mod.rs` → `["http"]`, `src/lib.rs` → `[]`).
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The file of the deepest module `path` names, if any.
fn file_of(modules: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains_key(m))
}

/// Paths a file names: `crate::a::b::c` and `super::a` (resolved), with `use` groups
/// (`crate::a::{b, c::d}`) opened.
fn named_paths(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Comments and strings are not imports.
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for (start, prefix) in code
        .match_indices("crate::")
        .map(|(i, _)| (i, "crate"))
        .chain(code.match_indices("super::").map(|(i, _)| (i, "super")))
    {
        if start > 0 && (ident(bytes[start - 1]) || bytes[start - 1] == b':') {
            continue;
        }
        let mut base: Vec<String> = match prefix {
            "crate" => Vec::new(),
            // `super` of a mod.rs is its parent; of a leaf file, its directory's module.
            // The parent module, for a leaf file and a mod.rs alike.
            _ => me[..me.len().saturating_sub(1)].to_vec(),
        };
        let mut i = start + prefix.len() + 2;
        // Further `super::` steps.
        while code[i..].starts_with("super::") {
            base.pop();
            i += "super::".len();
        }
        let (head, group) = path_at(&code[i..]);
        let mut p = base.clone();
        p.extend(head);
        match group {
            // One level of `{...}` is opened; deeper groups name their first segment.
            Some(items) => {
                for item in items.split(',') {
                    let (inner, _) = path_at(item.trim());
                    let mut q = p.clone();
                    q.extend(inner);
                    out.push(q);
                }
            }
            None => out.push(p),
        }
    }
    out
}

/// The path at the start of `text` (`a::b::c`), and the body of a group that ends it
/// (`a::{b, c}`).
fn path_at(text: &str) -> (Vec<String>, Option<&str>) {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 && &rest[..end] != "self" {
            segments.push(rest[..end].to_owned());
        }
        rest = &rest[end..];
        let Some(next) = rest.strip_prefix("::") else {
            return (segments, None);
        };
        rest = next;
        if let Some(body) = rest.strip_prefix('{') {
            let mut depth = 1;
            for (i, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return (segments, Some(&body[..i]));
                        }
                    }
                    _ => {}
                }
            }
            return (segments, Some(body));
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// File-level dependencies of the library.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read");
        // Tests in a file may reach anywhere; they are not the module's design.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut to = BTreeSet::new();
        for path in named_paths(text, me) {
            if let Some(target) = file_of(&modules, &path) {
                // Itself, or its own descendants: how the module is built.
                if target.starts_with(me) {
                    continue;
                }
                to.insert(target);
            }
        }
        edges.insert(me.clone(), to);
    }
    edges
}

/// A cycle through the graph, if there is one.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&Vec<String>, Mark> = edges.keys().map(|k| (k, Mark::New)).collect();
    fn visit<'a>(
        n: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        mark: &mut BTreeMap<&'a Vec<String>, Mark>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Open);
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::Done) {
                Mark::Open => {
                    let from = stack.iter().position(|s| *s == m).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.join("::")).collect();
                    cycle.push(m.join("::"));
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, edges, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n, Mark::Done);
        None
    }
    for n in edges.keys() {
        if mark[n] == Mark::New {
            if let Some(c) = visit(n, edges, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_library_has_no_import_cycles() {
    let edges = graph();
    assert!(edges.len() > 50, "read the library's files");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("an import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let paths = named_paths(
        "use crate::x::{y, z::w};\nlet v = super::q::r(1);",
        &["m".into(), "n".into()],
    );
    assert!(paths.contains(&vec!["x".into(), "y".into()]), "{paths:?}");
    assert!(
        paths.contains(&vec!["x".into(), "z".into(), "w".into()]),
        "{paths:?}"
    );
    assert!(
        paths.contains(&vec!["m".into(), "q".into(), "r".into()]),
        "{paths:?}"
    );
}
