//! A confusion matrix: how often each true class was predicted as each
//! class, and what follows from it (accuracy, per-class precision and
//! recall). Rows are true classes, columns predicted ones, as in
//! scikit-learn's `confusion_matrix`.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    pub classes: Vec<String>,
    /// `counts[t][p]`: examples of true class `t` predicted as `p`.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Count `(truth, predicted)` pairs; labels outside `classes` are an error.
    pub fn new(classes: &[String], truth: &[usize], predicted: &[usize]) -> Result<Confusion, String> {
        let k = classes.len();
        if truth.len() != predicted.len() {
            return Err(format!("{} labels but {} predictions", truth.len(), predicted.len()));
        }
        let mut counts = vec![vec![0u64; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            if t >= k || p >= k {
                return Err(format!("label {} or prediction {p} is not one of the {k} classes", t));
            }
            counts[t][p] += 1;
        }
        Ok(Confusion { classes: classes.to_vec(), counts })
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes.len()).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction right; 0 for no examples.
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }

    /// Of the examples of class `c`, the fraction predicted `c` (None when
    /// the class has no examples).
    pub fn recall(&self, c: usize) -> Option<f64> {
        let n: u64 = self.counts[c].iter().sum();
        (n > 0).then(|| self.counts[c][c] as f64 / n as f64)
    }

    /// Of the examples predicted `c`, the fraction that are `c` (None when
    /// nothing was predicted `c`).
    pub fn precision(&self, c: usize) -> Option<f64> {
        let n: u64 = self.counts.iter().map(|row| row[c]).sum();
        (n > 0).then(|| self.counts[c][c] as f64 / n as f64)
    }

    /// Per-class precision, recall and support, and the matrix, as text
    /// tables in Markdown (which a terminal shows as it is).
    pub fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        let mut s = String::from("| class | precision | recall | examples |\n| --- | ---: | ---: | ---: |\n");
        for (c, name) in self.classes.iter().enumerate() {
            let support: u64 = self.counts[c].iter().sum();
            s += &format!("| {} | {} | {} | {support} |\n", cell(name), pct(self.precision(c)), pct(self.recall(c)));
        }
        s += &format!(
            "| **all** | | **{:.2} % accuracy** | {} |\n\nRows: true class; columns: predicted class.\n\n| true \\ predicted |",
            self.accuracy() * 100.0,
            self.total()
        );
        for name in &self.classes {
            s += &format!(" {} |", cell(name));
        }
        s += "\n| --- |";
        s += &" ---: |".repeat(self.classes.len());
        s += "\n";
        for (name, row) in self.classes.iter().zip(&self.counts) {
            s += &format!("| {} |", cell(name));
            for n in row {
                s += &format!(" {n} |");
            }
            s += "\n";
        }
        s
    }

    /// The matrix and the per-class numbers for `metrics.json` / `--json`.
    pub fn json(&self) -> Value {
        let per_class: Vec<Value> = (0..self.classes.len())
            .map(|c| {
                json!({
                    "class": self.classes[c],
                    "precision": self.precision(c),
                    "recall": self.recall(c),
                    "examples": self.counts[c].iter().sum::<u64>(),
                })
            })
            .collect();
        json!({ "classes": self.classes, "counts": self.counts, "accuracy": self.accuracy(), "per_class": per_class })
    }
}

/// A class name inside a Markdown table cell.
fn cell(name: &str) -> String {
    name.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn counts_precision_and_recall() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let c = Confusion::new(&names(3), &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]).unwrap();
        assert_eq!(c.counts, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert_eq!(c.total(), 6);
        assert_eq!(c.correct(), 4);
        assert!((c.recall(0).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.precision(1).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(c.precision(2), Some(0.5));
        let md = c.markdown();
        assert!(md.contains("| c0 | 100.0 % | 66.7 % | 3 |"), "{md}");
        assert!(md.contains("| c1 | 0 | 1 | 1 |"), "{md}");
    }

    #[test]
    fn empty_classes_have_no_precision_or_recall() {
        let c = Confusion::new(&names(3), &[0, 0], &[0, 1]).unwrap();
        assert_eq!(c.recall(2), None);
        assert_eq!(c.precision(2), None);
        assert_eq!(c.json()["per_class"][2]["recall"], Value::Null);
    }

    #[test]
    fn labels_outside_the_classes_are_refused() {
        assert!(Confusion::new(&names(2), &[0, 2], &[0, 1]).is_err());
        assert!(Confusion::new(&names(2), &[0], &[0, 1]).is_err());
    }
}
