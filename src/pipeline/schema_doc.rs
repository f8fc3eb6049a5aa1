//! `nabla schema`: the pipeline format, rendered from the doc comments of
//! `schema.rs` itself, so the documentation cannot drift from the parser.
//! Each field's default comes from its serde attributes: `#[serde(default)]`
//! is its type's default (0, false, empty, an enum's `#[default]` variant or
//! a struct's `impl Default`), `#[serde(default = "f")]` is what `fn f()`
//! returns, an `Option` may be left out, and anything else is required.

use std::collections::BTreeMap;

const SOURCE: &str = include_str!("schema.rs");

/// Markdown: one section per struct or enum, one line per field.
pub fn render() -> String {
    render_source(SOURCE)
}

/// What a field is when the file leaves it out.
#[derive(Clone, Debug, PartialEq)]
enum Absent {
    Required,
    Optional,
    /// `#[serde(default)]`: the type's own default.
    TypeDefault,
    /// `#[serde(default = "f")]`.
    Function(String),
}

struct Field {
    name: String,
    ty: String,
    doc: String,
    absent: Absent,
}

struct Item {
    name: String,
    doc: String,
    /// None for an enum.
    fields: Option<Vec<Field>>,
}

/// What the source declares besides its items: enums' variants and
/// attributes, default functions' bodies, structs' `impl Default` bodies.
#[derive(Default)]
struct Decls {
    /// Enum name -> (its `#[default]` variant, its variants are snake_case
    /// strings, it is read from a `{ kind = ... }` table).
    enums: BTreeMap<String, (Option<String>, bool, bool)>,
    /// `fn f() -> T { body }` with a one-line body.
    functions: BTreeMap<String, String>,
    /// `impl Default for S`: the struct literal's `field: value` pairs.
    defaults: BTreeMap<String, Vec<(String, String)>>,
    /// Struct name -> its fields.
    structs: BTreeMap<String, Vec<(String, Absent)>>,
}

fn render_source(source: &str) -> String {
    let (items, decls) = parse(source);
    let mut out = String::from("## Pipeline file format (version 1)\n\n");
    for item in &items {
        // Plain enums of names (snake_case variants) are described by the
        // fields that use them.
        let names = decls.enums.get(&item.name).is_some_and(|&(_, snake, _)| snake);
        if item.doc.is_empty() || names {
            continue;
        }
        out += &format!("### {}\n\n{}\n\n", item.name, item.doc);
        let Some(fields) = &item.fields else { continue };
        for f in fields {
            let absent = match &f.absent {
                Absent::Required => "required".to_string(),
                Absent::Optional => "optional".to_string(),
                Absent::TypeDefault => format!("default {}", type_default(&f.ty, &decls)),
                Absent::Function(name) => format!("default {}", function_value(name, &decls)),
            };
            out += &format!("- `{}` ({}, {absent}): {}\n", f.name, f.ty, f.doc);
        }
        out += "\n";
    }
    out
}

fn parse(source: &str) -> (Vec<Item>, Decls) {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let mut items = Vec::new();
    let mut decls = Decls::default();
    let mut doc: Vec<String> = Vec::new();
    let mut attrs: Vec<&str> = Vec::new();
    // The struct (its fields) or enum (its variants) being read.
    let mut fields: Option<Vec<Field>> = None;
    let mut enum_at: Option<(String, bool, bool)> = None;
    let mut default_variant: Option<String> = None;
    let mut next_is_default = false;
    for (i, &l) in lines.iter().enumerate() {
        if let Some(d) = l.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        if l.starts_with("#[") {
            next_is_default |= l == "#[default]";
            attrs.push(l);
            continue;
        }
        if let Some(rest) = l.strip_prefix("pub struct ").or_else(|| l.strip_prefix("pub enum ")) {
            let name = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap_or(rest).to_string();
            if l.starts_with("pub struct") {
                fields = Some(Vec::new());
            } else {
                let snake = attrs.iter().any(|a| a.contains("rename_all = \"snake_case\""));
                let table = attrs.iter().any(|a| a.contains("try_from"));
                enum_at = Some((name.clone(), snake, table));
                default_variant = None;
            }
            items.push(Item { name, doc: doc.join(" "), fields: None });
        } else if let (Some(fs), true) = (&mut fields, l.starts_with("pub ") && l.contains(':')) {
            let (field, ty) = l.trim_start_matches("pub ").split_once(':').expect("checked");
            let serde: Vec<&str> = attrs.iter().filter_map(|a| a.strip_prefix("#[serde(")).collect();
            let name = serde.iter().find_map(|a| quoted_after(a, "rename = ")).unwrap_or(field.trim()).to_string();
            let ty = ty.trim().trim_end_matches(',').to_string();
            let absent = if let Some(f) = serde.iter().find_map(|a| quoted_after(a, "default = ")) {
                Absent::Function(f.to_string())
            } else if serde.iter().any(|a| a.split([',', ')']).any(|w| w.trim() == "default")) {
                Absent::TypeDefault
            } else if ty.starts_with("Option<") {
                Absent::Optional
            } else {
                Absent::Required
            };
            fs.push(Field { name, ty, doc: doc.join(" "), absent });
        } else if l.starts_with('}') && (fields.is_some() || enum_at.is_some()) {
            if let Some(fs) = fields.take() {
                let item = items.last_mut().expect("a struct was opened");
                decls
                    .structs
                    .insert(item.name.clone(), fs.iter().map(|f| (f.name.clone(), f.absent.clone())).collect());
                item.fields = Some(fs);
            }
            if let Some((name, snake, table)) = enum_at.take() {
                decls.enums.insert(name, (default_variant.take(), snake, table));
            }
        } else if enum_at.is_some() {
            let variant = l.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
            if next_is_default && !variant.is_empty() {
                default_variant = Some(variant.to_string());
            }
        } else if let Some(rest) = l.strip_prefix("fn ").filter(|r| r.contains("() ->") && r.ends_with('{')) {
            // A one-line default: `fn fifty() -> usize {`, `50`, `}`.
            if lines.get(i + 2) == Some(&"}") {
                let name = rest.split('(').next().unwrap_or(rest);
                decls.functions.insert(name.to_string(), lines[i + 1].to_string());
            }
        } else if let Some(rest) = l.strip_prefix("impl Default for ") {
            let name = rest.trim_end_matches(" {").to_string();
            let body = lines[i..].join(" ");
            if let Some(pairs) = struct_literal(&body, &name) {
                decls.defaults.insert(name, pairs);
            }
        }
        if !l.starts_with("#[") {
            doc.clear();
            attrs.clear();
            next_is_default = false;
        }
    }
    (items, decls)
}

/// `x` of `key"x"` in an attribute.
fn quoted_after<'a>(attr: &'a str, key: &str) -> Option<&'a str> {
    let rest = &attr[attr.find(key)? + key.len()..];
    rest.strip_prefix('"')?.split('"').next()
}

/// The `field: value` pairs of the `Name { ... }` literal `fn default()`
/// returns in `text`.
fn struct_literal(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let text = &text[text.find("fn default()")?..];
    let text = &text[text.find('{')? + 1..];
    let open = text.find(&format!("{name} {{"))? + name.len() + 2;
    let (mut depth, mut part, mut pairs) = (0i32, String::new(), Vec::new());
    let mut push = |part: &mut String| {
        if let Some((k, v)) = part.split_once(':') {
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        part.clear();
    };
    for c in text[open..].chars() {
        match c {
            '{' | '(' | '[' => depth += 1,
            '}' if depth == 0 => {
                push(&mut part);
                return Some(pairs);
            }
            '}' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                push(&mut part);
                continue;
            }
            _ => {}
        }
        part.push(c);
    }
    None
}

/// The value a `#[serde(default)]` field of type `ty` takes.
fn type_default(ty: &str, d: &Decls) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" | "f32" | "f64" => "0".into(),
        "bool" => "false".into(),
        _ if ty == "String" || ty.starts_with("Vec<") || ty.starts_with("BTreeMap<") => "empty".into(),
        _ => match (d.enums.get(ty), d.defaults.get(ty)) {
            (Some((Some(v), ..)), _) => variant(ty, v, d),
            // A section left out: its required fields as `impl Default` sets
            // them, the others at their own defaults.
            (_, Some(pairs)) => {
                let required = d.structs.get(ty).map(Vec::as_slice).unwrap_or_default();
                let set: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| required.iter().any(|(f, a)| f == k && *a == Absent::Required))
                    .map(|(k, v)| format!("{k} = {}", value(v, d)))
                    .collect();
                format!("{{ {} }}", set.join(", "))
            }
            _ => format!("? ({ty}'s default)"),
        },
    }
}

/// The value `fn name()` returns, as a file would write it.
fn function_value(name: &str, d: &Decls) -> String {
    d.functions.get(name).map_or_else(|| format!("? ({name}())"), |body| value(body, d))
}

/// A Rust expression of a default as TOML: `"x".into()` as `"x"`,
/// `Enum::Variant` as `"variant"`, `f()` as what `f` returns.
fn value(expr: &str, d: &Decls) -> String {
    let e = expr.trim().trim_end_matches(".into()").trim_end_matches(".to_string()");
    if let Some(f) = e.strip_suffix("()").filter(|f| d.functions.contains_key(*f)) {
        return function_value(f, d);
    }
    if let Some((ty, v)) = e.split_once("::").filter(|(ty, _)| d.enums.contains_key(*ty)) {
        return variant(ty, v, d);
    }
    e.to_string()
}

/// An enum variant as a file writes it: `"snake_case"`, or for an enum read
/// from a table (an initialiser), `{ kind = "snake_case" }`.
fn variant(ty: &str, v: &str, d: &Decls) -> String {
    let mut snake = String::new();
    for (i, c) in v.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    match d.enums.get(ty) {
        Some((_, _, true)) => format!("{{ kind = \"{snake}\" }}"),
        _ => format!("\"{snake}\""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipelines_readme_carries_the_current_schema() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/README.md")).unwrap();
        assert!(
            readme.contains(&super::render()),
            "pipelines/README.md is stale: regenerate its tail with\n  {{ sed '/^## Pipeline file format/,$d' \
             pipelines/README.md; cargo run --release -q -- schema; }} > /tmp/README.md && mv /tmp/README.md \
             pipelines/README.md"
        );
    }

    #[test]
    fn every_field_is_documented() {
        let doc = super::render();
        assert!(doc.contains("### Pipeline") && doc.contains("- `lr` (f32, required): Learning rate."), "{doc}");
        for line in doc.lines().filter(|l| l.starts_with("- `")) {
            assert!(!line.ends_with(": "), "undocumented field: {line}");
            // Every default resolved to a value.
            assert!(!line.contains("default ?"), "unresolved default: {line}");
        }
    }

    #[test]
    fn required_optional_and_defaulted_fields() {
        let doc = super::render();
        for want in [
            "- `lr` (f32, required): Learning rate.",
            "- `eval_every` (usize, default 50): Measure accuracies every N steps (and after the last).",
            "- `save` (String, default \"weights.safetensors\"): ",
            "- `eps` (Option<f64>, optional): ",
            "- `momentum` (f32, default 0): Momentum of \"sgd\"",
            "- `exact_validation` (bool, default false): ",
            "- `description` (String, default empty): ",
            "- `trials` (Vec<Trial>, default empty): ",
            "- `model` (Option<Model>, optional): ",
            "- `color` (ColorName, default \"gray\"): ",
            "- `select` (SelectMetric, default \"validation_accuracy\"): ",
            "- `weight_init` (InitSpec, default { kind = \"fan_in\" }): How weights start.",
            "- `data` (Data, default { dataset = \"mnist\" }): ",
            "- `split` (SplitCounts, default { train = 70, test = 10, validation = 20 }): ",
            "- `type` (String, required): ",
        ] {
            assert!(doc.contains(want), "missing '{want}' in:\n{doc}");
        }
    }

    #[test]
    fn attributes_decide_what_a_field_is() {
        let source = r#"
/// A thing.
#[derive(Deserialize)]
pub struct Thing {
    /// Needed.
    pub a: u32,
    /// Has a function default.
    #[serde(default = "seven")]
    pub b: usize,
    /// Has the type's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub c: Vec<u8>,
    /// May be absent.
    pub d: Option<String>,
    /// Renamed, with an enum default.
    #[serde(rename = "kind")]
    #[serde(default)]
    pub e: Mode,
}

#[derive(Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Slow,
    #[default]
    VeryFast,
}

fn seven() -> usize {
    7
}
"#;
        let doc = super::render_source(source);
        for want in [
            "- `a` (u32, required): Needed.",
            "- `b` (usize, default 7): Has a function default.",
            "- `c` (Vec<u8>, default empty): Has the type's default.",
            "- `d` (Option<String>, optional): May be absent.",
            "- `kind` (Mode, default \"very_fast\"): Renamed, with an enum default.",
        ] {
            assert!(doc.contains(want), "missing '{want}' in:\n{doc}");
        }
    }
}
