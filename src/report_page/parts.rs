//! The reference report's parts, in its order, and which pipeline runs each.
//!
//! This is the one fixed list the page holds: the report's table of
//! contents. Everything said about a run comes from its own folder.

/// One numbered part of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    /// The report's heading for the part.
    pub title: &'static str,
    /// The pipeline (and run folder) that reproduces it; `None` for a part
    /// that is code rather than an experiment.
    pub pipeline: Option<&'static str>,
    /// Said in place of a run for a part without a pipeline.
    pub without_run: &'static str,
}

/// Parts 1-10 of the report.
pub const PARTS: [Part; 10] = [
    Part { number: 1, title: "Digits", pipeline: Some("part1"), without_run: "" },
    Part {
        number: 2,
        title: "The network",
        pipeline: None,
        without_run: "The report's part 2 is code, not an experiment: the one-layer softmax network \
                      (784 -> 10) that part 3 checks and parts 4 and 5 train.",
    },
    Part { number: 3, title: "Gradient", pipeline: Some("part3"), without_run: "" },
    Part { number: 4, title: "Training", pipeline: Some("part4"), without_run: "" },
    Part { number: 5, title: "Training with momentum", pipeline: Some("part5"), without_run: "" },
    Part { number: 6, title: "Analysis of momentum", pipeline: Some("part6"), without_run: "" },
    Part { number: 7, title: "Efficiency of vectorized backpropagation", pipeline: Some("part7"), without_run: "" },
    Part { number: 8, title: "Classifying faces", pipeline: Some("part8"), without_run: "" },
    Part { number: 9, title: "Visualizing weights", pipeline: Some("part9"), without_run: "" },
    Part { number: 10, title: "AlexNet", pipeline: Some("part10"), without_run: "" },
];

/// Whether a run folder belongs to one of the report's parts.
pub fn is_report_part(name: &str) -> bool {
    PARTS.iter().any(|p| p.pipeline == Some(name))
}

/// The command that reproduces the run of pipeline `name`; a name with
/// characters a shell would read is single-quoted, control characters shown
/// as `?`, so the line can be pasted as it is.
pub fn command(name: &str) -> String {
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let file = format!("pipelines/{name}.toml");
    if plain {
        return format!("cargo run --release -- {file}");
    }
    let quoted: String = file.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    format!("cargo run --release -- '{}'", quoted.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_in_order_and_name_distinct_pipelines() {
        for (i, p) in PARTS.iter().enumerate() {
            assert_eq!(p.number as usize, i + 1);
            assert!(p.pipeline.is_some() || !p.without_run.is_empty());
        }
        let mut names: Vec<_> = PARTS.iter().filter_map(|p| p.pipeline).collect();
        names.dedup();
        assert_eq!(names.len(), 9);
        assert!(is_report_part("part10") && !is_report_part("part10_finetune"));
    }

    #[test]
    fn commands_quote_names_a_shell_would_read() {
        assert_eq!(command("part4"), "cargo run --release -- pipelines/part4.toml");
        assert_eq!(command("a b;rm"), "cargo run --release -- 'pipelines/a b;rm.toml'");
        assert_eq!(command("it's\n"), "cargo run --release -- 'pipelines/it'\\''s?.toml'");
    }
}
