//! `oxmx_lm::hub` against a Hugging Face Hub stand-in: a small HTTP server in a thread serves the
//! API JSON and the files of tests/fixtures/tiny_llama in the Hub's URL layout, so nothing here
//! needs the internet. Each test has its own server and cache folder; only `env_defaults` touches
//! the process environment (the others pass every option explicitly).

use oxmx_core::{io, Array};
use oxmx_lm::hub::{self, HubOptions};
use oxmx_lm::loader::{load, LoadOptions};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPO: &str = "tiny-org/tiny-llama";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama")
}

/// A made-up, stable hex name of `n` digits for a file (the blob id / LFS sha256 the API reports).
fn fake_hex(name: &str, n: usize) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut out = String::new();
    while out.len() < n {
        for b in name.bytes().chain([out.len() as u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(n);
    out
}

#[derive(Clone, Debug)]
enum Mode {
    Normal,
    /// Every request gets this status (and `X-Error-Code` when given).
    Status(u16, Option<&'static str>),
    /// This file is announced in full but the connection closes after half of it.
    CutFile(&'static str),
}

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(String, Option<String>)>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Server {
    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn paths(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

fn repo_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        files.insert(p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap());
    }
    // One file in a folder (links one level deeper) and two that mlx-lm does not fetch.
    files.insert("nested/extra.json".into(), b"{\"nested\": true}".to_vec());
    files.insert("README.md".into(), b"# tiny llama\n".to_vec());
    files.insert("pytorch_model.bin".into(), vec![0u8; 64]);
    files
}

fn api_json(files: &BTreeMap<String, Vec<u8>>) -> String {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(n, b)| {
            let mut v = serde_json::json!({"rfilename": n, "blobId": fake_hex(n, 40), "size": b.len()});
            if n.ends_with(".safetensors") {
                v["lfs"] = serde_json::json!({"sha256": fake_hex(n, 64), "size": b.len(), "pointerSize": 134});
            }
            v
        })
        .collect();
    serde_json::json!({"id": REPO, "sha": SHA, "siblings": siblings}).to_string()
}

fn respond(s: &mut TcpStream, status: u16, code: Option<&str>, body: &[u8], cut: bool) {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(c) = code {
        head.push_str(&format!("X-Error-Code: {c}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let body = if cut { &body[..body.len() / 2] } else { body };
    let _ = s.write_all(body);
    let _ = s.flush();
    let _ = s.shutdown(std::net::Shutdown::Both);
}

fn handle(mut s: TcpStream, files: &BTreeMap<String, Vec<u8>>, api: &str, server: &ServerState) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req).to_string();
    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
    let auth = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l.split_once(':').unwrap().1.trim().to_string());
    server.requests.fetch_add(1, Ordering::SeqCst);
    server.log.lock().unwrap().push((path.clone(), auth));
    let mode = server.mode.lock().unwrap().clone();
    if let Mode::Status(st, code) = mode {
        return respond(&mut s, st, code, b"{\"error\": \"nope\"}", false);
    }
    let api_prefix = format!("/api/models/{REPO}/revision/");
    if let Some(rev) = path.strip_prefix(&api_prefix) {
        let rev = rev.split('?').next().unwrap();
        if rev == "main" || rev == SHA {
            return respond(&mut s, 200, None, api.as_bytes(), false);
        }
        return respond(&mut s, 404, Some("RevisionNotFound"), b"{\"error\": \"Invalid rev id\"}", false);
    }
    if path.starts_with("/api/models/") {
        return respond(&mut s, 401, Some("RepoNotFound"), b"{\"error\": \"Repository not found\"}", false);
    }
    let file_prefix = format!("/{REPO}/resolve/{SHA}/");
    if let Some(name) = path.strip_prefix(&file_prefix) {
        if let Some(body) = files.get(name) {
            let cut = matches!(mode, Mode::CutFile(c) if c == name);
            return respond(&mut s, 200, None, body, cut);
        }
        return respond(&mut s, 404, Some("EntryNotFound"), b"{\"error\": \"Entry not found\"}", false);
    }
    respond(&mut s, 404, Some("RepoNotFound"), b"{\"error\": \"Repository not found\"}", false)
}

struct ServerState {
    requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(String, Option<String>)>>>,
    mode: Arc<Mutex<Mode>>,
}

fn start_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(Mode::Normal));
    let state = ServerState { requests: requests.clone(), log: log.clone(), mode: mode.clone() };
    std::thread::spawn(move || {
        let files = repo_files();
        let api = api_json(&files);
        for s in listener.incoming() {
            match s {
                Ok(s) => handle(s, &files, &api, &state),
                Err(_) => break,
            }
        }
    });
    Server { url, requests, log, mode }
}

fn temp_cache(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxmx-hub-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(endpoint: &str, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: endpoint.to_string(),
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: false,
        revision: "main".into(),
        progress: true,
        connect_timeout: Duration::from_secs(5),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn incomplete_files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.into_iter().filter(|p| p.to_string_lossy().contains(".incomplete")).collect()
}

fn logits(path: &Path) -> Vec<f32> {
    let m = load(path, &LoadOptions::default()).unwrap();
    let (arrays, _) = io::load_safetensors(fixture().join("expected.safetensors")).unwrap();
    let tokens: Array = arrays.iter().find(|(n, _)| n == "tokens").unwrap().1.clone();
    m.model.forward(&tokens, None).to_vec::<f32>().unwrap()
}

fn err_of(r: oxmx_core::Result<PathBuf>) -> String {
    let e = r.expect_err("expected an error").message().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn patterns_and_repo_ids() {
    for n in ["config.json", "model-00001-of-00002.safetensors", "tokenizer.model", "nested/x.json", "chat_template.jinja", "vocab.txt"] {
        assert!(hub::is_wanted_file(n), "{n}");
    }
    for n in ["README.md", "pytorch_model.bin", "model.gguf", "original/consolidated.00.pth", ".gitattributes"] {
        assert!(!hub::is_wanted_file(n), "{n}");
    }
    assert!(hub::is_repo_id("mlx-community/Qwen3-0.6B-4bit"));
    for s in ["./a/b", "a/b/c", "a/b.gguf", "/abs", "a/", "a", "../x"] {
        assert!(!hub::is_repo_id(s), "{s}");
    }
    assert_eq!(hub::repo_cache_dir(Path::new("/c"), "org/name"), PathBuf::from("/c/models--org--name"));
}

#[test]
fn download_writes_hf_layout_loads_and_then_uses_the_cache() {
    let server = start_server();
    let cache = temp_cache("layout");
    let mut o = opts(&server.url, &cache);
    o.token = Some("secret-token".into());
    let path = hub::resolve_repo(REPO, &o).unwrap();
    let repo_dir = cache.join("models--tiny-org--tiny-llama");
    let snap = repo_dir.join("snapshots").join(SHA);
    assert_eq!(path, snap);

    // huggingface_hub's layout: refs/main -> sha, snapshot links into blobs/.
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), SHA);
    #[cfg(unix)]
    {
        let link = std::fs::read_link(snap.join("config.json")).unwrap();
        assert_eq!(link, PathBuf::from(format!("../../blobs/{}", fake_hex("config.json", 40))));
        let link = std::fs::read_link(snap.join("model.safetensors")).unwrap();
        assert_eq!(link, PathBuf::from(format!("../../blobs/{}", fake_hex("model.safetensors", 64))));
        let link = std::fs::read_link(snap.join("nested/extra.json")).unwrap();
        assert_eq!(link, PathBuf::from(format!("../../../blobs/{}", fake_hex("nested/extra.json", 40))));
    }
    assert_eq!(std::fs::read(snap.join("model.safetensors")).unwrap(), std::fs::read(fixture().join("model.safetensors")).unwrap());
    assert_eq!(std::fs::read(snap.join("nested/extra.json")).unwrap(), b"{\"nested\": true}");
    assert!(repo_dir.join("blobs").join(fake_hex("generation_config.json", 40)).is_file());
    // Files mlx-lm does not fetch are neither requested nor present.
    assert!(!snap.join("README.md").exists() && !snap.join("pytorch_model.bin").exists());
    assert!(server.paths().iter().all(|p| !p.contains("README") && !p.contains("pytorch_model")), "{:?}", server.paths());
    assert!(incomplete_files(&repo_dir).is_empty());
    // The token went along as a Bearer header on every request.
    assert!(server.log.lock().unwrap().iter().all(|(_, a)| a.as_deref() == Some("Bearer secret-token")));
    // 1 API call + 6 files (config, generation_config, expected_generate, nested/extra, 2 safetensors).
    let n = server.count();
    assert_eq!(n, 1 + 6, "{:?}", server.paths());

    // Loads, with the logits of the fixture folder itself.
    assert_eq!(logits(&path), logits(&fixture()));

    // A second resolve uses the cache and sends nothing.
    assert_eq!(hub::resolve_repo(REPO, &o).unwrap(), snap);
    assert_eq!(server.count(), n);
    // The commit hash as revision also resolves from the cache alone.
    let mut by_sha = o.clone();
    by_sha.revision = SHA.into();
    assert_eq!(hub::resolve_repo(REPO, &by_sha).unwrap(), snap);
    assert_eq!(server.count(), n);
    // A forced snapshot_download only lists the repo: every file is already there.
    assert_eq!(hub::snapshot_download(REPO, &o).unwrap(), snap);
    assert_eq!(server.count(), n + 1);
    // Offline, the complete cache still resolves.
    let mut off = o.clone();
    off.offline = true;
    off.endpoint = "http://127.0.0.1:9".into();
    assert_eq!(hub::resolve_repo(REPO, &off).unwrap(), snap);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn http_errors_are_clear() {
    let server = start_server();
    let cache = temp_cache("errors");
    let o = opts(&server.url, &cache);

    // An unknown repo (the Hub answers 401 + RepoNotFound to anonymous callers).
    let e = err_of(hub::resolve_repo("nobody/nothing", &o));
    assert!(e.contains("no Hugging Face Hub repo 'nobody/nothing'") && e.contains("HF_TOKEN"), "{e}");
    // An unknown revision.
    let mut r = o.clone();
    r.revision = "v9".into();
    let e = err_of(hub::resolve_repo(REPO, &r));
    assert!(e.contains("no revision 'v9'"), "{e}");
    // A revision cannot step out of refs/.
    r.revision = "../../x".into();
    assert!(err_of(hub::resolve_repo(REPO, &r)).contains("invalid Hugging Face Hub revision"));
    // Plain 404.
    server.set_mode(Mode::Status(404, None));
    let e = err_of(hub::resolve_repo(REPO, &o));
    assert!(e.contains("HTTP 404") && e.contains("no such repo"), "{e}");
    // 401 / 403: gated or private.
    server.set_mode(Mode::Status(401, None));
    let e = err_of(hub::resolve_repo(REPO, &o));
    assert!(e.contains("HTTP 401") && e.contains("gated or private") && e.contains("HF_TOKEN"), "{e}");
    server.set_mode(Mode::Status(403, Some("GatedRepo")));
    let e = err_of(hub::resolve_repo(REPO, &o));
    assert!(e.contains("gated") && e.contains("HF_TOKEN"), "{e}");
    let mut with_token = o.clone();
    with_token.token = Some("t".into());
    let e = err_of(hub::resolve_repo(REPO, &with_token));
    assert!(e.contains("the token in HF_TOKEN has no access"), "{e}");
    // Nothing was cached by the failures.
    assert!(hub::cached_snapshot_dir(REPO, &o).is_none());

    // Offline with an empty cache: a clear error, and the server is not contacted.
    let before = server.count();
    let mut off = o.clone();
    off.offline = true;
    let e = err_of(hub::resolve_repo(REPO, &off));
    assert!(e.contains("HF_HUB_OFFLINE") && e.contains("not in the Hugging Face Hub cache") && e.contains("--model DIR"), "{e}");
    assert_eq!(server.count(), before);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn unreachable_endpoint_fails_fast_and_clearly() {
    let cache = temp_cache("unreachable");
    let t = Instant::now();
    let e = err_of(hub::resolve_repo(REPO, &opts("http://127.0.0.1:9", &cache)));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(e.contains("network is unavailable") && e.contains("--model DIR") && e.contains("http://127.0.0.1:9"), "{e}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn interrupted_download_leaves_nothing_trusted() {
    let server = start_server();
    let cache = temp_cache("cut");
    let o = opts(&server.url, &cache);
    let repo_dir = hub::repo_cache_dir(&cache, REPO);
    let snap = repo_dir.join("snapshots").join(SHA);

    server.set_mode(Mode::CutFile("model.safetensors"));
    let e = err_of(hub::resolve_repo(REPO, &o));
    assert!(e.contains("model.safetensors") && e.contains("nothing partial was kept"), "{e}");
    // No truncated file under a trusted name, no temporary left, no ref naming the snapshot.
    assert!(!snap.join("model.safetensors").exists());
    assert!(!repo_dir.join("blobs").join(fake_hex("model.safetensors", 64)).exists());
    assert!(incomplete_files(&repo_dir).is_empty(), "{:?}", incomplete_files(&repo_dir));
    assert!(!repo_dir.join("refs/main").exists());
    assert!(hub::cached_snapshot_dir(REPO, &o).is_none());
    // Even with a ref written early (as huggingface_hub does), the partial snapshot is not taken.
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), SHA).unwrap();
    assert!(!hub::snapshot_is_complete(&snap));
    let mut off = o.clone();
    off.offline = true;
    let e = err_of(hub::resolve_repo(REPO, &off));
    assert!(e.contains("only partly in the Hugging Face Hub cache"), "{e}");

    // The next run with a working server completes it, fetching only what is missing.
    server.set_mode(Mode::Normal);
    let before = server.paths().len();
    let path = hub::resolve_repo(REPO, &o).unwrap();
    assert_eq!(path, snap);
    let fetched: Vec<String> = server.paths()[before..].to_vec();
    assert!(fetched.iter().any(|p| p.ends_with("/model.safetensors")), "{fetched:?}");
    assert!(!fetched.iter().any(|p| p.ends_with("/config.json")), "{fetched:?}");
    assert_eq!(logits(&path), logits(&fixture()));
    std::fs::remove_dir_all(&cache).ok();
}

/// The only test that reads the environment (variables are process-wide).
#[test]
fn env_defaults() {
    let home = temp_cache("env");
    let vars = [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
    ];
    for v in vars {
        std::env::remove_var(v);
    }
    std::env::set_var("HF_HOME", &home);
    std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
    let o = HubOptions::from_env();
    assert_eq!(o.cache_dir, home.join("hub"));
    assert_eq!(o.endpoint, "https://huggingface.co");
    assert_eq!(o.token.as_deref(), Some("hf_from_file"));
    assert!(!o.offline);
    assert_eq!(o.revision, "main");

    let cache = home.join("elsewhere");
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9/");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("HF_TOKEN", "hf_env");
    let o = HubOptions::from_env();
    assert_eq!(o.cache_dir, cache);
    assert_eq!(o.endpoint, "http://127.0.0.1:9");
    assert_eq!(o.token.as_deref(), Some("hf_env"));
    assert!(o.offline);
    // HF_HUB_OFFLINE with an empty cache: the offline error, not a network one.
    let e = err_of(hub::resolve_repo(REPO, &o));
    assert!(e.contains("HF_HUB_OFFLINE") && !e.contains("unreachable"), "{e}");
    for v in vars {
        std::env::remove_var(v);
    }
    std::fs::remove_dir_all(&home).ok();
}
