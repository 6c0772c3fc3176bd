//! The shape of the code: no import cycle between modules.
//!
//! Every file of `src/` is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`). A module
//! depends on another when it names one of its items: a `use` declaration (braces expanded),
//! or a path written in the code (`crate::plan::writes(...)`, `super::jail::open(...)`,
//! `child::Item`). A path is resolved to the longest module it starts with, so naming a
//! re-export (`crate::hosted_sftp::deliver_into`) depends on the module that re-exports it.
//! Unit tests (`#[cfg(test)] mod tests`) may use anything and are not counted.
//!
//! A cycle (Tarjan's strongly connected components) fails the test with each edge of it and
//! the line that makes it, so the fix is where to look. `cargo modules dependencies --acyclic`
//! does the same with rust-analyzer; this check needs no extra tool and runs in milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's dependencies: target module -> (line, the path that names it) of the first use.
type Edges = BTreeMap<String, BTreeMap<String, (usize, String)>>;

/// `src/` relative file -> module path (`lib.rs` -> `crate`).
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    if parts.is_empty() {
        "crate".into()
    } else {
        format!("crate::{}", parts.join("::"))
    }
}

/// The code of a file without comments, string and char literals (replaced by spaces, so
/// line numbers stay), and without its unit tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &b in s {
            out.push(if b == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") || rest.starts_with(b"br\"")
        {
            let hashes = rest
                .iter()
                .skip_while(|&&b| b == b'b' || b == b'r')
                .take_while(|&&b| b == b'#')
                .count();
            let open = rest.iter().position(|&b| b == b'"').unwrap_or(0) + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = text[i + open..]
                .find(&close)
                .map_or(rest.len(), |e| open + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('a', '\n', '\''); a lifetime ('a) has no closing quote there.
            let end = if rest[1] == b'\\' {
                rest[3..]
                    .iter()
                    .position(|&b| b == b'\'')
                    .map_or(rest.len(), |p| p + 4)
            } else {
                3
            };
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let c = text[i..].chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    // `X as Y` names X; renames are dropped before white space is.
    let tree: String = tree
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" as ", "@");
    let tree: String = tree.split_whitespace().collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let Some(open) = tree.find('{') else {
            let path = tree.split('@').next().unwrap_or(tree);
            out.push(format!("{prefix}{path}"));
            return;
        };
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let bytes = inner.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    let part = &inner[start..i];
                    if !part.is_empty() {
                        go(&format!("{prefix}{head}"), part, out);
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        let part = &inner[start..];
        if !part.is_empty() {
            go(&format!("{prefix}{head}"), part, out);
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Resolves `path` as written in module `from` to an absolute path (`crate::...`), or `None`
/// for paths outside the crate (std, dependencies).
fn absolute(path: &str, from: &str, children: &BTreeSet<String>) -> Option<String> {
    let path = path.trim_start_matches("::");
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return None;
    }
    let mut base: Vec<&str> = from.split("::").collect();
    match segments[0] {
        "crate" => {
            segments.remove(0);
            base = vec!["crate"];
        }
        "self" => {
            segments.remove(0);
        }
        "super" => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        first => {
            // A child module of `from` (edition 2018 paths), else an external crate.
            let child = format!("{from}::{first}");
            if !children.contains(&child) {
                return None;
            }
        }
    }
    let mut all: Vec<&str> = base;
    all.extend(segments);
    Some(all.join("::"))
}

/// The longest module of `modules` that `path` starts with.
fn owning_module(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Each module's `pub use` re-exports: (module, name) -> the absolute path it stands for.
fn reexports(files: &BTreeMap<String, String>) -> BTreeMap<(String, String), String> {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut out = BTreeMap::new();
    for (module, code) in files {
        for (at, _) in code.match_indices("pub use ") {
            let Some(end) = code[at..].find(';') else {
                continue;
            };
            for path in expand_use(&code[at + 8..at + end]) {
                let name = path.rsplit("::").next().unwrap_or_default().to_string();
                if let Some(abs) = absolute(&path, module, &modules) {
                    out.insert((module.clone(), name), abs);
                }
            }
        }
    }
    out
}

/// The module `path` (absolute) really names: the longest module it starts with, followed
/// through `pub use` re-exports (a facade such as `crate::Error`, re-exported by the crate
/// root from `crate::error`, is a dependency on `crate::error`).
fn resolve(
    path: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<(String, String), String>,
) -> Option<String> {
    let mut path = path.to_string();
    for _ in 0..8 {
        let module = owning_module(&path, modules)?;
        let rest = path[module.len()..].trim_start_matches("::");
        let Some(first) = rest.split("::").next().filter(|f| !f.is_empty()) else {
            return Some(module);
        };
        match reexports.get(&(module.clone(), first.to_string())) {
            Some(target) if *target != path => {
                let tail = rest[first.len()..].to_string();
                path = format!("{target}{tail}");
            }
            _ => return Some(module),
        }
    }
    owning_module(&path, modules)
}

/// The dependencies between the modules of `files` (module path -> code).
fn dependencies(files: &BTreeMap<String, String>) -> Edges {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let reexports = reexports(files);
    let mut edges = Edges::new();
    for (module, code) in files {
        let mut add = |path: &str, line: usize| {
            let Some(abs) = absolute(path, module, &modules) else {
                return;
            };
            let Some(target) = resolve(&abs, &modules, &reexports) else {
                return;
            };
            // A module naming its own items, or one of its own children, is not a cycle
            // risk by itself; a child naming its parent's items is an edge like any other.
            if &target == module {
                return;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(target)
                .or_insert((line, path.to_string()));
        };
        let line_of = |at: usize| code[..at].matches('\n').count() + 1;
        // `use` declarations, braces expanded.
        let mut rest = 0;
        while let Some(found) = code[rest..].find("use ") {
            let at = rest + found;
            rest = at + 4;
            let before = code[..at].chars().last().unwrap_or('\n');
            if before.is_alphanumeric() || before == '_' {
                continue;
            }
            let Some(end) = code[at..].find(';') else {
                break;
            };
            let tree = &code[at + 4..at + end];
            if tree.contains('(') || tree.contains('=') {
                continue; // not a use declaration
            }
            for path in expand_use(tree) {
                add(&path, line_of(at));
            }
        }
        // Paths in the code: `crate::...`, `super::...`, `self::...`, `child::...`.
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start_ok = i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b':');
            if start_ok && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || bytes[j] == b'_'
                        || (bytes[j] == b':' && bytes.get(j + 1) == Some(&b':'))
                        || (bytes[j] == b':' && j > 0 && bytes[j - 1] == b':'))
                {
                    j += 1;
                }
                let path = code[i..j].trim_end_matches(':');
                if path.contains("::") {
                    add(path, line_of(i));
                }
                i = j.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    edges
}

/// The cycles (strongly connected components of more than one module), each sorted.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            if let Some(targets) = self.edges.get(v) {
                for w in targets.keys() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.on_stack.contains(w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// Describes each cycle with its edges and the lines that make them.
fn report(edges: &Edges, found: &[Vec<String>], files: &BTreeMap<String, PathBuf>) -> String {
    let mut out = String::new();
    for component in found {
        out.push_str(&format!("cycle between {}:\n", component.join(", ")));
        for from in component {
            for (to, (line, path)) in edges.get(from).into_iter().flatten() {
                if component.contains(to) {
                    let file = files
                        .get(from)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    out.push_str(&format!("  {from} -> {to}   ({file}:{line}: `{path}`)\n"));
                }
            }
        }
    }
    out
}

fn source_files() -> (BTreeMap<String, String>, BTreeMap<String, PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut code = BTreeMap::new();
    let mut paths = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&src).expect("under src").to_path_buf();
                if relative == Path::new("main.rs") {
                    continue; // the binary is its own crate
                }
                let module = module_of(&relative);
                let text = std::fs::read_to_string(&path).expect("UTF-8 source");
                code.insert(module.clone(), code_of(&text));
                paths.insert(module, Path::new("src").join(relative));
            }
        }
    }
    (code, paths)
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let (code, paths) = source_files();
    assert!(code.len() > 50, "the source tree was read");
    let edges = dependencies(&code);
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles between modules:\n{}",
        report(&edges, &found, &paths)
    );
}

#[test]
fn the_checker_finds_a_cycle_and_the_line_that_makes_it() {
    let files: BTreeMap<String, String> = [
        ("crate", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "crate::a",
            "use crate::b::Thing;\n// use crate::c::Ignored;\nfn f() { let s = \"crate::c::x\"; }\n",
        ),
        ("crate::b", "pub struct Thing;\nfn g() { super::c::helper(); }\n"),
        ("crate::c", "pub fn helper() { crate::a::f2(); }\n"),
    ]
    .into_iter()
    .map(|(m, c)| (m.to_string(), code_of(c)))
    .collect();
    let edges = dependencies(&files);
    assert_eq!(
        cycles(&edges),
        vec![vec![
            "crate::a".to_string(),
            "crate::b".to_string(),
            "crate::c".to_string()
        ]]
    );
    let text = report(&edges, &cycles(&edges), &BTreeMap::new());
    assert!(text.contains("crate::b -> crate::c"), "{text}");
    assert!(text.contains(":2: `super::c::helper`"), "{text}");
    // Comments and strings name nothing.
    assert!(!edges["crate::a"].contains_key("crate::c"));
}

#[test]
fn a_name_reexported_by_a_facade_depends_on_where_it_is_defined() {
    let files: BTreeMap<String, String> = [
        (
            "crate",
            "pub mod error;\npub mod a;\npub use error::{Error, Result};\n",
        ),
        (
            "crate::error",
            "pub struct Error;\nfn f() { crate::a::g(); }\n",
        ),
        ("crate::a", "use crate::Error;\npub fn g() {}\n"),
    ]
    .into_iter()
    .map(|(m, c)| (m.to_string(), code_of(c)))
    .collect();
    let edges = dependencies(&files);
    assert!(edges["crate::a"].contains_key("crate::error"));
    assert!(!edges["crate::a"].contains_key("crate"));
    assert!(
        cycles(&edges).len() == 1,
        "error -> a -> error is still a cycle"
    );
}

#[test]
fn use_trees_expand_to_full_paths() {
    assert_eq!(
        expand_use("crate::api::{Kind, deliver::{A, b::C as D}}"),
        vec![
            "crate::api::Kind",
            "crate::api::deliver::A",
            "crate::api::deliver::b::C"
        ]
    );
}
