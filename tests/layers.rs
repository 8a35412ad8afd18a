//! The module tree is the architecture: imports between the files of `src/` point
//! one way only. This test reads every file, finds the paths it names (`use` trees,
//! `pub use` re-exports, inline `crate::`/`super::`/`self::`/`nexushub::` paths and
//! paths through a child module, in inline test modules too), resolves each to the
//! file that defines that module, and fails on any cycle between files, naming it
//! and the path behind each step. `LAYERS_DUMP=1` prints every edge.
//!
//! What counts: a `mod x;` declaration is not an import (the parent owns the
//! child), but a parent's `pub use child::Item` is, so a `mod.rs` that re-exports
//! its children must define nothing they import: a child names the sibling file
//! that defines what it needs. Test code counts like any other: moving an inline
//! test module to a `tests.rs` of its own must not change the verdict. Comments
//! (doc links too) and string literals do not count.
//!
//! The module tree is followed from the two crate roots (`lib.rs` and `main.rs`),
//! the way rustc finds files, so the test knows which crate a file belongs to and
//! `nexushub::` paths from the binary land in the library. A file of `src/` that no
//! `mod` declares, a `#[path]` attribute or an `include!` would hide edges from
//! this reader, so each one fails the test instead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// Files still allowed in an import cycle, relative to `src/`. A cycle is
/// tolerated only when every file in it is listed here. The proxy runtime was
/// listed until it moved to `src/proxy/` in layers; the list is empty now and
/// every file of `src/` is held to the rule. Keep it so.
const RUNTIME_FILES: &[&str] = &[];

// ---- reading ----

/// A token of Rust source, as much of it as finding paths needs.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier or keyword (a raw identifier keeps its `r#`).
    Ident(String),
    /// `::`
    PathSep,
    /// Any other single character of punctuation.
    Punct(char),
    /// A literal (string, char, number) or a lifetime: never part of a path.
    Other,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits source into tokens, dropping whitespace and comments.
fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '"' | '#'))) {
                i = skip_raw_string(&c, i);
                out.push(Tok::Other);
            } else if word == "r" && at(i) == '#' && is_ident_start(at(i + 1)) {
                let start = i + 1;
                i = start;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                out.push(Tok::Ident(format!("r#{name}")));
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(&c, i);
                out.push(Tok::Other);
            } else if word == "b" && at(i) == '\'' {
                i = skip_char(&c, i);
                out.push(Tok::Other);
            } else {
                out.push(Tok::Ident(word));
            }
        } else if ch.is_ascii_digit() {
            // 1u8, 0x1f, 1.5e3 (a `.` only when a digit follows: `x.0.1` and `1..2`).
            while i < c.len()
                && (is_ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
            out.push(Tok::Other);
        } else if ch == '"' {
            i = skip_string(&c, i);
            out.push(Tok::Other);
        } else if ch == '\'' {
            if at(i + 1) == '\\' || (at(i + 2) == '\'' && at(i + 1) != '\'') {
                i = skip_char(&c, i);
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// From the opening quote of an escaped string to just past its end.
fn skip_string(c: &[char], mut i: usize) -> usize {
    i += 1;
    while i < c.len() && c[i] != '"' {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// From the `#`s or quote after `r` to just past the raw string's end.
fn skip_raw_string(c: &[char], mut i: usize) -> usize {
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the opening quote
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// From the opening quote of a char literal to just past its end.
fn skip_char(c: &[char], mut i: usize) -> usize {
    i += 1;
    while i < c.len() && c[i] != '\'' {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// What one file says about modules and paths.
#[derive(Debug, Default)]
struct Scan {
    /// `mod name;` declarations: (the inline modules they sit in, name).
    declared: Vec<(Vec<String>, String)>,
    /// Inline `mod name { .. }` blocks, as paths of names from the file's module.
    inline: Vec<Vec<String>>,
    /// Every path named: (the inline modules it sits in, its segments).
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// Why this reader cannot be trusted with the file, if it cannot.
    unreadable: Option<String>,
}

fn scan(text: &str) -> Scan {
    let toks = tokens(text);
    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut out = Scan::default();
    // Inline modules open around here: (name, brace depth outside it).
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let inside: Vec<String> = open.iter().map(|(n, _)| n.clone()).collect();
        match &toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
            }
            Tok::Punct('#') => {
                let at = if toks.get(i + 1) == Some(&Tok::Punct('!')) {
                    i + 2
                } else {
                    i + 1
                };
                if toks.get(at) == Some(&Tok::Punct('[')) && ident(at + 1) == Some("path") {
                    out.unreadable = Some("a #[path] attribute".into());
                }
            }
            Tok::Ident(w) if w == "include" && toks.get(i + 1) == Some(&Tok::Punct('!')) => {
                out.unreadable = Some("include!".into());
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(name) = ident(i + 1) {
                    match toks.get(i + 2) {
                        Some(Tok::Punct(';')) => out.declared.push((inside, name.to_string())),
                        Some(Tok::Punct('{')) => {
                            let mut path = inside;
                            path.push(name.to_string());
                            out.inline.push(path);
                            open.push((name.to_string(), depth));
                        }
                        _ => {}
                    }
                    i += 2;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                i += 1;
                let mut found = Vec::new();
                use_tree(&toks, &mut i, &[], &mut found);
                out.paths
                    .extend(found.into_iter().map(|p| (inside.clone(), p)));
                continue;
            }
            Tok::Ident(first)
                if (i == 0 || toks[i - 1] != Tok::PathSep)
                    && toks.get(i + 1) == Some(&Tok::PathSep) =>
            {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::PathSep) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(s)) => path.push(s.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                out.paths.push((inside, path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads one `use` tree from `toks[*i]` (just past `use`, or inside braces) into
/// its paths, leaving `*i` past it.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut names_prefix = false;
    if toks.get(*i) == Some(&Tok::PathSep) {
        // `::name`: an extern crate, never a file of ours.
        path.push("::".into());
        *i += 1;
    }
    loop {
        match toks.get(*i) {
            // `a::{self, ..}` names `a` itself.
            Some(Tok::Ident(s)) if s == "self" && !path.is_empty() => {
                names_prefix = true;
                *i += 1;
            }
            Some(Tok::Ident(s)) if s != "as" => {
                path.push(s.clone());
                *i += 1;
            }
            Some(Tok::Punct('*')) => {
                path.push("*".into());
                *i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while *i < toks.len() && toks[*i] != Tok::Punct('}') {
                    use_tree(toks, i, &path, out);
                    if toks.get(*i) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1; // the closing brace
                if toks.get(*i) == Some(&Tok::Punct(';')) {
                    *i += 1;
                }
                return;
            }
            _ => break,
        }
        if toks.get(*i) == Some(&Tok::PathSep) {
            *i += 1;
        } else {
            break;
        }
    }
    if matches!(toks.get(*i), Some(Tok::Ident(s)) if s == "as") {
        *i += 2;
    }
    if toks.get(*i) == Some(&Tok::Punct(';')) {
        *i += 1;
    }
    if path.len() > prefix.len() || names_prefix {
        out.push(path);
    }
}

// ---- the module tree ----

/// Which crate a module is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Crate {
    Lib,
    Bin,
}

/// A crate and a module path in it.
type Module = (Crate, Vec<String>);

/// The files of `src/` as modules, and every module (inline ones too) with
/// the file it is written in.
#[derive(Debug, Default)]
struct Tree {
    /// Each file (relative to `src/`) and its module.
    files: BTreeMap<String, Module>,
    /// Each module and its file.
    modules: BTreeMap<Module, String>,
    /// What each file names.
    scans: BTreeMap<String, Scan>,
}

/// Follows `mod` declarations from `lib.rs` and `main.rs` over `sources`
/// (file name relative to `src/` -> text), as rustc does.
fn module_tree(sources: &BTreeMap<String, String>) -> Result<Tree, Vec<String>> {
    let mut tree = Tree::default();
    let mut errors = Vec::new();
    // (file, its module, the folder its `mod x;` children are in).
    let mut queue: VecDeque<(String, Module, String)> = VecDeque::new();
    for (root, krate) in [("lib.rs", Crate::Lib), ("main.rs", Crate::Bin)] {
        if sources.contains_key(root) {
            queue.push_back((root.into(), (krate, Vec::new()), String::new()));
        }
    }
    while let Some((file, module, dir)) = queue.pop_front() {
        if let Some(first) = tree.files.get(&file) {
            errors.push(format!(
                "src/{file} is declared twice (as {first:?} and {module:?})"
            ));
            continue;
        }
        let found = scan(&sources[&file]);
        if let Some(why) = &found.unreadable {
            errors.push(format!("src/{file}: {why} hides imports from this test"));
        }
        tree.files.insert(file.clone(), module.clone());
        tree.modules.insert(module.clone(), file.clone());
        for inline in &found.inline {
            let mut m = module.clone();
            m.1.extend(inline.iter().cloned());
            tree.modules.insert(m, file.clone());
        }
        for (inside, name) in &found.declared {
            let folder: String = inside.iter().map(|n| format!("{n}/")).collect();
            let flat = format!("{dir}{folder}{name}.rs");
            let nested = format!("{dir}{folder}{name}/mod.rs");
            let mut child = module.clone();
            child.1.extend(inside.iter().cloned());
            child.1.push(name.clone());
            match (sources.contains_key(&flat), sources.contains_key(&nested)) {
                (true, false) => {
                    let child_dir = format!("{dir}{folder}{name}/");
                    queue.push_back((flat, child, child_dir));
                }
                (false, true) => {
                    let child_dir = format!("{dir}{folder}{name}/");
                    queue.push_back((nested, child, child_dir));
                }
                (true, true) => errors.push(format!("src/{file}: both {flat} and {nested}")),
                (false, false) => errors.push(format!("src/{file}: no file for mod {name}")),
            }
        }
        tree.scans.insert(file, found);
    }
    for file in sources.keys() {
        if !tree.files.contains_key(file) {
            errors.push(format!("src/{file} is not declared by any module"));
        }
    }
    if errors.is_empty() {
        Ok(tree)
    } else {
        Err(errors)
    }
}

/// The file defining the module a path names, seen from module `here`.
fn resolve(tree: &Tree, here: &Module, path: &[String]) -> Option<String> {
    let (krate, here_path) = (here.0, &here.1);
    let first = path.first()?.as_str();
    let (krate, mut abs, rest) = match first {
        "crate" => (krate, Vec::new(), &path[1..]),
        "self" => (krate, here_path.clone(), &path[1..]),
        "super" => {
            let mut m = here_path.clone();
            m.pop()?;
            (krate, m, &path[1..])
        }
        name => {
            let mut child = here_path.clone();
            child.push(name.to_string());
            if tree.modules.contains_key(&(krate, child)) {
                (krate, here_path.clone(), path)
            } else if name == "nexushub" {
                (Crate::Lib, Vec::new(), &path[1..])
            } else {
                return None; // std, a dependency, or an item in scope
            }
        }
    };
    let mut rest = rest;
    while rest.first().is_some_and(|s| s == "super") {
        abs.pop()?;
        rest = &rest[1..];
    }
    abs.extend(rest.iter().filter(|s| *s != "self" && *s != "*").cloned());
    (0..=abs.len())
        .rev()
        .find_map(|n| tree.modules.get(&(krate, abs[..n].to_vec())).cloned())
}

/// File -> files it imports, each edge with the first path that made it.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

fn import_edges(tree: &Tree) -> Edges {
    let mut edges = Edges::new();
    for (file, module) in &tree.files {
        let targets = edges.entry(file.clone()).or_default();
        for (inside, path) in &tree.scans[file].paths {
            let mut here = module.clone();
            here.1.extend(inside.iter().cloned());
            if let Some(to) = resolve(tree, &here, path) {
                if &to != file {
                    targets.entry(to).or_insert_with(|| path.join("::"));
                }
            }
        }
    }
    edges
}

// ---- cycles ----

/// Strongly connected components of more than one file (Tarjan).
fn tangles(edges: &Edges) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, n: &'a str) {
        let i = s.index.len();
        s.index.insert(n, i);
        s.low.insert(n, i);
        s.stack.push(n);
        s.on_stack.insert(n);
        for m in s.edges.get(n).into_iter().flat_map(|t| t.keys()) {
            let m = m.as_str();
            if !s.index.contains_key(m) {
                visit(s, m);
                let low = s.low[n].min(s.low[m]);
                s.low.insert(n, low);
            } else if s.on_stack.contains(m) {
                let low = s.low[n].min(s.index[m]);
                s.low.insert(n, low);
            }
        }
        if s.low[n] == s.index[n] {
            let mut component = BTreeSet::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(m);
                component.insert(m.to_string());
                if m == n {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for n in edges.keys() {
        if !s.index.contains_key(n.as_str()) {
            visit(&mut s, n);
        }
    }
    s.found
}

/// A shortest cycle from `start` back to itself, within `within`, as
/// `[start, a, b, .., start]`.
fn shortest_cycle<'a>(edges: &'a Edges, start: &'a str, within: &BTreeSet<String>) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for m in edges.get(n).into_iter().flat_map(|t| t.keys()) {
            if m == start {
                let mut back = vec![start.to_string()];
                let mut at = n;
                while at != start {
                    back.push(at.to_string());
                    at = came_from[at];
                }
                back.push(start.to_string());
                back.reverse();
                return back;
            }
            if within.contains(m) && !came_from.contains_key(m.as_str()) {
                came_from.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    Vec::new()
}

/// Every cycle that goes through a file not in `allowed`, one per tangle,
/// each as `a -> b (the path) -> a (the path)`.
fn forbidden_cycles(edges: &Edges, allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for tangle in tangles(edges) {
        let Some(start) = tangle.iter().find(|f| !allowed.contains(&f.as_str())) else {
            continue;
        };
        let cycle = shortest_cycle(edges, start, &tangle);
        let mut text = format!("src/{}", cycle[0]);
        for pair in cycle.windows(2) {
            let why = &edges[&pair[0]][&pair[1]];
            text.push_str(&format!(" -> src/{} ({why})", pair[1]));
        }
        let others: Vec<&str> = tangle
            .iter()
            .filter(|f| !cycle.contains(f))
            .map(String::as_str)
            .collect();
        if !others.is_empty() {
            text.push_str(&format!(" [tangled with it: {}]", others.join(", ")));
        }
        out.push(text);
    }
    out
}

// ---- the checks ----

fn read_src() -> BTreeMap<String, String> {
    fn walk(src: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(src, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src/");
                let rel = rel.to_str().expect("UTF-8 file name").replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("read a source file");
                out.insert(rel, text);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&src, &src, &mut out);
    out
}

/// The verdict over a source tree: every problem found, none if it passes.
fn check(sources: &BTreeMap<String, String>, allowed: &[&str]) -> Vec<String> {
    let tree = match module_tree(sources) {
        Ok(tree) => tree,
        Err(errors) => return errors,
    };
    forbidden_cycles(&import_edges(&tree), allowed)
}

#[test]
fn no_import_cycle_between_files() {
    let sources = read_src();
    assert!(
        sources.len() > 10,
        "read only {} files of src/",
        sources.len()
    );
    if std::env::var_os("LAYERS_DUMP").is_some() {
        let tree = module_tree(&sources).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        for (from, tos) in import_edges(&tree) {
            for (to, why) in tos {
                eprintln!("edge src/{from} -> src/{to} ({why})");
            }
        }
    }
    let problems = check(&sources, RUNTIME_FILES);
    assert!(
        problems.is_empty(),
        "import cycles between files (each file's imports must point one way):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_runtime_file_excused_still_exists() {
    let sources = read_src();
    for file in RUNTIME_FILES {
        assert!(
            sources.contains_key(*file),
            "src/{file} is gone: take it off RUNTIME_FILES"
        );
    }
}

// ---- the checker on tiny trees ----

fn tree_of(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect()
}

fn edges_of(files: &[(&str, &str)]) -> Vec<String> {
    let tree = module_tree(&tree_of(files)).unwrap_or_else(|e| panic!("{e:?}"));
    import_edges(&tree)
        .into_iter()
        .flat_map(|(from, tos)| tos.into_keys().map(move |to| format!("{from} -> {to}")))
        .collect()
}

#[test]
fn a_cycle_through_use_trees_fails() {
    let problems = check(
        &tree_of(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::{b::{self, B as Bee}, x};\n"),
            ("b.rs", "pub(crate) use\n    crate::a::A;\n"),
        ]),
        &[],
    );
    assert_eq!(
        problems,
        ["src/a.rs -> src/b.rs (crate::b) -> src/a.rs (crate::a::A)"]
    );
}

#[test]
fn a_cycle_through_inline_paths_fails() {
    let problems = check(
        &tree_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "fn f() { crate::b::g(); }\n"),
            (
                "b.rs",
                "fn g() -> super::c::C { super::c::C(Vec::new()) }\n",
            ),
            ("c.rs", "struct C(Vec<crate::a::A>);\n"),
        ]),
        &[],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("src/a.rs -> src/b.rs"),
        "{problems:?}"
    );
}

#[test]
fn a_mod_rs_that_reexports_a_child_it_feeds_is_a_cycle() {
    let files = [
        ("lib.rs", "pub mod x;\n"),
        ("x/mod.rs", "mod c;\npub use c::Item;\npub struct Shared;\n"),
        ("x/c.rs", "use super::Shared;\npub struct Item(Shared);\n"),
    ];
    assert_eq!(
        check(&tree_of(&files), &[]),
        ["src/x/c.rs -> src/x/mod.rs (super::Shared) -> src/x/c.rs (c::Item)"]
    );
    // The same with the shared item in a sibling leaf: one way only.
    let files = [
        ("lib.rs", "pub mod x;\n"),
        ("x/mod.rs", "mod c;\nmod shared;\npub use c::Item;\n"),
        (
            "x/c.rs",
            "use super::shared::Shared;\npub struct Item(Shared);\n",
        ),
        ("x/shared.rs", "pub struct Shared;\n"),
    ];
    assert_eq!(check(&tree_of(&files), &[]), Vec::<String>::new());
    assert_eq!(
        edges_of(&files),
        ["x/c.rs -> x/shared.rs", "x/mod.rs -> x/c.rs"]
    );
}

#[test]
fn comments_strings_and_chars_are_not_imports() {
    let edges = edges_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "// use crate::b;\n/* crate::b::X /* nested */ crate::b::Y */\n\
             /// [`crate::b::Z`]\nconst S: &str = \"crate::b::S\";\n\
             const R: &str = r#\"\" crate::b::R \"#;\nconst Q: char = '\"';\n\
             const U: &[u8] = b\"use crate::b;\";\nfn f<'a>(x: &'a str) -> char { 'x' }\n",
        ),
        ("b.rs", ""),
    ]);
    assert_eq!(edges, Vec::<String>::new());
}

#[test]
fn inline_test_modules_count_and_their_super_is_the_file() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
             mod deeper { use super::super::f; }\n}\n",
        ),
        ("b.rs", ""),
    ];
    assert_eq!(edges_of(&files), Vec::<String>::new());
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
        ),
        ("b.rs", "fn g() { crate::a::f() }\n"),
    ];
    assert_eq!(check(&tree_of(&files), &[]).len(), 1);
}

#[test]
fn a_tests_file_beside_its_module_is_a_child() {
    let files = [
        ("lib.rs", "mod a;\n"),
        ("a.rs", "pub fn f() {}\n#[cfg(test)]\nmod tests;\n"),
        (
            "a/tests.rs",
            "use super::*;\nuse super::super::a::f as g;\n",
        ),
    ];
    assert_eq!(edges_of(&files), ["a/tests.rs -> a.rs"]);
}

#[test]
fn the_binary_reaches_the_library_by_its_name() {
    let files = [
        ("lib.rs", "pub mod a;\n"),
        ("a.rs", "pub fn f() {}\n"),
        (
            "main.rs",
            "mod w;\nfn main() { nexushub::a::f(); w::run(); }\n",
        ),
        (
            "w.rs",
            "use nexushub::a;\npub fn run() { crate::helper(); }\n",
        ),
    ];
    assert_eq!(
        edges_of(&files),
        [
            "main.rs -> a.rs",
            "main.rs -> w.rs",
            "w.rs -> a.rs",
            "w.rs -> main.rs"
        ]
    );
    // main.rs and w.rs import each other: a cycle in the binary counts too.
    assert_eq!(check(&tree_of(&files), &[]).len(), 1);
}

#[test]
fn nested_super_and_self_resolve_from_the_file() {
    let files = [
        ("lib.rs", "mod p;\nmod q;\n"),
        ("p/mod.rs", "mod r;\n"),
        (
            "p/r.rs",
            "use super::super::q::Q;\nuse self::inner::X;\nmod inner {}\n",
        ),
        ("q.rs", ""),
    ];
    assert_eq!(edges_of(&files), ["p/r.rs -> q.rs"]);
}

#[test]
fn files_this_reader_cannot_follow_fail() {
    let problems = check(
        &tree_of(&[
            ("lib.rs", "mod a;\n#[path = \"elsewhere.rs\"]\nmod b;\n"),
            ("a.rs", "include!(\"x.rs\");\n"),
            ("b.rs", ""),
            ("stray.rs", "use crate::a;\n"),
        ]),
        &[],
    );
    let text = problems.join("\n");
    assert!(text.contains("src/lib.rs: a #[path] attribute"), "{text}");
    assert!(text.contains("src/a.rs: include!"), "{text}");
    assert!(
        text.contains("src/stray.rs is not declared by any module"),
        "{text}"
    );
}

#[test]
fn an_excused_cycle_passes_only_while_all_its_files_are_excused() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::b::B;\n"),
        ("b.rs", "use crate::a::A;\n"),
        ("c.rs", "use crate::a::A;\n"),
    ];
    assert_eq!(
        check(&tree_of(&files), &["a.rs", "b.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(check(&tree_of(&files), &["a.rs"]).len(), 1);
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::b::B;\n"),
        ("b.rs", "use crate::{a::A, c::C};\n"),
        ("c.rs", "use crate::b::B;\n"),
    ];
    let problems = check(&tree_of(&files), &["a.rs", "b.rs"]);
    assert_eq!(
        problems,
        ["src/c.rs -> src/b.rs (crate::b::B) -> src/c.rs (crate::c::C) [tangled with it: a.rs]"]
    );
}
