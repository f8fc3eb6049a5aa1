//! The `nabla` command: run pipeline files, check them, print their schema.

use nabla::gemm::KernelChoice;
use nabla::pipeline::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
nabla: a small deep-learning engine you can read in an afternoon

USAGE:
    nabla [OPTIONS] <pipeline.toml>...   run pipeline files in order
    nabla check <pipeline.toml>...       validate files without running them
    nabla schema                         print the pipeline file format
    nabla fetch facescrub --list FILE --out DIR [--actors a,b] [--size 32] [--gray|--rgb]
                         [--timeout SECONDS] [--jobs N]
                                         download, check, crop and resize FaceScrub images
    nabla kernels                        list the SGEMM kernels this CPU runs
    nabla predict RUN_DIR INPUT... [--top K] [--json] [--batch N]
                                         classify images, folders of images or IDX
                                         files with a trained run's model
    nabla eval RUN_DIR [--data PATH [--labels FILE]] [--out DIR] [--json] [--wait]
                                         accuracy, per-class precision and recall and
                                         the confusion matrix, on the run's test split
                                         or other labelled data (figures into
                                         --out, default eval/<run name>)
    nabla time <pipeline.toml> [--batch N] [--iterations K] [--json]
                                         time each layer's forward and backward pass
    nabla report [RESOURCES_DIR] [--out FILE.html]
                                         one page of every run beside the report
                                         (resources/index.html and REPORT.md)

OPTIONS:
    --set section.key=value   override a field (repeatable), e.g. --set train.lr=1e-3
    --out DIR                 output folder (default resources/<name>; one file only)
    --quiet                   no progress bars
    --resume                  continue from the last checkpoint of an interrupted run
                              (stages with checkpoint_every set save them)
    --wait                    wait for another run writing the same output folder
                              (without it, the second run stops at once)
    -h, --help                this help
    -V, --version             the version

EXAMPLES:
    cargo run --release -- pipelines/part4.toml
    cargo run --release -- pipelines/part4.toml --set train.iterations=100 --out /tmp/p4
    cargo run --release -- check pipelines/*.toml

Each run writes its figures (PNG), metrics.json and report.md into the output
folder, all at once when the run succeeds; a failed run writes nothing. An
earlier run's folder (marked by nabla, holding only what it wrote) is replaced
whole; any other existing folder, or one the run reads from, is refused.
";

struct Args {
    command: Option<String>,
    files: Vec<PathBuf>,
    sets: Vec<String>,
    out: Option<PathBuf>,
    quiet: bool,
    resume: bool,
    wait: bool,
}

fn parse_args(raw: Vec<String>) -> Result<Args, String> {
    let mut a =
        Args { command: None, files: vec![], sets: vec![], out: None, quiet: false, resume: false, wait: false };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--set" => a.sets.push(it.next().ok_or("--set needs section.key=value")?),
            "--out" => a.out = Some(out_folder(it.next().ok_or("--out needs a folder")?)?),
            "--quiet" | "-q" => a.quiet = true,
            "--resume" => a.resume = true,
            "--wait" => a.wait = true,
            "-h" | "--help" | "-V" | "--version" => a.command = Some(arg),
            s if s.starts_with("--set=") => a.sets.push(s["--set=".len()..].to_string()),
            s if s.starts_with("--out=") => a.out = Some(out_folder(s["--out=".len()..].to_string())?),
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            "check" | "schema" | "kernels" if a.command.is_none() && a.files.is_empty() => a.command = Some(arg),
            _ => a.files.push(PathBuf::from(arg)),
        }
    }
    Ok(a)
}

/// `--out`'s folder: it must end in a folder name of its own, since the run
/// replaces that folder whole (`pipeline::output`).
fn out_folder(arg: String) -> Result<PathBuf, String> {
    use nabla::pipeline::output::{Kind, Target};
    let t = Target::new(&PathBuf::from(arg), Kind::Run).map_err(|e| format!("--out {e}"))?;
    Ok(t.dir().to_path_buf())
}

/// The output folder of each loaded file; refuses two that are the same
/// folder (two files with one `name`, compared ignoring case like some file
/// systems do) or folders a run cannot replace, before anything runs.
fn output_folders(loaded: &[pipeline::Loaded], out: &Option<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for l in loaded {
        // As `pipeline::run` chooses it.
        let target = pipeline::target(l, out.as_deref()).map_err(|e| format!("--out {e}"))?;
        let dir = target.dir().to_path_buf();
        let key = dir.to_string_lossy().to_lowercase();
        if let Some(j) = dirs.iter().position(|d| d.to_string_lossy().to_lowercase() == key) {
            return Err(format!(
                "{}: name: '{}' is also the name of {}: both would write {}; give each its own name, or run them \
                 one at a time with --out",
                l.file.display(),
                l.pipeline.name,
                loaded[j].file.display(),
                dir.display()
            ));
        }
        target.check().map_err(|e| format!("{}: output folder {e}", l.file.display()))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// A whole number from 1 to `max` for `flag`.
fn count(flag: &str, v: Option<&String>, max: usize) -> Result<usize, String> {
    v.and_then(|v| v.parse().ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{flag} needs a whole number from 1 to {max}"))
}

/// `nabla predict RUN_DIR INPUT... [--top K] [--json] [--batch N] [--quiet]`;
/// true when every input was classified.
fn predict(raw: &[String]) -> nabla::Result<bool> {
    use nabla::pipeline::apply::predict::{predict, PredictOptions};
    let mut opts = PredictOptions { top: 3, json: false, batch: 256, progress: true };
    let mut paths = Vec::new();
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--top" => opts.top = count("--top", it.next(), 100_000)?,
            "--batch" => opts.batch = count("--batch", it.next(), 65_536)?,
            "--json" => opts.json = true,
            "--quiet" | "-q" => opts.progress = false,
            s if s.starts_with('-') => return Err(format!("predict: unknown option '{s}'").into()),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.len() < 2 {
        return Err("usage: nabla predict RUN_DIR INPUT... [--top K] [--json] [--batch N] [--quiet]".into());
    }
    let run = paths.remove(0);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let s = predict(&run, &paths, &opts, &mut out)?;
    std::io::Write::flush(&mut out).map_err(|e| format!("cannot write the results: {e}"))?;
    nabla::say!("predicted {}, failed {}", s.predicted, s.failed);
    Ok(s.failed == 0)
}

/// `nabla eval RUN_DIR [--data PATH [--labels FILE]] [--out DIR] [--json]`;
/// true when every input was used.
fn eval(raw: &[String]) -> nabla::Result<bool> {
    use nabla::pipeline::apply::{eval, RunModel};
    use nabla::pipeline::output::{Kind, Outputs, Target, Wait};
    let (mut data, mut labels, mut out, mut json, mut wait) = (None, None, None, false, false);
    let mut paths = Vec::new();
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data" => data = Some(PathBuf::from(it.next().ok_or("--data needs a folder or an IDX file")?)),
            "--labels" => labels = Some(PathBuf::from(it.next().ok_or("--labels needs an IDX labels file")?)),
            "--out" => out = Some(out_folder(it.next().ok_or("--out needs a folder")?.clone())?),
            "--json" => json = true,
            "--wait" => wait = true,
            s if s.starts_with('-') => return Err(format!("eval: unknown option '{s}'").into()),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let [run] = paths.as_slice() else {
        return Err("usage: nabla eval RUN_DIR [--data PATH [--labels FILE]] [--out DIR] [--json]".into());
    };
    let model = RunModel::open(run)?;
    // The manifest's name was checked to be one folder name.
    let dir = out.unwrap_or_else(|| PathBuf::from("eval").join(&model.manifest.name));
    let mut target = Target::new(&dir, Kind::Eval)?
        .writes(["confusion.png", "mistakes.png"].map(String::from))
        .reads("the run folder", run);
    if let Some(d) = &data {
        target = target.reads("--data", d);
    } else {
        // The run's own test split, from its data folder.
        target = target.reads("the run's data.root", &model.pipeline.data.resolved_root());
    }
    if let Some(w) = model.pipeline.backbone.as_ref().and_then(|b| b.weights.as_ref()) {
        target = target.reads("the run's backbone.weights", w);
    }
    if let Some(l) = &labels {
        target = target.reads("--labels", l);
    }
    target.check()?;
    let mut outputs = Outputs::new(&target, if wait { Wait::Yes } else { Wait::No })?;
    let source = eval::data_from_args(&model, data.as_deref(), labels.as_deref())?;
    let e = eval::evaluate(&model, &source)?;
    let report = serde_json::to_string_pretty(&e.json(run)).expect("JSON values serialise") + "\n";
    let figure = nabla::plot::ConfusionPlot {
        title: format!(
            "{}: {:.2} % right of {}",
            model.manifest.name,
            e.confusion.accuracy() * 100.0,
            e.confusion.total()
        ),
        classes: e.confusion.classes.clone(),
        counts: e.confusion.counts.clone(),
    };
    let fail = |e: nabla::Error| e.to_string();
    outputs.write("confusion.png", &figure.png().map_err(fail)?)?;
    if let Some(png) = e.mistakes_png(&model).map_err(fail)? {
        outputs.write("mistakes.png", &png)?;
    }
    outputs.write("metrics.json", report.as_bytes())?;
    let written = outputs.commit()?;
    if json {
        print!("{report}");
    } else {
        println!("{}", nabla::terminal::clean(&format!("run {}\ndata: {}", run.display(), e.data)));
        if e.ignored > 0 {
            println!("left out: {} images of classes the model does not know", e.ignored);
        }
        println!("\n{}", e.confusion.markdown());
    }
    for f in written {
        nabla::say!("wrote {}", f.display());
    }
    if !e.failed.is_empty() {
        nabla::say!("{} inputs could not be used (named above)", e.failed.len());
    }
    Ok(e.failed.is_empty())
}

/// `nabla fetch facescrub ...`
fn fetch(raw: &[String]) -> nabla::Result<()> {
    let mut it = raw.iter();
    if it.next().map(String::as_str) != Some("facescrub") {
        return Err(
            "usage: nabla fetch facescrub --list FILE --out DIR [--actors a,b] [--size 32] [--gray|--rgb]".into()
        );
    }
    let mut opts = nabla::fetch::FetchOptions {
        list: PathBuf::new(),
        actors: vec![],
        out: PathBuf::new(),
        size: 32,
        gray: true,
        timeout: std::time::Duration::from_secs(10),
        jobs: 8,
        progress: true,
    };
    // Out of range is an error, not silently clamped.
    let number = |flag: &str, v: Option<&String>, max: u64| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("{flag} needs a positive whole number, at most {max}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => opts.list = PathBuf::from(it.next().ok_or("--list needs a file")?),
            "--out" => opts.out = PathBuf::from(it.next().ok_or("--out needs a folder")?),
            "--actors" => {
                opts.actors =
                    it.next().ok_or("--actors needs names")?.split(',').map(|a| a.trim().to_ascii_lowercase()).collect()
            }
            "--size" => opts.size = number("--size", it.next(), 4096)? as u32,
            "--timeout" => opts.timeout = std::time::Duration::from_secs(number("--timeout", it.next(), 3600)?),
            "--jobs" => opts.jobs = number("--jobs", it.next(), 32)? as usize,
            "--gray" => opts.gray = true,
            "--rgb" => opts.gray = false,
            "--quiet" | "-q" => opts.progress = false,
            other => return Err(format!("fetch: unknown option '{other}'").into()),
        }
    }
    if opts.list.as_os_str().is_empty() || opts.out.as_os_str().is_empty() {
        return Err("fetch: --list and --out are required".into());
    }
    let s = nabla::fetch::fetch(&opts)?;
    let done = format!(
        "fetched {}, already present {}, failed {} (into {})",
        s.fetched,
        s.already_present,
        s.failed.len(),
        opts.out.display()
    );
    println!("{}", nabla::terminal::clean(&done));
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, _, r) in &s.failed {
        *reasons.entry(r.split(':').next().unwrap_or(r).to_string()).or_default() += 1;
    }
    for (r, n) in reasons {
        println!("{}", nabla::terminal::clean(&format!("  {n} x {r}")));
    }
    Ok(())
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as other Unix tools do, instead
    // of a panic on the closed pipe.
    // SAFETY: restoring the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Training reallocates the same large buffers every step (see `memory`).
    nabla::memory::keep_freed_memory();
    // nabla reads and writes UTF-8 names only: another argument is refused, not a panic.
    let mut raw: Vec<String> = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => raw.push(a),
            Err(bad) => {
                nabla::say!(
                    "nabla: argument {} is not UTF-8 text; name files and folders in UTF-8",
                    nabla::terminal::quote(&bad.to_string_lossy())
                );
                return ExitCode::from(2);
            }
        }
    }
    // Under mpirun (the `mpi` feature): MPI lives until main returns.
    let _mpi = match nabla::distributed::init() {
        Ok(u) => u,
        Err(e) => {
            nabla::say!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if raw.first().map(String::as_str) == Some("report") {
        return nabla::report_page::command(&raw[1..]);
    }
    if raw.first().map(String::as_str) == Some("fetch") {
        return match fetch(&raw[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                nabla::say!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if raw.first().map(String::as_str) == Some("time") {
        return pipeline::time::main(&raw[1..]);
    }
    /// A subcommand: its arguments in, whether it succeeded out.
    type Subcommand = fn(&[String]) -> nabla::Result<bool>;
    let command: Option<Subcommand> = match raw.first().map(String::as_str) {
        Some("predict") => Some(predict),
        Some("eval") => Some(eval),
        _ => None,
    };
    if let Some(command) = command {
        return match command(&raw[1..]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                nabla::say!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(raw) {
        Ok(a) => a,
        Err(e) => {
            nabla::say!("nabla: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match args.command.as_deref() {
        Some("-h" | "--help") => print!("{HELP}"),
        Some("-V" | "--version") => println!("nabla {}", env!("CARGO_PKG_VERSION")),
        Some("schema") => print!("{}", pipeline::schema_doc::render()),
        Some("kernels") => {
            let avail = KernelChoice::available();
            for k in &avail {
                println!("{}{}", k.name(), if Some(k) == avail.last() { "  (default)" } else { "" });
            }
        }
        Some("check") => {
            if args.files.is_empty() {
                nabla::say!("nabla check: name at least one pipeline file");
                return ExitCode::from(2);
            }
            let mut failed = false;
            let mut good = Vec::new();
            for f in &args.files {
                match pipeline::load(f, &args.sets).and_then(|l| pipeline::check_paths(&l).map(|()| l)) {
                    Ok(l) => {
                        println!("{}", nabla::terminal::clean(&format!("{}: ok ({})", f.display(), l.pipeline.name)));
                        println!("{}", pipeline::memory_line(&l));
                        if let Some(table) = pipeline::network_table(&l) {
                            println!("\n{table}");
                        }
                        good.push(l);
                    }
                    Err(e) => {
                        nabla::say!("error: {e}");
                        failed = true;
                    }
                }
            }
            // Files that could not run together in one invocation.
            if let Err(e) = output_folders(&good, &args.out) {
                nabla::say!("error: {e}");
                failed = true;
            }
            return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
        _ if args.files.is_empty() => print!("{HELP}"),
        _ => {
            if args.out.is_some() && args.files.len() > 1 {
                nabla::say!("nabla: --out takes one pipeline file at a time");
                return ExitCode::from(2);
            }
            // Validate every file before running any, so a typo in the last
            // file does not waste the first one's run.
            let mut loaded = Vec::new();
            for f in &args.files {
                match pipeline::load(f, &args.sets) {
                    Ok(l) => loaded.push(l),
                    Err(e) => {
                        nabla::say!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if let Err(e) = output_folders(&loaded, &args.out) {
                nabla::say!("error: {e}");
                return ExitCode::FAILURE;
            }
            let opts =
                RunOptions { out: args.out.clone(), progress: !args.quiet, resume: args.resume, wait: args.wait };
            for l in &loaded {
                if nabla::distributed::is_root() {
                    nabla::say!("running {} ({})", l.file.display(), l.pipeline.name);
                }
                // On a pool thread, so its parallel loops need no hand-off (`parallel::in_pool`).
                match nabla::parallel::in_pool(|| pipeline::run(l, &opts)) {
                    Ok(files) => {
                        for f in files {
                            println!("{}", nabla::terminal::clean(&format!("wrote {}", f.display())));
                        }
                    }
                    Err(e) => {
                        nabla::say!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    ExitCode::SUCCESS
}
