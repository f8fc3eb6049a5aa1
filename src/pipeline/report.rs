//! What a run found: numbers for `metrics.json`, figures and prose for
//! `report.md`, side by side with the reference report's numbers.

use serde_json::{json, Map, Value};

#[derive(Default)]
pub struct Report {
    /// Flat metrics (accuracies, losses, sweep results ...).
    pub metrics: Map<String, Value>,
    /// Sections of `report.md`, in order: (heading, markdown).
    pub sections: Vec<(String, String)>,
    /// Figures written: (file name, caption).
    pub figures: Vec<(String, String)>,
}

impl Report {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.metrics.insert(key.to_string(), value.into());
    }

    pub fn section(&mut self, heading: &str, body: String) {
        self.sections.push((heading.to_string(), body));
    }

    pub fn figure(&mut self, file: &str, caption: &str) {
        self.figures.push((file.to_string(), caption.to_string()));
    }

    /// `metrics.json`: the metrics plus provenance.
    pub fn metrics_json(&self, extra: Map<String, Value>) -> String {
        let mut all = self.metrics.clone();
        all.extend(extra);
        serde_json::to_string_pretty(&Value::Object(all)).expect("JSON values serialise") + "\n"
    }

    /// `report.md`: numbers beside the reference's, then sections and figures.
    pub fn markdown(
        &self,
        title: &str,
        description: &str,
        reference: &std::collections::BTreeMap<String, f64>,
    ) -> String {
        let mut md = format!("# {title}\n\n");
        if !description.is_empty() {
            md += &format!("{description}\n\n");
        }
        if !reference.is_empty() {
            md += "| metric | nabla | reference report |\n| --- | --- | --- |\n";
            for (k, r) in reference {
                let ours = self.metrics.get(k).and_then(Value::as_f64).map_or("-".to_string(), fmt_metric);
                md += &format!("| {k} | {ours} | {} |\n", fmt_metric(*r));
            }
            md += "\n";
        }
        for (h, body) in &self.sections {
            md += &format!("## {h}\n\n{body}\n\n");
        }
        for (file, caption) in &self.figures {
            md += &format!("![{caption}]({file})\n\n*{caption}*\n\n");
        }
        md
    }
}

/// Accuracies as percentages, other numbers as they are.
pub fn fmt_metric(v: f64) -> String {
    if (0.0..=1.0).contains(&v) {
        format!("{:.1} %", v * 100.0)
    } else {
        format!("{v:.4}")
    }
}

/// Provenance every `metrics.json` carries.
pub fn provenance(seed: u64, wall_seconds: f64, config: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("seed".into(), json!(seed));
    m.insert("wall_seconds".into(), json!(wall_seconds));
    m.insert("nabla_version".into(), json!(env!("CARGO_PKG_VERSION")));
    m.insert("config".into(), config);
    m.insert("cpu".into(), cpu_model().map_or(Value::Null, Value::from));
    m.insert("sgemm_kernel".into(), json!(crate::gemm::KernelChoice::Auto.resolve().name()));
    m.insert("threads".into(), json!(rayon::current_num_threads()));
    m
}

/// The CPU's model name from `/proc/cpuinfo`, where there is one (Linux).
fn cpu_model() -> Option<String> {
    let text = crate::files::read_text_capped(std::path::Path::new("/proc/cpuinfo"), 4 << 20).ok()?;
    cpu_model_in(&text)
}

/// The first `model name` line of a cpuinfo text.
fn cpu_model_in(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    let name = line.split_once(':')?.1.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_names_cpu_kernel_and_threads() {
        let m = provenance(3, 1.5, json!({}));
        assert_eq!(m["seed"], json!(3));
        let kernel = m["sgemm_kernel"].as_str().unwrap();
        assert!(["portable", "avx2", "avx512"].contains(&kernel), "{kernel}");
        assert!(m["threads"].as_u64().unwrap() >= 1);
        assert!(m["cpu"].is_string() || m["cpu"].is_null());
    }

    #[test]
    fn cpu_model_is_the_first_model_name_line() {
        let text = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nmodel name\t: other\n";
        assert_eq!(cpu_model_in(text).as_deref(), Some("Example CPU @ 2.0GHz"));
        assert_eq!(cpu_model_in("processor\t: 0\n"), None);
        assert_eq!(cpu_model_in("model name\t:   \n"), None);
    }
}
