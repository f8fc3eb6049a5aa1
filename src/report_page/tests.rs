//! The generator on a folder of tiny hand-made runs, some of them hostile.

use super::*;
use serde_json::{json, Value};
use std::fs;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nabla-page-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png)
        .unwrap();
    bytes
}

/// A run folder: metrics.json, and a report.md naming `figures`, each written as a PNG.
fn run(dir: &Path, name: &str, metrics: &Value, figures: &[(&str, &str)]) {
    let d = dir.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("metrics.json"), serde_json::to_string_pretty(metrics).unwrap()).unwrap();
    let mut md = format!("# {name}\n\n");
    for (i, (file, caption)) in figures.iter().enumerate() {
        fs::write(d.join(file), png(4 + i as u32, 3)).unwrap();
        md += &format!("![{caption}]({file})\n\n*{caption}*\n\n");
    }
    fs::write(d.join("report.md"), md).unwrap();
}

/// Standard base64 back to bytes (the test's own decoder, not the encoder's inverse).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s {
        acc = acc << 6 | val(c) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Every `(data-value, alt)` embedded image, decoded.
fn embedded_images(html: &str) -> Vec<(image::DynamicImage, String)> {
    html.split("<img src=\"data:image/png;base64,")
        .skip(1)
        .map(|rest| {
            let (b64, after) = rest.split_once('"').unwrap();
            let alt = after.split_once("alt=\"").unwrap().1.split_once('"').unwrap().0.to_string();
            (image::load_from_memory_with_format(&unbase64(b64), image::ImageFormat::Png).unwrap(), alt)
        })
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    let dir = temp(name);
    run(
        &dir,
        "part4",
        &json!({"test_accuracy": 0.913, "train_accuracy": 0.91695, "final_loss": 17657.224609375, "seed": 0,
                "wall_seconds": 81.4, "cpu": "Test CPU", "sgemm_kernel": "avx2", "threads": 2, "nabla_version": "0.1.0",
                "config": {"description": "Softmax regression.", "reference": {"test_accuracy": 0.919, "train_accuracy": 0.926},
                           "train": {"batch_size": 0, "lr": 0.00009999999747378752, "optimizer": "sgd"},
                           "data": {"dataset": "mnist"}},
                "learning_curve": [{"loss": null}, {"loss": 10.0}, {"loss": 12.0}, {"loss": 9.0}]}),
        &[("figure2_learning_curve.png", "Learning curve"), ("figure3_weights.png", "Weights <red> & \"blue\"")],
    );
    run(
        &dir,
        "part10",
        &json!({"test_accuracy": 0.9166666666666666, "weights": "random-init", "wall_seconds": 33.2,
                "config": {"reference": {"test_accuracy": 0.8}, "backbone": {"kind": "alexnet", "weights": "a.pth"}}}),
        &[("curve.png", "AlexNet curve")],
    );
    run(
        &dir,
        "lenet5",
        &json!({"test_accuracy": 0.9898, "config": {"reference": {"test_accuracy": 0.989}}}),
        &[("f.png", "filters")],
    );
    run(
        &dir,
        "<b>odd & [name](x)",
        &json!({"loss_x": 1.5, "config": {"description": "<script>alert(1)</script>"}}),
        &[],
    );
    // Broken: not JSON; JSON but not an object; config of the wrong type.
    for (name, text) in [("part8", "{\"test_accuracy\": 0.8,"), ("part9", "[1, 2]"), ("sweep_bad", "{\"config\": 3}")] {
        fs::create_dir_all(dir.join(name)).unwrap();
        fs::write(dir.join(name).join("metrics.json"), text).unwrap();
    }
    // A folder that is no run, and a file at the top.
    fs::create_dir_all(dir.join("checkpoints")).unwrap();
    fs::write(dir.join("README.md"), "# resources\n").unwrap();
    dir
}

#[test]
fn every_run_appears_with_its_figures_and_exact_numbers() {
    let dir = fixture("all");
    let w = generate(&dir, None).unwrap();
    assert_eq!(w.runs, 4);
    let html = fs::read_to_string(dir.join("index.html")).unwrap();
    let md = fs::read_to_string(dir.join("REPORT.md")).unwrap();

    // Runs of the report's parts, in order, then the extras.
    let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(at("id=\"part1\"") < at("id=\"part4\"") && at("id=\"part4\"") < at("id=\"part10\""));
    assert!(at("id=\"part10\"") < at("id=\"beyond\"") && at("id=\"beyond\"") < at(">lenet5</h3>"));
    assert!(html.contains("&lt;b&gt;odd &amp; [name](x)</h3>"));
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // Every figure is embedded, decodes, and carries its caption as alt text.
    let images = embedded_images(&html);
    let alts: Vec<&str> = images.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(alts, ["Learning curve", "Weights &lt;red&gt; &amp; &quot;blue&quot;", "AlexNet curve", "filters"]);
    assert_eq!((images[0].0.width(), images[1].0.width()), (4, 5));
    assert!(md.contains("![Learning curve](part4/figure2_learning_curve.png)"));
    assert!(md.contains("![Weights &lt;red&gt; &amp; \"blue\"](part4/figure3_weights.png)"));

    // Every number in a table is the run's metrics.json value, exactly.
    for name in ["part4", "part10", "lenet5"] {
        let metrics: Value =
            serde_json::from_str(&fs::read_to_string(dir.join(name).join("metrics.json")).unwrap()).unwrap();
        let section = html.split(&format!("<code>{name}</code>")).next().unwrap();
        let section = &section[section.rfind("<table>").unwrap()..];
        let mut rows = 0;
        for row in section.split("<tr><td>").skip(1) {
            let metric = row.split_once("</td>").unwrap().0;
            let exact = row.split_once("data-value=\"").unwrap().1.split_once('"').unwrap().0;
            assert_eq!(exact.parse::<f64>().unwrap(), metrics[metric].as_f64().unwrap(), "{name} {metric}");
            let shown = row.split_once("\">").unwrap().1.split(['<']).next().unwrap();
            assert_eq!(shown, text::number(metric, metrics[metric].as_f64().unwrap()));
            assert!(md.contains(&format!("| {} | {shown}", text::markdown(metric))), "{metric} not in REPORT.md");
            rows += 1;
        }
        assert!(rows >= 1, "{name} has no table");
    }
    assert!(
        html.contains("<td>91.3 %</td><td>91.9 %</td><td>-0.6 pt</td>")
            || html.contains(">91.3 %</td><td>91.9 %</td><td>-0.6 pt</td>")
    );

    // Random-init: every number of that run is marked, and the note says why.
    let p10 = &html[at("id=\"part10\"")..at("id=\"beyond\"")];
    assert_eq!(
        p10.matches("<td data-value").count(),
        p10.matches("title=\"random-init backbone weights\">†").count() - 1
    );
    assert!(p10.contains("Random-init backbone") && p10.contains("a.pth"));
    assert!(md.contains("| test\\_accuracy | 91.7 % † | 80.0 % | +11.7 pt † |"));
    // Edge of stability from part4's rising full-batch loss.
    assert!(html.contains("rose at 1 of 2 evaluations"));
    // Provenance, and "not recorded" for a run without it.
    assert!(html.contains("CPU: Test CPU · SGEMM kernel: avx2 · threads: 2"));
    assert!(html.contains("CPU: not recorded · SGEMM kernel: not recorded · threads: not recorded"));
    assert!(html.contains("lr = 0.0001"));

    // Missing parts are "not run" with their command; part 8's broken run is one of them.
    for part in ["part1", "part3", "part8"] {
        let s = &html[at(&format!("id=\"{part}\""))..];
        let s = &s[..s.find("</section>").unwrap()];
        assert!(
            s.contains("not run") && s.contains(&format!("cargo run --release -- pipelines/{part}.toml")),
            "{part}"
        );
        assert!(md.contains(&format!("pipelines/{part}.toml")));
    }
    // Broken folders are named in the warnings.
    for bad in ["part8", "part9", "sweep_bad"] {
        assert!(w.warnings.iter().any(|x| x.contains(bad)), "{bad} not warned: {:?}", w.warnings);
    }
    assert!(!w.warnings.iter().any(|x| x.contains("checkpoints") || x.contains("README")));
    // No script, and no temporary files left.
    assert!(!html.to_lowercase().contains("<script"));
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
}

#[test]
fn hostile_folders_are_skipped_and_named() {
    let dir = fixture("hostile");
    // A figure that is not a PNG, one that is a symlink out of the folder, one path outside.
    let d = dir.join("part3");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("metrics.json"), "{\"gradcheck_passed\": true}").unwrap();
    fs::write(d.join("fake.png"), b"GIF89a not a png").unwrap();
    std::os::unix::fs::symlink(dir.join("part4").join("figure3_weights.png"), d.join("link.png")).unwrap();
    fs::write(
        d.join("report.md"),
        "![fake](fake.png)\n![link](link.png)\n![up](../part4/figure3_weights.png)\n![gone](gone.png)\n",
    )
    .unwrap();
    // A run folder that is a symlink, a metrics.json that is a symlink, one too large.
    std::os::unix::fs::symlink(dir.join("part4"), dir.join("part5")).unwrap();
    fs::create_dir_all(dir.join("part6")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("part6").join("metrics.json")).unwrap();
    fs::create_dir_all(dir.join("part7")).unwrap();
    let huge = fs::File::create(dir.join("part7").join("metrics.json")).unwrap();
    huge.set_len(read::METRICS_LIMIT + 1).unwrap();

    let w = generate(&dir, None).unwrap();
    let html = fs::read_to_string(dir.join("index.html")).unwrap();
    let warned = |what: &str| w.warnings.iter().any(|x| x.contains(what));
    assert!(warned("fake.png: not a PNG"), "{:?}", w.warnings);
    assert!(warned("link.png: a symlink"), "{:?}", w.warnings);
    assert!(warned("gone.png"), "{:?}", w.warnings);
    assert!(warned("part5: a symlink"), "{:?}", w.warnings);
    assert!(warned("part6") && warned("part7") && warned("bytes"), "{:?}", w.warnings);
    // part3 ran (its figures are left out), parts 5-7 are not run.
    let p3 = &html[html.find("id=\"part3\"").unwrap()..html.find("id=\"part4\"").unwrap()];
    assert!(!p3.contains("not run") && !p3.contains("<img"));
    for part in ["part5", "part6", "part7"] {
        let s = &html[html.find(&format!("id=\"{part}\"")).unwrap()..];
        assert!(s[..s.find("</section>").unwrap()].contains("not run"), "{part}");
    }
}

#[test]
fn markdown_links_lead_from_the_out_folder_to_the_runs() {
    let dir = fixture("links");
    let out = temp("links-out").join("site").join("page.html");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let w = generate(&dir, Some(&out)).unwrap();
    assert_eq!(w.markdown, out.parent().unwrap().join("REPORT.md"));
    let md = fs::read_to_string(&w.markdown).unwrap();
    let link = md.split("![Learning curve](").nth(1).unwrap().split(')').next().unwrap();
    let target = out.parent().unwrap().join(link);
    assert!(target.is_file(), "{link} does not lead to the figure");
    assert!(fs::read_to_string(&out).unwrap().starts_with("<!DOCTYPE html>"));
}

#[test]
fn unwritable_outputs_fail_without_leaving_files() {
    let dir = fixture("unwritable");
    let e = generate(&dir, Some(&dir.join("nope").join("x.html"))).unwrap_err();
    assert!(e.to_string().contains("x.html: cannot write"), "{e}");
    let e = generate(&dir, Some(&dir)).unwrap_err();
    assert!(e.to_string().contains("is a folder"), "{e}");
    let e = generate(&dir.join("absent"), None).unwrap_err();
    assert!(e.to_string().contains("absent: cannot list"), "{e}");
    assert!(!dir.join("index.html").exists());
}

#[test]
fn link_prefix_is_relative_and_encoded() {
    let root = temp("prefix");
    let (a, b) = (root.join("a").join("b"), root.join("r s"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    assert_eq!(link_prefix(&a, &b), "../../r%20s/");
    assert_eq!(link_prefix(&b, &b), "");
}
