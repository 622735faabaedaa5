//! Prometheus metrics, kept in the process and rendered in the text format at `/metrics`.
//!
//! Hand-written rather than a metrics crate: a few counters, one gauge and one histogram family
//! are all this service needs, and each is a plain atomic or a small map.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Upper bounds of the request-latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything the process counts.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub sync_pushes: AtomicU64,
    pub sync_pulls: AtomicU64,
    pub mutations_applied: AtomicU64,
    pub mutations_rejected: AtomicU64,
    pub open_streams: AtomicI64,
    push_sends: Mutex<BTreeMap<(String, String), u64>>,
    /// The spec's route templates, `/v1/...` (set once at start-up).
    routes: std::sync::OnceLock<Vec<String>>,
}

/// Routes served outside the OpenAPI spec; the spec's own paths are added by `set_routes`.
const FIXED_ROUTES: [&str; 13] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/sync/push",
    "/v1/sync/pull",
    "/v1/sync/events",
    "/v1/rxdb/events",
    "/v1/rxdb/{collection}/pull",
    "/v1/rxdb/{collection}/push",
    "/v1/attachments/{id}",
    "/v1/attachments/{id}/content",
    "/v1/attachments/{id}/finish",
];

/// The label for every path that is no route of ours: whatever strangers send, the number of
/// label values stays the number of routes.
pub const UNMATCHED: &str = "unmatched";

/// Whether a route template (`/v1/cohorts/{id}`) matches a path, segment by segment.
fn matches(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t == p || (t.starts_with('{') && !p.is_empty()) => {}
            _ => return false,
        }
    }
}

/// An HTTP method as a label: one of the standard ones, else `other`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Tells the routes of the API (templates like `/v1/cohorts/{id}`), beyond the fixed ones.
    pub fn set_routes(&self, routes: Vec<String>) {
        let _ = self.routes.set(routes);
    }

    /// The route template a path matches, or [`UNMATCHED`]: routes, not records or strangers'
    /// paths, are the label values.
    pub fn route_of(&self, path: &str) -> String {
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs".to_owned();
        }
        // The console's pages are one label: its paths carry record ids, and its traffic is
        // people at laptops, not the load the API's labels are for.
        if path == "/console" || path.starts_with("/console/") {
            return "/console".to_owned();
        }
        // Every request passes here: compare borrowed templates, copy only the one that matches.
        FIXED_ROUTES
            .into_iter()
            .chain(self.routes.get().into_iter().flatten().map(String::as_str))
            .find(|route| matches(route, path))
            .unwrap_or(UNMATCHED)
            .to_owned()
    }

    /// Counts one answered request.
    pub fn observe_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let route = self.route_of(path);
        let method = method_label(method);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests
            .entry((method.to_owned(), route.clone(), status))
            .or_default() += 1;
        drop(requests);
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = latency.entry(route).or_default();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(histogram.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Counts one push send by outcome (`sent`, `retry`, `pruned`, `failed`, `auth_failure`) and
    /// FCM error code (empty when sent).
    pub fn observe_send(&self, outcome: &str, code: &str) {
        let mut sends = self.push_sends.lock().unwrap_or_else(|e| e.into_inner());
        *sends
            .entry((outcome.to_owned(), code.to_owned()))
            .or_default() += 1;
    }

    /// Counts many successful sends.
    pub fn observe_sent(&self, count: usize) {
        let mut sends = self.push_sends.lock().unwrap_or_else(|e| e.into_inner());
        *sends.entry(("sent".to_owned(), String::new())).or_default() += count as u64;
    }

    /// The metrics in Prometheus' text format, with gauges measured at scrape time appended.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP veldwerk_http_requests_total Answered HTTP requests."
        );
        let _ = writeln!(out, "# TYPE veldwerk_http_requests_total counter");
        for ((method, route, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let route = escape(route);
            let _ = writeln!(
                out,
                "veldwerk_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP veldwerk_http_request_duration_seconds Time to answer a request."
        );
        let _ = writeln!(
            out,
            "# TYPE veldwerk_http_request_duration_seconds histogram"
        );
        for (route, histogram) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let route = escape(route);
            for (bound, bucket) in LATENCY_BUCKETS.iter().zip(histogram.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "veldwerk_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {bucket}"
                );
            }
            let _ = writeln!(
                out,
                "veldwerk_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "veldwerk_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "veldwerk_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
        for (name, help, value) in [
            (
                "veldwerk_sync_pushes_total",
                "Sync pushes handled.",
                self.sync_pushes.load(Ordering::Relaxed),
            ),
            (
                "veldwerk_sync_pulls_total",
                "Sync pulls handled.",
                self.sync_pulls.load(Ordering::Relaxed),
            ),
            (
                "veldwerk_sync_mutations_applied_total",
                "Mutations applied.",
                self.mutations_applied.load(Ordering::Relaxed),
            ),
            (
                "veldwerk_sync_mutations_rejected_total",
                "Mutations rejected.",
                self.mutations_rejected.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP veldwerk_sync_open_streams Live sync streams open.\n# TYPE veldwerk_sync_open_streams gauge\nveldwerk_sync_open_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP veldwerk_push_sends_total Push sends by outcome and FCM error code."
        );
        let _ = writeln!(out, "# TYPE veldwerk_push_sends_total counter");
        for ((outcome, code), count) in self
            .push_sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let (outcome, code) = (escape(outcome), escape(code));
            let _ = writeln!(
                out,
                "veldwerk_push_sends_total{{outcome=\"{outcome}\",code=\"{code}\"}} {count}"
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_their_route_and_strangers_one_label() {
        let metrics = Metrics::default();
        metrics.set_routes(vec![
            "/v1/cohorts/{id}/invites".into(),
            "/v1/cohorts".into(),
        ]);
        let cases = [
            (
                "/v1/cohorts/01a22b28-f1f7-764a-8c5a-d7f55fa3db96/invites",
                "/v1/cohorts/{id}/invites",
            ),
            ("/v1/cohorts/not-a-uuid/invites", "/v1/cohorts/{id}/invites"),
            ("/v1/cohorts", "/v1/cohorts"),
            ("/v1/attachments/x/content", "/v1/attachments/{id}/content"),
            ("/v1/rxdb/interviews/push", "/v1/rxdb/{collection}/push"),
            ("/docs/swagger-ui.css", "/docs"),
            (
                "/console/cohorts/01a22b28-f1f7-764a-8c5a-d7f55fa3db96",
                "/console",
            ),
            ("/consoles", UNMATCHED),
            ("/v1/cohorts//invites", UNMATCHED),
            ("/v1/cohorts/x/invites/y", UNMATCHED),
            ("/wp-admin/\\\"quote", UNMATCHED),
        ];
        for (path, route) in cases {
            assert_eq!(metrics.route_of(path), route, "{path}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_methods_bounded() {
        let metrics = Metrics::default();
        metrics.observe_request("BREW", "/x", 404, Duration::from_millis(1));
        metrics.observe_send("failed", "A\\B\"C\nD");
        let text = metrics.render(&[]);
        assert!(
            text.contains(r#"{method="other",route="unmatched",status="404"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"code="A\\B\"C\nD""#), "{text}");
    }

    #[test]
    fn requests_are_counted_and_bucketed() {
        let metrics = Metrics::default();
        metrics.observe_request("GET", "/healthz", 200, Duration::from_millis(3));
        metrics.observe_request("GET", "/healthz", 200, Duration::from_millis(30));
        let text = metrics.render(&[("veldwerk_outbox_pending", "Pending.", 2.0)]);
        assert!(text.contains(
            r#"veldwerk_http_requests_total{method="GET",route="/healthz",status="200"} 2"#
        ));
        assert!(text.contains(
            r#"veldwerk_http_request_duration_seconds_bucket{route="/healthz",le="0.005"} 1"#
        ));
        assert!(text.contains(
            r#"veldwerk_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"} 2"#
        ));
        assert!(text.contains("veldwerk_outbox_pending 2"));
    }
}
