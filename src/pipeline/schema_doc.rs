//! `nabla schema`: the pipeline format, rendered from the doc comments of
//! `schema.rs` itself, so the documentation cannot drift from the parser.

const SOURCE: &str = include_str!("schema.rs");

/// Markdown: one section per struct or enum, one line per field.
pub fn render() -> String {
    let mut out = String::from("## Pipeline file format (version 1)\n\n");
    let mut doc: Vec<String> = Vec::new();
    let mut in_item = false;
    for line in SOURCE.lines() {
        let l = line.trim();
        if let Some(d) = l.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(rest) = l.strip_prefix("pub struct ").or_else(|| l.strip_prefix("pub enum ")) {
            // Plain enums of names are described by the fields that use them.
            let name = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap_or(rest);
            if !doc.is_empty() {
                out += &format!("### {name}\n\n{}\n\n", doc.join(" "));
            }
            in_item = l.starts_with("pub struct");
            doc.clear();
        } else if in_item && l.starts_with("pub ") && l.contains(':') {
            let (field, ty) = l.trim_start_matches("pub ").split_once(':').expect("checked");
            out += &format!("- `{field}` ({}): {}\n", ty.trim().trim_end_matches(','), doc.join(" "));
            doc.clear();
        } else if in_item && l.starts_with('}') {
            out += "\n";
            in_item = false;
        } else if !l.starts_with("#[") {
            doc.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipelines_readme_carries_the_current_schema() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/README.md")).unwrap();
        assert!(
            readme.contains(&super::render()),
            "pipelines/README.md is stale: replace everything after its intro with the output of `nabla schema`"
        );
    }

    #[test]
    fn every_field_is_documented() {
        let doc = super::render();
        assert!(doc.contains("### Pipeline") && doc.contains("- `lr` (f32): Learning rate."), "{doc}");
        for line in doc.lines().filter(|l| l.starts_with("- `")) {
            assert!(!line.ends_with(": "), "undocumented field: {line}");
        }
    }
}
