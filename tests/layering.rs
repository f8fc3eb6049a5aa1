//! The library's modules form layers, and a module uses only modules of
//! lower layers: no cycles, so each layer can be read (and tested) knowing
//! only what is below it.
//!
//! This test reads every file under `src/` (but `lib.rs` and `main.rs`, the
//! roots), finds each path that reaches another top-level module - `crate::x`,
//! `crate::{x, y}`, a root re-export such as `crate::Tensor`, or a `super::`
//! chain that climbs to the crate root - and fails naming the file, the line
//! and the path when it points to a module of the same or a higher layer.
//! Comments (doc comments and their intra-doc links included) and string
//! literals do not count: only code does, test modules included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use the modules of the layers
/// before its own, and none of its own layer or after. Every top-level
/// module of `src/` must be listed.
const LAYERS: &[&[&str]] = &[
    // Text cleaned for the terminal (`say!`), which every layer prints through.
    &["terminal"],
    // Machinery: file reading with a ceiling, the output lock, allocation
    // and threading policy, the seeded random stream.
    &["files", "lock", "memory", "parallel", "rng", "scratch"],
    // The matrix product, on slices, with its own error type.
    &["gemm"],
    // The engine's error (which wraps the product's).
    &["error"],
    &["tensor"],
    // The convolution's and pooling's arithmetic, forward and backward.
    &["conv"],
    // Named tensors: what the tape, the layers and the readers share.
    &["params"],
    &["autodiff"],
    &["nn", "weights"],
    &["optim"],
    &["distributed"],
    &["data", "plot", "report_page"],
    &["fetch"],
    &["pipeline"],
    // The fuzz targets' entry points into every parser.
    &["parsers"],
];

/// Macros exported at the crate root, and the module each is defined in.
const MACROS: &[(&str, &str)] = &[("say", "terminal")];

/// One path from a file to another top-level module.
#[derive(Debug, PartialEq)]
struct Reach {
    line: usize,
    /// The path as written, e.g. `crate::nn` or `super::super::nn`.
    path: String,
    /// The top-level module it reaches.
    module: String,
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer_of: HashMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i))).collect();
    let roots = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        let module = module_path(rel);
        let top = module[0].clone();
        seen.insert(top.clone());
        let Some(&mine) = layer_of.get(top.as_str()) else {
            problems.push(format!("src/{}: module `{top}` is in no layer: add it to LAYERS", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for reach in reaches(&text, module.len(), &roots) {
            if reach.module == top {
                continue;
            }
            // An exported macro lives at the root but belongs to its module.
            let module = MACROS.iter().find(|(m, _)| *m == reach.module).map_or(reach.module.as_str(), |(_, of)| of);
            match layer_of.get(module) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => problems.push(format!(
                    "src/{}:{}: `{}` reaches `{}` (layer {theirs}) from `{top}` (layer {mine}): a module may use \
                     only lower layers",
                    rel.display(),
                    reach.line,
                    reach.path,
                    reach.module
                )),
                None => problems.push(format!(
                    "src/{}:{}: `{}` reaches `{}`, which is in no layer",
                    rel.display(),
                    reach.line,
                    reach.path,
                    reach.module
                )),
            }
        }
    }
    for m in layer_of.keys() {
        if !seen.contains(*m) {
            problems.push(format!("LAYERS lists `{m}`, which is not a module of src/"));
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

/// The checker finds what it must and nothing else (so the test above can
/// fail): each kind of path, in code only.
#[test]
fn the_scanner_finds_paths_in_code_only() {
    let roots = HashMap::from([("Tensor".to_string(), "tensor".to_string())]);
    // As if in a top-level file such as src/optim.rs (depth 1).
    let text = r#"//! [`crate::pipeline`] in a doc comment does not count.
use crate::nn::Params;
use crate::{autodiff::{Tape, Var}, error::Result};
/// Nor does `crate::fetch` here, /* nor */ in a "crate::plot" string.
fn f(x: &crate::Tensor) -> char { let _ = '{'; let s = "}"; '\'' }
/* block comment with crate::data */
mod tests {
    use super::super::distributed;
    fn g<'a>(_: &'a str) { let _ = r"crate::data"; $crate :: weights::read(); }
}
use super::conv;
"#;
    let found: Vec<(usize, String, String)> =
        reaches(text, 1, &roots).into_iter().map(|r| (r.line, r.path, r.module)).collect();
    let want = [
        (2, "crate::nn", "nn"),
        (3, "crate::{autodiff", "autodiff"),
        (3, "crate::{error", "error"),
        (5, "crate::Tensor", "tensor"),
        (8, "super::super::distributed", "distributed"),
        (9, "crate::weights", "weights"),
        (11, "super::conv", "conv"),
    ];
    let want: Vec<(usize, String, String)> = want.iter().map(|(l, p, m)| (*l, p.to_string(), m.to_string())).collect();
    assert_eq!(found, want);
    // Two modules down (src/nn/x.rs), `super::` stays inside `nn`; in an
    // inline module there, it takes three to reach the root.
    let text = "use super::conv;\nmod t {\n    use super::super::conv;\n    use super::super::super::conv;\n}\n";
    let found = reaches(text, 2, &roots);
    assert_eq!(found, vec![Reach { line: 4, path: "super::super::super::conv".into(), module: "conv".into() }]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `nn/sequential.rs` is `["nn", "sequential"]`; `nn/mod.rs` is `["nn"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The names `lib.rs` re-exports at the root (`pub use error::{Error,
/// Result};`), each with the module it comes from.
fn root_reexports(lib: &str) -> HashMap<String, String> {
    let code = code_only(lib);
    let mut out = HashMap::new();
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else { continue };
        let rest = rest.trim().trim_start_matches("crate::").trim_start_matches("self::");
        let Some((module, items)) = rest.split_once("::") else { continue };
        for item in items.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace()).split(',') {
            // `a::B as C` names C.
            if let Some(name) = item.split(|c: char| !is_ident(c)).rfind(|w| !w.is_empty()) {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// Whether the `r` at `i` follows the `b` of a raw byte string (`br"..."`).
fn raw_byte(chars: &[char], i: usize) -> bool {
    chars[i - 1] == 'b' && (i < 2 || !is_ident(chars[i - 2]))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments and the contents of string and char literals
/// blanked (newlines kept, so line numbers hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(chars[i - 1]) || raw_byte(&chars, i))
        {
            // A raw string r"..." or r#"..."#: ends at a quote and as many #s.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() && !(chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#'))) {
                j += 1;
            }
            let end = (j + 1 + hashes).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}'), else a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'' && j > i + 2).map(|j| j + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(chars[i..end].iter().map(|&c| blank(c)));
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path in `text` (a file `depth` modules below the crate root) that
/// names a top-level module or a root re-export (`roots`).
fn reaches(text: &str, depth: usize, roots: &HashMap<String, String>) -> Vec<Reach> {
    let code: Vec<char> = code_only(text).chars().collect();
    let word_at = |i: usize| -> String { code[i..].iter().take_while(|c| is_ident(**c)).collect() };
    let skip_ws = |mut i: usize| {
        while i < code.len() && code[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    // Inline modules (`mod tests {`) deepen the path: the brace depth at
    // which each opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut pending_mod = false;
    let (mut braces, mut line, mut i) = (0usize, 1usize, 0usize);
    // The top-level name a path reaches: a module, or the module a root re-export comes from.
    let target = |name: &str| -> Option<String> {
        if name.is_empty() || name == "self" || name == "super" {
            return None;
        }
        if let Some(m) = roots.get(name) {
            return Some(m.clone());
        }
        name.chars().next().is_some_and(|c| c.is_lowercase()).then(|| name.to_string())
    };
    while i < code.len() {
        let c = code[i];
        if c == '\n' {
            line += 1;
        }
        if c == '{' {
            braces += 1;
            if pending_mod {
                inline.push(braces);
                pending_mod = false;
            }
        }
        if c == '}' {
            if inline.last() == Some(&braces) {
                inline.pop();
            }
            braces = braces.saturating_sub(1);
        }
        if c == ';' {
            pending_mod = false; // `mod x;` declares a file, not an inline module
        }
        if !is_ident(c) || (i > 0 && is_ident(code[i - 1])) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        let after = i + word.len();
        let preceded_by_path = i >= 2 && code[i - 2] == ':' && code[i - 1] == ':';
        if word == "mod" {
            pending_mod = true;
        } else if (word == "crate" || word == "super") && !preceded_by_path {
            // Climb: `crate::` to the root; each `super::` one module up.
            let mut j = after;
            let mut supers = usize::from(word == "super");
            let mut path = word.clone();
            loop {
                let k = skip_ws(j);
                if code.get(k) != Some(&':') || code.get(k + 1) != Some(&':') {
                    break;
                }
                let k = skip_ws(k + 2);
                if word == "super" && word_at(k) == "super" {
                    supers += 1;
                    path.push_str("::super");
                    j = k + 5;
                    continue;
                }
                let at_root = word == "crate" || supers == depth + inline.len();
                if at_root {
                    let (names, prefix) = if code.get(k) == Some(&'{') {
                        (group_heads(&code, k), format!("{path}::{{"))
                    } else {
                        (vec![word_at(k)], format!("{path}::"))
                    };
                    for name in names {
                        if let Some(module) = target(&name) {
                            out.push(Reach { line, path: format!("{prefix}{name}"), module });
                        }
                    }
                }
                break;
            }
        }
        // Newlines inside the word cannot occur; step past it.
        i = after;
    }
    out
}

/// The first name of each item of the `{...}` group opening at `open`:
/// `{autodiff::{Tape, Var}, error::Result}` gives `autodiff` and `error`.
fn group_heads(code: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut i, mut at_item_start) = (0usize, open, true);
    while i < code.len() {
        match code[i] {
            '{' => {
                depth += 1;
                if depth == 1 {
                    at_item_start = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_item_start = true,
            c if is_ident(c) && depth == 1 && at_item_start => {
                heads.push(code[i..].iter().take_while(|c| is_ident(**c)).collect::<String>());
                at_item_start = false;
                i += heads.last().unwrap().len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}
