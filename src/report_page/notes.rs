//! Where a reproduction cannot be exact, read from the run's own metadata.
//!
//! Each check looks at what the run recorded (its `metrics.json`, including
//! the config as it ran) so a note appears exactly when the run it describes
//! did the thing, and goes away when a rerun no longer does.

use super::text;
use serde_json::{Map, Value};

/// One caveat about a run's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// A short name ("Random-init backbone").
    pub title: String,
    /// What happened and what it means for the numbers, as plain text.
    pub text: String,
}

/// Every note that applies to the run with these metrics.
pub fn notes(metrics: &Map<String, Value>) -> Vec<Note> {
    [random_init(metrics), double_scale(metrics), edge_of_stability(metrics)].into_iter().flatten().collect()
}

/// Whether the run's backbone ran without its pretrained weights.
pub fn is_random_init(metrics: &Map<String, Value>) -> bool {
    metrics.get("weights").and_then(Value::as_str) == Some("random-init")
}

fn config<'a>(metrics: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(metrics.get("config")?, |v, k| v.get(k))
}

fn random_init(metrics: &Map<String, Value>) -> Option<Note> {
    if !is_random_init(metrics) {
        return None;
    }
    let kind = config(metrics, &["backbone", "kind"]).map_or("backbone".into(), text::setting);
    let file = config(metrics, &["backbone", "weights"])
        .map_or(String::new(), |w| format!(" (the weights file {} was not there)", text::setting(w)));
    Some(Note {
        title: "Random-init backbone".into(),
        text: format!(
            "This run's {kind} ran with random-init weights{file}, not the pretrained ones the report used. \
             Every number of the run (marked †) measures features of an untrained network; \
             put the pretrained weights in place and rerun to compare with the report."
        ),
    })
}

/// `data.scale` as the chosen trial ran it: the config's, unless the chosen
/// trial overrode it.
fn double_scale(metrics: &Map<String, Value>) -> Option<Note> {
    let base = config(metrics, &["data", "scale"]).and_then(Value::as_f64)?;
    let trials = config(metrics, &["trials"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let scale_of = |t: &Value| t.get("set").and_then(|s| s.get("data.scale")).and_then(Value::as_f64);
    let chosen_name = metrics.get("chosen_trial").and_then(Value::as_str);
    let chosen = trials.iter().find(|t| chosen_name.is_some() && t.get("name").and_then(Value::as_str) == chosen_name);
    let used = chosen.and_then(scale_of).unwrap_or(base);
    let twice = |s: f64| (s * 255.0 * 255.0 - 1.0).abs() < 1e-3;
    let mean_validation = |name: &str| {
        metrics
            .get("trials")
            .and_then(Value::as_array)?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?
            .get("mean_validation_accuracy")?
            .as_f64()
    };
    let trial_name = |t: &Value| t.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
    if twice(used) {
        let origin = match chosen {
            Some(t) if scale_of(t).is_some() => format!(", set by the chosen trial \"{}\"", trial_name(t)),
            _ => String::new(),
        };
        let other = trials.iter().filter(|t| scale_of(t).is_none_or(|s| !twice(s))).find_map(|t| {
            let n = trial_name(t);
            let effective = scale_of(t).unwrap_or(base);
            mean_validation(&n).filter(|_| !twice(effective)).map(|v| {
                format!(
                    " With pixels / 255 once (trial \"{n}\") mean validation accuracy was {}.",
                    text::number("accuracy", v)
                )
            })
        });
        return Some(Note {
            title: "Pixels divided by 255 twice".into(),
            text: format!(
                "The inputs ran with data.scale = {} (1/255²), as the report's code divided the pixels by 255 twice \
                 (values in [0, 1/255]){origin}. Its numbers are reproduced with that slip kept.{}",
                text::number("scale", used),
                other.unwrap_or_default()
            ),
        });
    }
    let tried = trials.iter().find(|t| scale_of(t).is_some_and(twice))?;
    let n = trial_name(tried);
    let result = mean_validation(&n)
        .map_or(String::new(), |v| format!(" (mean validation accuracy {})", text::number("accuracy", v)));
    Some(Note {
        title: "Pixels divided by 255 twice".into(),
        text: format!(
            "The report's code divided the pixels by 255 twice; this run tried that as trial \"{n}\"{result} \
             but reports the chosen trial, which scales by data.scale = {}.",
            text::setting(&Value::from(used))
        ),
    })
}

/// Full-batch descent whose loss rose between evaluations, or a sweep
/// setting whose validation accuracy collapsed from its best: signs the
/// step size sits at the edge of stability, where rounding decides.
fn edge_of_stability(metrics: &Map<String, Value>) -> Option<Note> {
    // Plain gradient descent on the whole set each step: epochs of
    // mini-batches or Adam have noise and step control of their own.
    let full_batch = config(metrics, &["train", "batch_size"]).and_then(Value::as_u64) == Some(0)
        && config(metrics, &["train", "batches_per_epoch"]).and_then(Value::as_u64).unwrap_or(1) <= 1
        && config(metrics, &["train", "optimizer"]).and_then(Value::as_str).unwrap_or("sgd") == "sgd";
    if !full_batch {
        return None;
    }
    let mut signs = Vec::new();
    let losses: Vec<f64> = metrics
        .get("learning_curve")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|p| p.get("loss").and_then(Value::as_f64)).collect())
        .unwrap_or_default();
    let rises: Vec<f64> = losses.windows(2).filter(|w| w[1] > w[0] && w[0] > 0.0).map(|w| w[1] / w[0]).collect();
    if !rises.is_empty() {
        let worst = rises.iter().copied().fold(0.0, f64::max);
        signs.push(format!(
            "the loss rose at {} of {} evaluations, up to {:.1}× the value before",
            rises.len(),
            losses.len().saturating_sub(1),
            worst
        ));
    }
    if let Some(sweep) = metrics.get("sweep") {
        let key = sweep.get("key").and_then(Value::as_str).unwrap_or("the swept value");
        for r in sweep.get("results").and_then(Value::as_array).into_iter().flatten() {
            let (Some(best), Some(last)) = (
                r.get("best_validation_accuracy").and_then(Value::as_f64),
                r.get("validation_accuracy").and_then(Value::as_f64),
            ) else {
                continue;
            };
            if best - last > 0.02 {
                let at = r.get("best_validation_iteration").map_or("?".into(), text::setting);
                let value = r.get("value").map_or("?".into(), text::setting);
                signs.push(format!(
                    "at {key} = {value} validation accuracy fell from {} (step {at}) to {} by the end",
                    text::number("accuracy", best),
                    text::number("accuracy", last)
                ));
            }
        }
    }
    if signs.is_empty() {
        return None;
    }
    // The value a sweep chose is the one the reported numbers ran with.
    let ran = |key: &str| {
        let sweep = metrics.get("sweep")?;
        (sweep.get("key")?.as_str()? == format!("train.{key}"))
            .then(|| sweep.get("chosen"))
            .flatten()
            .map(text::setting)
    };
    let lr = ran("lr").or_else(|| config(metrics, &["train", "lr"]).map(text::setting)).unwrap_or("?".into());
    let momentum =
        ran("momentum").or_else(|| config(metrics, &["train", "momentum"]).map(text::setting)).unwrap_or("0".into());
    let kernel = metrics.get("sgemm_kernel").and_then(Value::as_str).unwrap_or("not recorded");
    Some(Note {
        title: "Float rounding at the edge of stability".into(),
        text: format!(
            "Full-batch gradient descent (lr {lr}, momentum {momentum}) runs here at the edge of stability: {}. \
             There a step overshoots or not on the last bits of a sum, and the order of those sums depends on \
             the SGEMM kernel (this run: {kernel}) and on float32 against the report's float64, so the numbers \
             can differ from the report's by more than a seed's noise.",
            signs.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn random_init_is_read_from_the_weights_field() {
        let run = m(json!({"weights": "random-init", "config": {"backbone": {"kind": "alexnet", "weights": "w.pth"}}}));
        let n = notes(&run);
        assert_eq!(n.len(), 1);
        assert!(n[0].text.contains("alexnet") && n[0].text.contains("w.pth"), "{}", n[0].text);
        assert!(notes(&m(json!({"weights": "data/alexnet.pth", "config": {}}))).is_empty());
    }

    #[test]
    fn double_scale_follows_the_chosen_trial() {
        let twice = 1.0 / 65025.0;
        let run = |chosen: &str| {
            m(json!({
                "chosen_trial": chosen,
                "config": {"data": {"scale": 1.0 / 255.0},
                           "trials": [{"name": "plain", "set": {}}, {"name": "twice", "set": {"data.scale": twice}}]},
                "trials": [{"name": "plain", "mean_validation_accuracy": 0.7}, {"name": "twice", "mean_validation_accuracy": 0.82}]
            }))
        };
        let n = notes(&run("twice"));
        assert_eq!(n.len(), 1);
        assert!(n[0].text.contains("chosen trial \"twice\"") && n[0].text.contains("70.0 %"), "{}", n[0].text);
        let n = notes(&run("plain"));
        assert!(n[0].text.contains("tried that as trial \"twice\"") && n[0].text.contains("82.0 %"), "{}", n[0].text);
        // Scaled once, with no such trial: nothing to say.
        assert!(notes(&m(json!({"config": {"data": {"scale": 1.0 / 255.0}}}))).is_empty());
        // Scaled twice in the config itself.
        assert_eq!(notes(&m(json!({"config": {"data": {"scale": twice}}}))).len(), 1);
    }

    #[test]
    fn edge_of_stability_needs_full_batch_and_a_sign() {
        let curve = json!([{"loss": null}, {"loss": 10.0}, {"loss": 8.0}, {"loss": 24.0}, {"loss": 7.0}]);
        let run =
            m(json!({"config": {"train": {"batch_size": 0, "lr": 1e-4, "momentum": 0.8}}, "learning_curve": curve,
                           "sgemm_kernel": "avx2"}));
        let n = notes(&run);
        assert_eq!(n.len(), 1);
        assert!(
            n[0].text.contains("rose at 1 of 3 evaluations, up to 3.0×") && n[0].text.contains("avx2"),
            "{}",
            n[0].text
        );
        let mini = m(json!({"config": {"train": {"batch_size": 32}}, "learning_curve": curve}));
        assert!(notes(&mini).is_empty());
        let epochs =
            m(json!({"config": {"train": {"batch_size": 0, "batches_per_epoch": 6}}, "learning_curve": curve}));
        assert!(notes(&epochs).is_empty());
        let adam = m(json!({"config": {"train": {"batch_size": 0, "optimizer": "adam"}}, "learning_curve": curve}));
        assert!(notes(&adam).is_empty());
        let smooth =
            m(json!({"config": {"train": {"batch_size": 0}}, "learning_curve": [{"loss": 3.0}, {"loss": 2.0}]}));
        assert!(notes(&smooth).is_empty());
        let swept = m(
            json!({"config": {"train": {"batch_size": 0, "lr": 1e-4}}, "sweep": {"key": "train.lr", "chosen": "0.00001", "results": [
            {"value": "0.00005", "best_validation_accuracy": 0.9256, "best_validation_iteration": 700, "validation_accuracy": 0.8134},
            {"value": "0.00001", "best_validation_accuracy": 0.92, "best_validation_iteration": 1000, "validation_accuracy": 0.92}]}}),
        );
        let n = notes(&swept);
        assert!(
            n[0].text.contains("train.lr = 0.00005 validation accuracy fell from 92.6 % (step 700) to 81.3 %"),
            "{}",
            n[0].text
        );
    }
}
