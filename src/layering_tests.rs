//! The shape of the crate, read from its sources: each top-level module names only the
//! layers below it (`use crate::…` and `crate::…` paths), no source file is over 600 lines,
//! and no two files depend on each other (directly or round a longer cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may name. Layers: cli → web → study/jobs → db → domain;
/// `queue`, `engine`, `stats` and `domain` stand alone; `report` uses `stats` and `domain`;
/// `distill` uses `engine`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("queue", &[]),
    ("stats", &[]),
    ("engine", &[]),
    ("distill", &["engine"]),
    ("report", &["stats", "domain"]),
    ("db", &["domain", "queue"]),
    ("study", &["db", "domain", "report", "stats"]),
    (
        "jobs",
        &["study", "db", "domain", "queue", "engine", "distill"],
    ),
    (
        "web",
        &[
            "config", "study", "jobs", "db", "domain", "queue", "report", "distill",
        ],
    ),
    ("config", &[]),
    ("telemetry", &[]),
    ("startup", &["config", "db", "web"]),
];

/// Every `.rs` file under `src/`, by its path relative to `src/`.
fn sources() -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.insert(
                    path.strip_prefix(root).expect("under src").to_path_buf(),
                    text,
                );
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The code of a file without its comments (a path in a doc comment is no dependency),
/// and without its unit tests (`#[cfg(test)]` modules may reach anywhere).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
}

/// The paths a file names: `crate::a::b::c` as ["a", "b", "c"], and `super::x` resolved
/// against the file's own module.
fn named_paths(file: &Path, text: &str) -> Vec<Vec<String>> {
    let module: Vec<String> = {
        let mut parts: Vec<String> = file
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts
            .last()
            .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
        {
            parts.pop();
        }
        parts
    };
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for line in code_lines(text) {
        for prefix in ["crate::", "super::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at..];
                let token: String = rest.chars().take_while(|&c| ident(c) || c == ':').collect();
                let after = &rest[token.len()..];
                rest = &rest[prefix.len()..];
                if before.is_some_and(|c| ident(c) || c == ':') {
                    continue;
                }
                let mut path = if prefix == "super::" {
                    parent(&module)
                } else {
                    Vec::new()
                };
                for (i, seg) in token.split("::").filter(|s| !s.is_empty()).enumerate() {
                    match seg {
                        "crate" if i == 0 => {}
                        "super" => path = parent(&path_or(&module, &path, i)),
                        _ => path.push(seg.to_string()),
                    }
                }
                if token.ends_with("::") && after.starts_with('{') {
                    // `use super::{a, b::C}` names a and b.
                    let list = after[1..].split('}').next().unwrap_or("");
                    for item in list.split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() && first != "self" && first.chars().all(ident) {
                            let mut p = path.clone();
                            p.push(first.to_string());
                            out.push(p);
                        }
                    }
                }
                out.push(path);
            }
        }
    }
    out
}

/// The module `super` starts from: the file's own module for the first `super`, the path
/// built so far for any further one.
fn path_or(module: &[String], path: &[String], i: usize) -> Vec<String> {
    if i == 0 {
        module.to_vec()
    } else {
        path.to_vec()
    }
}

fn parent(module: &[String]) -> Vec<String> {
    let mut p = module.to_vec();
    p.pop();
    p
}

/// The source file a module path lands in: the longest prefix that is a file.
fn file_of(path: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let base: PathBuf = path[..n].iter().collect();
        for candidate in [base.with_extension("rs"), base.join("mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

#[test]
fn modules_name_only_the_layers_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (file, text) in sources() {
        let top = file
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        let Some(may) = allowed.get(top.as_str()) else {
            continue; // cli, lib.rs and main.rs sit on top
        };
        for line in code_lines(&text) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let named: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if named != top && !may.contains(&named.as_str()) {
                    wrong.push(format!("{} names crate::{named}", file.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 600)
        .map(|(file, text)| format!("{}: {} lines", file.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn no_two_files_depend_on_each_other() {
    let sources = sources();
    let files: BTreeSet<PathBuf> = sources.keys().cloned().collect();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (file, text) in &sources {
        let deps = edges.entry(file.clone()).or_default();
        for path in named_paths(file, text) {
            if let Some(target) = file_of(&path, &files) {
                // A module naming its own children (mod.rs re-exports) is no cycle.
                let is_child = file.file_name().is_some_and(|n| n == "mod.rs")
                    && target.starts_with(file.parent().unwrap_or(Path::new("")));
                if target != *file && !is_child {
                    deps.insert(target);
                }
            }
        }
    }
    // Depth-first search; every edge back into the current path closes a cycle.
    fn visit(
        node: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let chain: Vec<String> = stack[from..]
                        .iter()
                        .chain(std::iter::once(next))
                        .map(|p| p.display().to_string())
                        .collect();
                    cycles.push(chain.join(" -> "));
                }
                0 => visit(next, edges, state, stack, cycles),
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            visit(node, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(
        cycles.is_empty(),
        "files depending on each other:\n{}",
        cycles.join("\n")
    );
}
