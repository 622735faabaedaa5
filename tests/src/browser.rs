//! A real browser for the console's tests: Debian's Chromium, driven headless through
//! ChromeDriver with the W3C WebDriver protocol (plain JSON over HTTP, spoken here with reqwest).
//!
//! Without `chromedriver` and `chromium` on the machine, [`Browser::start`] says the test was
//! skipped and returns `None`, so the README's test command passes on a machine with only the
//! Rust toolchain. CI installs both and sets `VELDWERK_TEST_BROWSER=required`, which turns a
//! missing browser into a failure.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session_url: String,
    driver: Child,
}

fn required() -> bool {
    std::env::var("VELDWERK_TEST_BROWSER").is_ok_and(|value| value == "required")
}

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// axe-core's script, installed by `npm ci --prefix tests/console`.
pub fn axe_source() -> Option<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(_) if !required() => None,
        Err(err) => panic!(
            "{}: {err} (run `npm ci --prefix tests/console`)",
            path.display()
        ),
    }
}

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Option<Self> {
        let driver_path =
            find_program(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find_program(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
        let (Some(driver_path), Some(chromium)) = (driver_path, chromium) else {
            assert!(
                !required(),
                "VELDWERK_TEST_BROWSER=required, but chromium or chromedriver is missing"
            );
            eprintln!(
                "skipped: no chromium and chromedriver (Debian packages `chromium chromium-driver`)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready
                && answer.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=nl"],
            },
        } } });
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Some(Self {
            http,
            session_url: format!("{base}/session/{session}"),
            driver,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session_url));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"]
            );
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (up to 10 s) until the page that a click or submit started has loaded: the URL has
    /// left `from`, or the page says what went wrong (`role="alert"`).
    pub async fn wait_for_page_after(&self, from: &str) {
        for _ in 0..100 {
            let state = self
                .execute(
                    "return [location.pathname, document.readyState, \
                     document.querySelectorAll('[role=alert]').length];",
                    json!([]),
                )
                .await;
            let left = state[0].as_str() != Some(from);
            let loaded = state[1] == "complete";
            if loaded && (left || state[2].as_u64() > Some(0)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page after {from} did not load in 10 s");
    }

    pub async fn title(&self) -> String {
        self.command(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements a CSS selector matches, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|element| element[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clicks what loads a new page (a link, a form's button) and waits (up to 10 s) until that
    /// page has loaded: the old document is marked first, so its leftovers are never read.
    pub async fn click_to_load(&self, css: &str) {
        self.execute("window.__veldwerkOldPage = true;", json!([]))
            .await;
        self.click(css).await;
        for _ in 0..100 {
            let state = self
                .execute(
                    "return [window.__veldwerkOldPage === true, document.readyState];",
                    json!([]),
                )
                .await;
            if state[0] == false && state[1] == "complete" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("clicking {css} loaded no new page within 10 s");
    }

    /// The one element a selector matches first; panics when there is none.
    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css}"))
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            None,
        )
        .await;
    }

    /// Replaces a field's value by typing, as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            None,
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Presses keys on the focused element (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub async fn keys(&self, text: &str) {
        let active = self
            .command(reqwest::Method::GET, "/element/active", None)
            .await;
        let element = active[ELEMENT]
            .as_str()
            .expect("a focused element")
            .to_owned();
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of the first element a selector matches, read in one step in the page
    /// (an element found first and read later can be replaced by a page still loading).
    pub async fn text(&self, css: &str) -> String {
        let text = self
            .execute(
                "const element = document.querySelector(arguments[0]); \
                 return element ? element.innerText.trim() : null;",
                json!([css]),
            )
            .await;
        text.as_str()
            .unwrap_or_else(|| panic!("no element matches {css}"))
            .to_owned()
    }

    /// Runs a script in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs a script that ends by calling its last argument.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The value of one of the page's cookies, as the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.command(reqwest::Method::GET, "/cookie", None).await;
        cookies.as_array()?.iter().find_map(|cookie| {
            (cookie["name"] == name)
                .then(|| cookie["value"].as_str().unwrap_or_default().to_owned())
        })
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    /// The serious and critical accessibility violations axe-core finds on the current page.
    pub async fn accessibility_violations(&self, axe: &str) -> Vec<Value> {
        self.execute(axe, json!([])).await;
        let found = self
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(
                   (result) => done(result.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                    nodes: v.nodes.map((n) => n.target.join(' ')) }))),
                   (error) => done([{ id: 'axe-failed', help: String(error) }]));",
                json!([]),
            )
            .await;
        found.as_array().cloned().unwrap_or_default()
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session_url).send().await;
        let _ = self.driver.kill().await;
    }
}
