//! Prometheus metrics per application instance (no global registry, so tests can run
//! several apps in one process): request counts and latency by route and status.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// The audit writer's own timings (what an audited request waits on).
    pub audit: AuditTimings,
}

/// Durations of the audit writer's steps, in seconds: the commit a batch of entries waits for
/// (to the spool on SQLite, to the chain otherwise), and the mover's moves from spool to chain.
#[derive(Clone)]
pub struct AuditTimings {
    pub append: Histogram,
    pub moved: Histogram,
}

fn seconds() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(seconds);
        let audit = AuditTimings {
            append: seconds(),
            moved: seconds(),
        };
        registry.register(
            "audit_append_duration_seconds",
            "Audit batch commits (SQLite: to the spool)",
            audit.append.clone(),
        );
        registry.register(
            "audit_move_duration_seconds",
            "Moves of spooled audit entries onto the chain (SQLite)",
            audit.moved.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            latency.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            audit,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Middleware: time the request and count it under its route template (never the raw path,
/// which would leak ids and explode cardinality).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    // Only standard methods become labels: made-up ones must not grow the registry.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "OTHER".to_owned(),
    };
    let start = Instant::now();
    let res = next.run(req).await.into_response();
    let labels = RouteLabels {
        method,
        route,
        status: res.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    res
}
