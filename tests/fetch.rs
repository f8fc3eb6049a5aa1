//! `nabla fetch facescrub` end to end against a local HTTP server on
//! 127.0.0.1 started here (never the internet): good images, a wrong hash,
//! a 404, a truncated body and a server that never answers; then a second
//! run that finds the good files present and fetches nothing again.

use nabla::fetch::{fetch, FetchOptions};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(60, 50, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Serve until `stop` (or 60 s): answers by path, counts requests per path.
fn serve(png: Vec<u8>, jpg: Vec<u8>, stop: Arc<AtomicBool>, hits: Arc<Vec<AtomicUsize>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (png, jpg, hits) = (png.clone(), jpg.clone(), hits.clone());
                    std::thread::spawn(move || answer(stream, &png, &jpg, &hits));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    port
}

const PATHS: [&str; 6] = ["/a.png", "/b.jpg", "/wronghash.png", "/missing.jpg", "/truncated.png", "/hang.jpg"];

fn answer(mut s: TcpStream, png: &[u8], jpg: &[u8], hits: &[AtomicUsize]) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = [0u8; 2048];
    let n = s.read(&mut req).unwrap_or(0);
    let line = String::from_utf8_lossy(&req[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    if let Some(i) = PATHS.iter().position(|p| *p == path) {
        hits[i].fetch_add(1, Ordering::Relaxed);
    }
    let ok = |body: &[u8]| {
        let mut r =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    };
    let reply = match path.as_str() {
        "/a.png" | "/wronghash.png" => ok(png),
        "/b.jpg" => ok(jpg),
        "/truncated.png" => {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", png.len()).into_bytes();
            r.extend_from_slice(&png[..png.len() / 2]);
            r
        }
        // Never answer: hold the connection past the client's timeout.
        "/hang.jpg" => {
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = s.write_all(&reply);
}

#[test]
fn fetches_checks_crops_and_resumes() {
    let (png, jpg) = (encoded(image::ImageFormat::Png), encoded(image::ImageFormat::Jpeg));
    let stop = Arc::new(AtomicBool::new(false));
    let hits: Arc<Vec<AtomicUsize>> = Arc::new((0..PATHS.len()).map(|_| AtomicUsize::new(0)).collect());
    let port = serve(png.clone(), jpg.clone(), stop.clone(), hits.clone());
    let dir = std::env::temp_dir().join(format!("nabla-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hashes = [sha(&png), sha(&jpg), "0".repeat(64), sha(&jpg), sha(&png), sha(&jpg)];
    let mut list = String::new();
    for (path, hash) in PATHS.iter().zip(&hashes) {
        list += &format!("Ann Alpha\t1\t2\thttp://127.0.0.1:{port}{path}\t10,5,50,45\t{hash}\n");
    }
    list += &format!("Bob Beta\t1\t2\thttp://127.0.0.1:{port}/a.png\t0,0,10,10\t{}\n", sha(&png));
    std::fs::write(dir.join("list.txt"), list).unwrap();
    let opts = FetchOptions {
        list: dir.join("list.txt"),
        actors: vec!["alpha".into()],
        out: dir.join("out"),
        size: 32,
        gray: true,
        timeout: Duration::from_secs(1),
        jobs: 4,
        progress: false,
    };
    let s = fetch(&opts).unwrap();
    assert_eq!((s.fetched, s.already_present, s.failed.len()), (2, 0, 4), "{:?}", s.failed);
    let reason = |file: &str| s.failed.iter().find(|f| f.0 == file).map(|f| f.2.clone()).unwrap();
    assert!(reason("alpha2.png").contains("SHA-256 mismatch"), "{}", reason("alpha2.png"));
    assert!(reason("alpha3.png").contains("404"), "{}", reason("alpha3.png"));
    let truncated = reason("alpha4.png");
    assert!(truncated.contains("interrupted") || truncated.contains("SHA-256"), "{truncated}");
    assert!(
        reason("alpha5.png").to_lowercase().contains("timeout") || reason("alpha5.png").contains("timed out"),
        "{}",
        reason("alpha5.png")
    );
    for file in ["alpha0.png", "alpha1.png"] {
        let img = image::open(opts.out.join(file)).unwrap();
        assert_eq!((img.width(), img.height(), img.color()), (32, 32, image::ColorType::L8), "{file}");
    }
    assert!(!opts.out.join("beta0.png").exists(), "an actor not asked for was fetched");
    // Resumable: what is present is not fetched again.
    let again = fetch(&opts).unwrap();
    assert_eq!((again.fetched, again.already_present), (0, 2));
    assert_eq!(hits[0].load(Ordering::Relaxed), 1, "a.png was downloaded twice");
    assert_eq!(std::fs::read_dir(&opts.out).unwrap().count(), 2, "partial files were left behind");
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_reports_bad_arguments_cleanly() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_nabla")).args(args).output().unwrap();
    let o = run(&["fetch", "facescrub", "--list", "no/such/list.txt", "--out", "/tmp/nabla-never-created"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no/such/list.txt: cannot read the list"), "{err}");
    assert!(!std::path::Path::new("/tmp/nabla-never-created").exists());
    let o = run(&["fetch", "imagenet"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("usage: nabla fetch facescrub"));
    let o = run(&["fetch", "facescrub", "--list", "x", "--out", "y", "--size", "big"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--size needs a positive whole number"));
}

#[test]
fn names_from_the_list_and_planted_links_stay_inside_out() {
    let png = encoded(image::ImageFormat::Png);
    let stop = Arc::new(AtomicBool::new(false));
    let hits: Arc<Vec<AtomicUsize>> = Arc::new((0..PATHS.len()).map(|_| AtomicUsize::new(0)).collect());
    let port = serve(png.clone(), png.clone(), stop.clone(), hits.clone());
    let dir = std::env::temp_dir().join(format!("nabla-fetch-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let line = |name: &str| format!("{name}\t1\t2\thttp://127.0.0.1:{port}/a.png\t10,5,50,45\t{}\n", sha(&png));
    let mut opts = FetchOptions {
        list: dir.join("list.txt"),
        actors: vec![],
        out: dir.join("out"),
        size: 8,
        gray: true,
        timeout: Duration::from_secs(2),
        jobs: 2,
        progress: false,
    };
    // A name that is only a way up: refused, naming the line, before any download.
    std::fs::write(&opts.list, line("Ann Alpha") + &line("X ./../")).unwrap();
    let e = fetch(&opts).unwrap_err().to_string();
    assert!(e.contains("list.txt: line 2: name 'X ./../' has no letters"), "{e}");
    assert_eq!(hits[0].load(Ordering::Relaxed), 0);
    // A name with a path in it becomes a plain surname inside `out`; a
    // symlink planted at the temporary name is replaced, not written through.
    std::fs::write(&opts.list, line("Evil ../../Escapee")).unwrap();
    std::fs::write(dir.join("victim"), b"keep").unwrap();
    std::os::unix::fs::symlink(dir.join("victim"), dir.join("out/.escapee0.png.partial")).unwrap();
    let s = fetch(&opts).unwrap();
    assert_eq!((s.fetched, s.failed.len()), (1, 0), "{:?}", s.failed);
    assert!(dir.join("out/escapee0.png").is_file());
    assert_eq!(std::fs::read(dir.join("victim")).unwrap(), b"keep", "wrote through the planted symlink");
    let mut top: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    top.sort();
    assert_eq!(top, ["list.txt", "out", "victim"], "wrote outside --out");
    assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 1);
    // A FIFO as the list is refused at once instead of blocking forever.
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    opts.list = fifo;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(fetch(&opts)).unwrap());
    let e = rx.recv_timeout(Duration::from_secs(10)).expect("blocked on the FIFO").unwrap_err().to_string();
    assert!(e.contains("cannot read the list: it is a FIFO"), "{e}");
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_range_numbers_are_errors() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_nabla")).args(args).output().unwrap();
    for (flag, value) in
        [("--size", "0"), ("--size", "5000"), ("--timeout", "0"), ("--timeout", "99999999999999999"), ("--jobs", "0")]
    {
        let o = run(&["fetch", "facescrub", "--list", "x", "--out", "/tmp/nabla-never-created", flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(&format!("{flag} needs a positive whole number, at most")), "{err}");
    }
    assert!(!std::path::Path::new("/tmp/nabla-never-created").exists());
}
