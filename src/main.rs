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
    nabla report [RESOURCES_DIR] [--out FILE.html]
                                         one page of every run beside the report
                                         (resources/index.html and REPORT.md)

OPTIONS:
    --set section.key=value   override a field (repeatable), e.g. --set train.lr=1e-3
    --out DIR                 output folder (default resources/<name>; one file only)
    --quiet                   no progress bars
    --resume                  continue from the last checkpoint of an interrupted run
                              (stages with checkpoint_every set save them)
    -h, --help                this help
    -V, --version             the version

EXAMPLES:
    cargo run --release -- pipelines/part4.toml
    cargo run --release -- pipelines/part4.toml --set train.iterations=100 --out /tmp/p4
    cargo run --release -- check pipelines/*.toml

Each run writes its figures (PNG), metrics.json and report.md into the output
folder, all at once when the run succeeds; a failed run writes nothing. An
earlier run's folder is replaced whole; any other existing folder is refused.
";

struct Args {
    command: Option<String>,
    files: Vec<PathBuf>,
    sets: Vec<String>,
    out: Option<PathBuf>,
    quiet: bool,
    resume: bool,
}

fn parse_args(raw: Vec<String>) -> Result<Args, String> {
    let mut a = Args { command: None, files: vec![], sets: vec![], out: None, quiet: false, resume: false };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--set" => a.sets.push(it.next().ok_or("--set needs section.key=value")?),
            "--out" => a.out = Some(out_folder(it.next().ok_or("--out needs a folder")?)?),
            "--quiet" | "-q" => a.quiet = true,
            "--resume" => a.resume = true,
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
    let dir = PathBuf::from(arg);
    nabla::pipeline::output::check_dir(&dir).map_err(|e| format!("--out {e}"))?;
    Ok(dir)
}

/// The output folder of each loaded file; refuses two that are the same
/// folder (two files with one `name`, compared ignoring case like some file
/// systems do) or folders a run cannot replace, before anything runs.
fn output_folders(loaded: &[pipeline::Loaded], out: &Option<PathBuf>) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for l in loaded {
        // As `pipeline::run` chooses it.
        let dir = out.clone().unwrap_or_else(|| pipeline::default_out(&l.pipeline.name));
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
        pipeline::output::check_dir(&dir).map_err(|e| format!("{}: output folder {e}", l.file.display()))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// `nabla fetch facescrub ...`
fn fetch(raw: &[String]) -> Result<(), String> {
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
            other => return Err(format!("fetch: unknown option '{other}'")),
        }
    }
    if opts.list.as_os_str().is_empty() || opts.out.as_os_str().is_empty() {
        return Err("fetch: --list and --out are required".into());
    }
    let s = nabla::fetch::fetch(&opts)?;
    println!(
        "fetched {}, already present {}, failed {} (into {})",
        s.fetched,
        s.already_present,
        s.failed.len(),
        opts.out.display()
    );
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, _, r) in &s.failed {
        *reasons.entry(r.split(':').next().unwrap_or(r).to_string()).or_default() += 1;
    }
    for (r, n) in reasons {
        println!("  {n} x {r}");
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
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("report") {
        return nabla::report_page::command(&raw[1..]);
    }
    if raw.first().map(String::as_str) == Some("fetch") {
        return match fetch(&raw[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nabla: {e}\n\n{HELP}");
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
                eprintln!("nabla check: name at least one pipeline file");
                return ExitCode::from(2);
            }
            let mut failed = false;
            let mut good = Vec::new();
            for f in &args.files {
                match pipeline::load(f, &args.sets).and_then(|l| pipeline::check_paths(&l).map(|()| l)) {
                    Ok(l) => {
                        println!("{}: ok ({})", f.display(), l.pipeline.name);
                        if let Some(table) = pipeline::network_table(&l) {
                            println!("\n{table}");
                        }
                        good.push(l);
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            // Files that could not run together in one invocation.
            if let Err(e) = output_folders(&good, &args.out) {
                eprintln!("error: {e}");
                failed = true;
            }
            return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
        _ if args.files.is_empty() => print!("{HELP}"),
        _ => {
            if args.out.is_some() && args.files.len() > 1 {
                eprintln!("nabla: --out takes one pipeline file at a time");
                return ExitCode::from(2);
            }
            // Validate every file before running any, so a typo in the last
            // file does not waste the first one's run.
            let mut loaded = Vec::new();
            for f in &args.files {
                match pipeline::load(f, &args.sets) {
                    Ok(l) => loaded.push(l),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if let Err(e) = output_folders(&loaded, &args.out) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            let opts = RunOptions { out: args.out.clone(), progress: !args.quiet, resume: args.resume };
            for l in &loaded {
                eprintln!("running {} ({})", l.file.display(), l.pipeline.name);
                // On a pool thread, so its parallel loops need no hand-off (`parallel::in_pool`).
                match nabla::parallel::in_pool(|| pipeline::run(l, &opts)) {
                    Ok(files) => {
                        for f in files {
                            println!("wrote {}", f.display());
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    ExitCode::SUCCESS
}
