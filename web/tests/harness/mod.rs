//! What the browser tests and the page benchmark share: a static server for the built
//! page (`dist/`, from `trunk build --release`) and a real headless Chromium driven over
//! the DevTools protocol (headless_chrome).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The built page; a clear failure when it has not been built.
pub fn dist() -> PathBuf {
    let dist = root().join("dist");
    assert!(
        dist.join("index.html").exists() && dist.join("mxq-web_bg.wasm").exists(),
        "no built page in {}: run `trunk build --release` first (scripts/test does)",
        dist.display()
    );
    dist
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// One response of [`serve_logged`]'s server: the path, the status and the body's bytes.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: String,
    pub status: u16,
    pub bytes: usize,
}

/// Serves `dist/` on 127.0.0.1 (a free port) from a background thread, plus extra files
/// held in memory (broken bundles for the error tests). Returns the base URL.
pub fn serve(extra: Vec<(&'static str, Vec<u8>)>) -> String {
    serve_logged(extra).0
}

/// What [`serve_logged`]'s server sent, response by response.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<Served>>>;

/// The body bytes the server sent for `path` so far.
pub fn sent(log: &Log, path: &str) -> usize {
    log.lock().unwrap().iter().filter(|s| s.path == path).map(|s| s.bytes).sum()
}

/// [`serve`], as a static host with validators does it: every file carries an `ETag` (a hash of
/// its bytes) and a request that names it in `If-None-Match` gets `304 Not Modified` with no
/// body. Also returns the log of what was sent.
pub fn serve_logged(extra: Vec<(&'static str, Vec<u8>)>) -> (String, Log) {
    serve_delayed(extra, None)
}

/// [`serve_logged`], answering `delay`'s path only after its time (as a slow network would
/// deliver a large file), each request on its own thread so the others are not held up.
pub fn serve_delayed(extra: Vec<(&'static str, Vec<u8>)>, delay: Option<(&'static str, Duration)>) -> (String, Log) {
    let dist = dist();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind a local port");
    let port = server.server_addr().to_ip().unwrap().port();
    let sent = log.clone();
    let extra = std::sync::Arc::new(extra);
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let (extra, dist, sent) = (extra.clone(), dist.clone(), sent.clone());
            std::thread::spawn(move || respond(request, &extra, &dist, &sent, delay));
        }
    });
    (format!("http://127.0.0.1:{port}"), log)
}

/// One response of [`serve_delayed`]'s server.
fn respond(
    request: tiny_http::Request,
    extra: &[(&'static str, Vec<u8>)],
    dist: &Path,
    sent: &Log,
    delay: Option<(&'static str, Duration)>,
) {
    use std::hash::{Hash, Hasher};
    let path = request.url().split('?').next().unwrap_or("/").trim_start_matches('/').to_string();
    let path = if path.is_empty() { "index.html".to_string() } else { path };
    let body = match extra.iter().find(|(p, _)| *p == path) {
        Some((_, bytes)) => Some(bytes.clone()),
        None if !path.contains("..") => std::fs::read(dist.join(&path)).ok(),
        None => None,
    };
    let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k, v).unwrap();
    let (status, bytes, response) = match body {
        Some(bytes) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            let etag = format!("\"{:016x}\"", hasher.finish());
            let matches = request
                .headers()
                .iter()
                .any(|h| h.field.equiv("If-None-Match") && h.value.as_str().split(',').any(|t| t.trim() == etag));
            let (status, n, response) = if matches {
                (304, 0, tiny_http::Response::from_data(Vec::new()).with_status_code(304))
            } else {
                let n = bytes.len();
                (200, n, tiny_http::Response::from_data(bytes).with_header(header("Content-Type", mime(&path))))
            };
            (status, n, response.with_header(header("ETag", &etag)))
        }
        None => (404, 9, tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)),
    };
    if let Some((_, wait)) = delay.filter(|(p, _)| *p == path) {
        std::thread::sleep(wait);
    }
    sent.lock().unwrap().push(Served { path, status, bytes });
    let _ = request.respond(response);
}

/// A fresh headless Chromium; with `webgpu`, the flags that give it SwiftShader's WebGPU
/// adapter (without them `requestAdapter()` returns null and the page falls back to the CPU).
pub fn browser(webgpu: bool) -> Browser {
    let mut args: Vec<&OsStr> =
        ["--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update"]
            .iter()
            .map(OsStr::new)
            .collect();
    if webgpu {
        args.extend(
            [
                "--enable-unsafe-webgpu",
                "--enable-features=Vulkan,WebGPU",
                "--use-webgpu-adapter=swiftshader",
                "--use-angle=swiftshader",
            ]
            .iter()
            .map(OsStr::new),
        );
    }
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1100, 900)))
        .idle_browser_timeout(Duration::from_secs(600))
        .args(args)
        .build()
        .expect("launch options");
    Browser::new(options).expect("start Chromium")
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no Chromium found: `scripts/tools --chromium` installs it")
}

/// Evaluates a JavaScript expression (awaiting promises) and returns its JSON value.
pub fn eval(tab: &Tab, expression: &str) -> serde_json::Value {
    let object = tab.evaluate(expression, true).unwrap_or_else(|e| panic!("evaluating `{expression}`: {e}"));
    object.value.unwrap_or(serde_json::Value::Null)
}

/// Waits until `expression` (a page state) is one of `states`; returns it. Fails with the
/// page's error text on an unexpected error state or after `timeout`.
pub fn wait_for(tab: &Tab, expression: &str, states: &[&str], timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let state = eval(tab, expression).as_str().unwrap_or("").to_string();
        if states.contains(&state.as_str()) {
            return state;
        }
        assert!(
            state != "error",
            "the page shows an error: {}",
            eval(tab, "document.getElementById('error').textContent")
        );
        assert!(start.elapsed() < timeout, "still '{state}' after {timeout:?}, waiting for {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Opens `url` in a new tab.
pub fn open(browser: &Browser, url: &str) -> std::sync::Arc<Tab> {
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(60));
    tab.navigate_to(url).expect("navigate");
    tab.wait_until_navigated().expect("page loads");
    tab
}

/// Keeps a screenshot of the tab under `target/browser/NAME.png`.
pub fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).expect("screenshot");
    let dir = root().join("target").join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// The generated cards of a document (`doc` is `document` or an iframe's document):
/// each image's pixels (RGB, as drawn on its canvas), its caption and its codes.
pub fn cards(tab: &Tab, doc: &str) -> Vec<Card> {
    let js = format!(
        "JSON.stringify(Array.from({doc}.querySelectorAll('.card')).map(c => {{
            const d = c.querySelector('canvas').getContext('2d').getImageData(0, 0, 64, 64).data;
            const rgb = Array.from(d).filter((_, i) => i % 4 !== 3);
            return {{ rgb, caption: c.querySelector('figcaption').textContent, codes: c.dataset.codes || '' }};
        }}))"
    );
    let json = eval(tab, &js);
    serde_json::from_str(json.as_str().expect("a JSON string")).expect("cards JSON")
}

#[derive(serde::Deserialize)]
pub struct Card {
    pub rgb: Vec<u8>,
    pub caption: String,
    pub codes: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card {{ lit: {}, caption: {:?}, codes: {:?} }}", self.lit(), self.caption, self.codes)
    }
}

impl Card {
    /// Pixels with a channel above 40 of 255.
    pub fn lit(&self) -> usize {
        self.rgb.chunks(3).filter(|p| p.iter().any(|&v| v > 40)).count()
    }

    pub fn codes(&self) -> Vec<u32> {
        self.codes.split_whitespace().map(|c| c.parse().expect("a code")).collect()
    }
}
