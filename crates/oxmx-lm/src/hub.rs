//! Hugging Face Hub repo ids (`org/name`) as model paths, the way mlx-lm resolves them through
//! huggingface_hub's `snapshot_download`: the standard cache first, then a download into that same
//! cache, so oxmx, huggingface_hub and mlx-lm share one copy of each model.
//!
//! **Cache.** `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. A repo lives in
//! `models--{org}--{name}/`: `refs/{revision}` holds a commit hash, `snapshots/{hash}/{file}` are
//! relative symbolic links to `blobs/{etag}` (the etag is the LFS sha256 for large files, the git
//! blob id for the others, as huggingface_hub names them). Where the API gives no blob id, or where
//! links cannot be made, the file is written as a plain file in the snapshot folder instead
//! (huggingface_hub reads such snapshots too). `refs/{revision}` is written only once every file is
//! in place, so other tools in offline mode never take a half-downloaded snapshot.
//!
//! **Trust.** A cached snapshot is used without the network when it can be loaded: `config.json`
//! plus every shard named by `model.safetensors.index.json` (or at least one `model*.safetensors`),
//! or a single `.gguf` file. A download writes each file to a temporary name
//! (`{blob}.{pid}.incomplete`) and renames it only after its length matched what the server
//! announced, so an interrupted download never leaves a truncated file under a trusted name.
//!
//! **Network.** `HF_HUB_OFFLINE=1` never touches it. The endpoint is `$HF_ENDPOINT` (default
//! <https://huggingface.co>); the file list comes from `GET {endpoint}/api/models/{repo}/revision/{rev}`
//! and files from `{endpoint}/{repo}/resolve/{sha}/{file}`, with `HF_TOKEN` (or the token file that
//! `huggingface-cli login` writes) as a Bearer header. Files fetched: mlx-lm's patterns
//! ([`ALLOW_PATTERNS`]).
//!
//! HTTP client: `ureq` 3 (blocking, rustls with ring and the webpki root certificates, no C TLS
//! library and no async runtime), with gzip off so lengths can be checked against `Content-Length`.

use oxmx_core::{Error, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files fetched from a repo (mlx-lm's list; `*` matches across `/`, as Python's fnmatch does).
pub const ALLOW_PATTERNS: &[&str] =
    &["*.json", "*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "tiktoken.model", "*.txt", "*.jsonl", "*.jinja"];

/// Where and how to resolve a repo id. [`HubOptions::from_env`] reads the usual variables; tests
/// and embedders can set every field explicitly.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Server root, without a trailing slash (`$HF_ENDPOINT`).
    pub endpoint: String,
    /// The hub cache folder (the one holding `models--*`).
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer ...` to the endpoint.
    pub token: Option<String>,
    /// Never use the network (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Branch, tag or commit hash.
    pub revision: String,
    /// Report downloads on stderr (bars on a terminal, one line per file otherwise).
    pub progress: bool,
    /// Limit for opening a connection (and for each API response).
    pub connect_timeout: Duration,
}

impl HubOptions {
    /// Options from the environment: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`, `HF_TOKEN` (or the
    /// token file), `HF_HUB_OFFLINE`; revision `main`, progress on.
    pub fn from_env() -> HubOptions {
        HubOptions {
            endpoint: endpoint_from_env(),
            cache_dir: hub_cache_dir(),
            token: token_from_env(),
            offline: offline_from_env(),
            revision: "main".into(),
            progress: true,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

fn hf_home() -> PathBuf {
    if let Some(h) = env_nonempty("HF_HOME") {
        return PathBuf::from(h);
    }
    let base = env_nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".cache"));
    base.join("huggingface")
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(d) = env_nonempty("HF_HUB_CACHE").or_else(|| env_nonempty("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(d);
    }
    hf_home().join("hub")
}

/// `$HF_ENDPOINT` without a trailing slash, else [`DEFAULT_ENDPOINT`].
pub fn endpoint_from_env() -> String {
    env_nonempty("HF_ENDPOINT").map(|e| e.trim().trim_end_matches('/').to_string()).unwrap_or_else(|| DEFAULT_ENDPOINT.into())
}

/// `HF_HUB_OFFLINE` set to 1 / true / yes / on.
pub fn offline_from_env() -> bool {
    env_nonempty("HF_HUB_OFFLINE").is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `$HF_TOKEN`, else the file `$HF_TOKEN_PATH` or `$HF_HOME/token` (`huggingface-cli login`).
pub fn token_from_env() -> Option<String> {
    if let Some(t) = env_nonempty("HF_TOKEN").or_else(|| env_nonempty("HUGGING_FACE_HUB_TOKEN")) {
        return Some(t.trim().to_string());
    }
    let path = env_nonempty("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home().join("token"));
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `org/name`: two non-empty parts of letters, digits, `-`, `_`, `.` (not starting with `.`).
pub fn is_repo_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        && !s.ends_with(".gguf")
}

/// `{cache}/models--{org}--{name}`.
pub fn repo_cache_dir(cache_dir: &Path, repo: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", repo.replace('/', "--")))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cached snapshot folder for `repo` at `opts.revision`, if the cache names one (complete or
/// not; see [`snapshot_is_complete`]).
pub fn cached_snapshot_dir(repo: &str, opts: &HubOptions) -> Option<PathBuf> {
    safe_rel_path(&opts.revision)?;
    let dir = repo_cache_dir(&opts.cache_dir, repo);
    let hash = if is_commit_hash(&opts.revision) {
        opts.revision.clone()
    } else {
        std::fs::read_to_string(dir.join("refs").join(&opts.revision)).ok()?.trim().to_string()
    };
    if hash.is_empty() || hash.contains('/') || hash.contains("..") {
        return None;
    }
    let snap = dir.join("snapshots").join(hash);
    snap.is_dir().then_some(snap)
}

fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file()).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a snapshot folder can be loaded as it is: `config.json` plus all the weight shards (those
/// the safetensors index names, or at least one `model*.safetensors`), or a `.gguf` file.
pub fn snapshot_is_complete(dir: &Path) -> bool {
    if dir.join("config.json").is_file() {
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            let Ok(s) = std::fs::read_to_string(&index) else { return false };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) else { return false };
            let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else { return false };
            return map.values().filter_map(|f| f.as_str()).all(|f| dir.join(f).is_file());
        }
        let has_weights = std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("model") && n.ends_with(".safetensors") && e.path().is_file()
            })
        });
        return has_weights;
    }
    !gguf_files(dir).is_empty()
}

/// What `--model` loads from a snapshot folder: the folder, or its single `.gguf` file.
fn model_path_in(snapshot: &Path, repo: &str) -> Result<PathBuf> {
    if snapshot.join("config.json").is_file() {
        return Ok(snapshot.to_path_buf());
    }
    let ggufs = gguf_files(snapshot);
    match ggufs.len() {
        1 => Ok(ggufs[0].clone()),
        0 => Ok(snapshot.to_path_buf()),
        _ => Err(Error::io(format!(
            "the Hugging Face Hub repo '{repo}' holds several .gguf files ({}): pass one with --model {}/FILE.gguf",
            ggufs.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", "),
            snapshot.display()
        ))),
    }
}

/// A revision names a file under `refs/`: no `..`, no leading `/`.
fn check_revision(opts: &HubOptions) -> Result<()> {
    if safe_rel_path(&opts.revision).is_none() {
        return Err(Error::invalid(format!("invalid Hugging Face Hub revision '{}'", opts.revision)));
    }
    Ok(())
}

/// The model path for a repo id: the cached snapshot when it is complete (no network), else a
/// download into the cache (unless `opts.offline`).
pub fn resolve_repo(repo: &str, opts: &HubOptions) -> Result<PathBuf> {
    check_revision(opts)?;
    let cached = cached_snapshot_dir(repo, opts);
    if let Some(snap) = &cached {
        if snapshot_is_complete(snap) {
            return model_path_in(snap, repo);
        }
    }
    if opts.offline {
        let what = if cached.is_some() { "is only partly in" } else { "is not in" };
        return Err(Error::io(format!(
            "'{repo}' (revision {}) {what} the Hugging Face Hub cache {} and HF_HUB_OFFLINE is set, so nothing is downloaded: \
             unset HF_HUB_OFFLINE to download it, or pass a local folder with --model DIR",
            opts.revision,
            opts.cache_dir.display()
        )));
    }
    let snap = snapshot_download(repo, opts)?;
    if !snapshot_is_complete(&snap) {
        return Err(Error::io(format!(
            "the Hugging Face Hub repo '{repo}' has no loadable model (config.json with model*.safetensors weights); \
             for a GGUF-only repo download one .gguf file and pass --model FILE.gguf"
        )));
    }
    model_path_in(&snap, repo)
}

// ----- HTTP -----

fn agent(opts: &HubOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // The token follows redirects within the endpoint (renamed repos), never to the CDN.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_resolve(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.connect_timeout.max(Duration::from_secs(30))))
        .user_agent(concat!("oxmx/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, opts: &HubOptions) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut req = agent.get(url);
    if let Some(t) = &opts.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    req.call()
}

fn network_error(repo: &str, opts: &HubOptions, e: &ureq::Error) -> Error {
    let text = e.to_string();
    let why = if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        "a secure connection could not be made, perhaps a proxy intercepts HTTPS"
    } else {
        "the network is unavailable or blocked"
    };
    Error::io(format!(
        "cannot download '{repo}' from the Hugging Face Hub: {} is unreachable ({text}); {why}. \
         Pass a local folder with --model DIR (e.g. one made elsewhere by `huggingface-cli download {repo} --local-dir DIR`), \
         or set HF_ENDPOINT to a reachable mirror",
        opts.endpoint
    ))
}

fn status_error(repo: &str, what: &str, opts: &HubOptions, resp: &ureq::http::Response<ureq::Body>) -> Error {
    let status = resp.status().as_u16();
    let code = resp.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let token_hint = if opts.token.is_some() {
        "the token in HF_TOKEN has no access to it"
    } else {
        "set HF_TOKEN (or run `huggingface-cli login`) with a token that has access"
    };
    let msg = match (code.as_str(), status) {
        ("GatedRepo", _) => format!(
            "the Hugging Face Hub repo '{repo}' is gated (HTTP {status}): accept its terms on {}/{repo} and {token_hint}",
            opts.endpoint
        ),
        ("RevisionNotFound", _) => format!("the Hugging Face Hub repo '{repo}' has no revision '{}' (HTTP {status})", opts.revision),
        ("EntryNotFound", _) => format!("the Hugging Face Hub repo '{repo}' has no {what} (HTTP {status})"),
        ("RepoNotFound", _) => {
            format!("no Hugging Face Hub repo '{repo}' (HTTP {status}: repository not found; if it is private, {token_hint})")
        }
        (_, 401) | (_, 403) => {
            format!("access to the Hugging Face Hub repo '{repo}' was refused (HTTP {status}): it is gated or private; {token_hint}")
        }
        (_, 404) => format!(
            "the Hugging Face Hub answered HTTP 404 for {what} of '{repo}' at revision '{}': no such repo, revision or file",
            opts.revision
        ),
        _ => format!("the Hugging Face Hub answered HTTP {status} for {what} of '{repo}'"),
    };
    Error::io(msg)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when `keep_slash`).
fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// fnmatch-style: `*` any run of characters (including `/`), `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether a repo file is one that mlx-lm fetches.
pub fn is_wanted_file(name: &str) -> bool {
    ALLOW_PATTERNS.iter().any(|p| glob_match(p, name))
}

/// A relative repo path that stays inside the snapshot folder.
fn safe_rel_path(name: &str) -> Option<PathBuf> {
    let mut p = PathBuf::new();
    for c in name.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\\') {
            return None;
        }
        p.push(c);
    }
    Some(p)
}

struct RemoteFile {
    name: String,
    size: Option<u64>,
    /// huggingface_hub's blob name: the LFS sha256, else the git blob id.
    blob: Option<String>,
}

fn valid_blob_name(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Lists `repo` at `opts.revision`: its commit hash and the files to fetch.
fn list_repo(agent: &ureq::Agent, repo: &str, opts: &HubOptions) -> Result<(String, Vec<RemoteFile>)> {
    let url = format!("{}/api/models/{repo}/revision/{}?blobs=true", opts.endpoint, quote(&opts.revision, false));
    let mut resp = get(agent, &url, opts).map_err(|e| network_error(repo, opts, &e))?;
    if !resp.status().is_success() {
        return Err(status_error(repo, "the file list", opts, &resp));
    }
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| Error::io(format!("reading the Hugging Face Hub file list of '{repo}' failed: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Error::io(format!("the Hugging Face Hub file list of '{repo}' ({url}) is not JSON: {e}")))?;
    let sha = v.get("sha").and_then(|s| s.as_str()).unwrap_or("").to_string();
    if !is_commit_hash(&sha) {
        return Err(Error::io(format!("the Hugging Face Hub file list of '{repo}' ({url}) has no commit hash ('sha')")));
    }
    let mut files = Vec::new();
    for s in v.get("siblings").and_then(|s| s.as_array()).map(|a| a.as_slice()).unwrap_or(&[]) {
        let Some(name) = s.get("rfilename").and_then(|n| n.as_str()) else { continue };
        if !is_wanted_file(name) || safe_rel_path(name).is_none() {
            continue;
        }
        let lfs = s.get("lfs");
        let size = lfs.and_then(|l| l.get("size")).or_else(|| s.get("size")).and_then(|x| x.as_u64());
        let blob = lfs
            .and_then(|l| l.get("sha256"))
            .or_else(|| s.get("blobId"))
            .and_then(|x| x.as_str())
            .filter(|b| valid_blob_name(b))
            .map(|b| b.to_ascii_lowercase());
        files.push(RemoteFile { name: name.to_string(), size, blob });
    }
    // Small files first, weights last: a snapshot whose weights are all present is complete.
    files.sort_by_key(|f| (f.name.ends_with(".safetensors"), f.name.clone()));
    Ok((sha, files))
}

/// Downloads `repo` at `opts.revision` into the cache (files already there are kept) and returns
/// the snapshot folder. Always asks the server for the revision's commit.
pub fn snapshot_download(repo: &str, opts: &HubOptions) -> Result<PathBuf> {
    check_revision(opts)?;
    if opts.offline {
        return Err(Error::io(format!("'{repo}': HF_HUB_OFFLINE is set, so nothing is downloaded from the Hugging Face Hub")));
    }
    let agent = agent(opts);
    let (sha, files) = list_repo(&agent, repo, opts)?;
    let repo_dir = repo_cache_dir(&opts.cache_dir, repo);
    let snap = repo_dir.join("snapshots").join(&sha);
    let blobs = repo_dir.join("blobs");
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(|e| Error::io(format!("cannot create {}: {e}", d.display())));
    mkdir(&snap)?;
    mkdir(&blobs)?;

    let todo: Vec<&RemoteFile> = files.iter().filter(|f| !file_present(&snap, f)).collect();
    if opts.progress && !todo.is_empty() {
        let total: u64 = todo.iter().filter_map(|f| f.size).sum();
        eprintln!(
            "oxmx: downloading {repo} ({}) from {}: {} file{}, {} into {}",
            &sha[..7],
            opts.endpoint,
            todo.len(),
            if todo.len() == 1 { "" } else { "s" },
            human_bytes(total),
            repo_dir.display()
        );
    }
    for f in todo {
        let rel = safe_rel_path(&f.name).expect("filtered in list_repo");
        let dest = snap.join(&rel);
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        match &f.blob {
            Some(b) => {
                let blob_path = blobs.join(b);
                if !(blob_path.is_file() && f.size.is_none_or(|s| file_len(&blob_path) == Some(s))) {
                    download_file(&agent, repo, &sha, f, &blob_path, opts)?;
                }
                link_into_snapshot(&blob_path, &dest, &rel)?;
            }
            None => download_file(&agent, repo, &sha, f, &dest, opts)?,
        }
    }
    // The ref last: until now a reader with no network finds no (partial) snapshot by name.
    if opts.revision != sha {
        let refs = repo_dir.join("refs");
        let ref_path = refs.join(&opts.revision);
        if let Some(parent) = ref_path.parent() {
            mkdir(parent)?;
        }
        write_atomic(&ref_path, sha.as_bytes())?;
    }
    Ok(snap)
}

fn file_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

fn file_present(snap: &Path, f: &RemoteFile) -> bool {
    let p = snap.join(safe_rel_path(&f.name).expect("filtered in list_repo"));
    p.is_file() && f.size.is_none_or(|s| file_len(&p) == Some(s))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("cannot write {}: {e}", path.display()))
    })
}

fn temp_name(path: &Path) -> PathBuf {
    let mut n = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    n.push(format!(".{}.incomplete", std::process::id()));
    path.with_file_name(n)
}

/// `snapshots/{sha}/{rel}` -> `../../blobs/{blob}` (one more `../` per folder in `rel`), as
/// huggingface_hub links them; a hard link, then a copy, where symbolic links are not possible.
fn link_into_snapshot(blob: &Path, dest: &Path, rel: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dest); // a dangling or stale link
    #[cfg(unix)]
    {
        let depth = rel.components().count() - 1 + 2;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().expect("blob name"));
        if std::os::unix::fs::symlink(&target, dest).is_ok() {
            return Ok(());
        }
    }
    let _ = rel;
    if std::fs::hard_link(blob, dest).is_ok() {
        return Ok(());
    }
    let tmp = temp_name(dest);
    std::fs::copy(blob, &tmp).and_then(|_| std::fs::rename(&tmp, dest)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("cannot place {} in the snapshot {}: {e}", blob.display(), dest.display()))
    })
}

/// Fetches one file to `dest` through a temporary name; the rename happens only when the byte
/// count matches the announced size.
fn download_file(agent: &ureq::Agent, repo: &str, sha: &str, f: &RemoteFile, dest: &Path, opts: &HubOptions) -> Result<()> {
    let url = format!("{}/{repo}/resolve/{sha}/{}", opts.endpoint, quote(&f.name, true));
    let mut resp = get(agent, &url, opts).map_err(|e| network_error(repo, opts, &e))?;
    if !resp.status().is_success() {
        return Err(status_error(repo, &format!("the file {}", f.name), opts, &resp));
    }
    let header_len = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let expected = f.size.or(header_len);
    let tmp = temp_name(dest);
    let result = (|| -> std::result::Result<u64, String> {
        let mut out = std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut bar = Progress::new(&f.name, expected, opts.progress);
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("the connection failed after {} ({e})", human_bytes(done))),
            };
            out.write_all(&buf[..n]).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            done += n as u64;
            bar.update(done);
        }
        bar.finish(done);
        out.sync_all().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        Ok(done)
    })();
    let fail = |msg: String| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!(
            "downloading {} of '{repo}' from the Hugging Face Hub failed: {msg}; nothing partial was kept, run again to retry",
            f.name
        ))
    };
    let done = result.map_err(fail)?;
    if let Some(want) = expected {
        if done != want {
            return Err(fail(format!("it ended after {done} of {want} bytes")));
        }
    }
    std::fs::rename(&tmp, dest).map_err(|e| fail(format!("cannot rename to {}: {e}", dest.display())))
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// A hand-written progress bar: on a terminal, redrawn at most 10 times a second for files of
/// 1 MB or more; otherwise one line per file.
struct Progress {
    name: String,
    total: Option<u64>,
    enabled: bool,
    bar: bool,
    start: Instant,
    last: Instant,
    /// A bar line is on screen without its newline.
    open: bool,
}

impl Progress {
    fn new(name: &str, total: Option<u64>, enabled: bool) -> Progress {
        let bar = enabled && std::io::stderr().is_terminal() && total.is_none_or(|t| t >= 1_000_000);
        if enabled && !bar {
            eprintln!("oxmx: fetching {name}{}", total.map(|t| format!(" ({})", human_bytes(t))).unwrap_or_default());
        }
        let now = Instant::now();
        Progress { name: name.to_string(), total, enabled, bar, start: now, last: now - Duration::from_secs(1), open: false }
    }

    fn draw(&mut self, done: u64) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = format!("{}/s", human_bytes((done as f64 / secs) as u64));
        let line = match self.total {
            Some(t) if t > 0 => {
                let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
                let width = 30;
                let filled = (frac * width as f64).round() as usize;
                format!(
                    "{} [{}{}] {:>3.0}% {} / {} {}",
                    self.name,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    frac * 100.0,
                    human_bytes(done),
                    human_bytes(t),
                    rate
                )
            }
            _ => format!("{} {} {}", self.name, human_bytes(done), rate),
        };
        eprint!("\r\x1b[2K{line}");
        self.open = true;
    }

    fn update(&mut self, done: u64) {
        if self.bar && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.draw(done);
        }
    }

    fn finish(&mut self, done: u64) {
        if self.bar && self.enabled {
            self.draw(done);
            eprintln!();
            self.open = false;
        }
    }
}

impl Drop for Progress {
    /// A download that fails mid-way ends the bar's line, so the error starts a line of its own.
    fn drop(&mut self) {
        if self.open {
            eprintln!();
        }
    }
}
