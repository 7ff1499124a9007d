//! The HTTP surface: router, middleware (tracing, metrics, security headers, limits),
//! problem+json errors, extractors, OpenAPI.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod pagination;
pub mod serve;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer, set_header::SetResponseHeaderLayer, trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "Law Firm Pro API", version = "1", description = "The HTTP contract of the Law Firm Pro client portal."),
    modifiers(&BearerAuth),
    components(schemas(error::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The `/api/v1` routes of every capability, with their OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::routes::router())
        .merge(crate::users::routes::router())
        .merge(crate::audit::routes::router())
        .merge(crate::cases::routes::router())
        .merge(crate::documents::routes::router())
        .merge(crate::realtime::routes::router())
        .merge(crate::messages::routes::router())
        .merge(crate::appointments::routes::router())
        .merge(crate::mail::routes::router())
        .merge(crate::billing::routes::router())
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = OpenApiRouter::<AppState>::new()
        .nest("/api/v1", api_routes())
        .split_for_parts();
    listing_itself(api)
}

/// The document served at `/api/v1/openapi.json` lists that path too (API.md: "every `/api/v1`
/// endpoint"); it is served by a plain route, since it is made from the others.
fn listing_itself(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{
        ResponseBuilder,
        path::{HttpMethod, OperationBuilder},
    };
    doc.paths.add_path_operation(
        "/api/v1/openapi.json",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .tag("meta")
            .operation_id(Some("openapi"))
            .summary(Some("This OpenAPI 3.1 document (no sign-in needed)"))
            .response(
                "200",
                ResponseBuilder::new().description("The OpenAPI document of `/api/v1`"),
            )
            .build(),
    );
    doc
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::new()
        .nest("/api/v1", api_routes())
        .split_for_parts();
    let doc = listing_itself(doc);
    let doc_json = std::sync::Arc::new(doc.to_pretty_json().expect("OpenAPI serialises"));

    let api = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let body = doc_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        body.as_str().to_owned(),
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn(problem_errors))
        // Client data must never sit in a shared or browser cache.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    let max_json = state.config.max_json_bytes;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(crate::web::router().layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::web::client::page_context,
        )))
        .merge(
            crate::appointments::routes::feed_router()
                .layer(axum::middleware::from_fn(problem_errors)),
        )
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_json))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::audit_denials))
        .layer(axum::Extension(extract::TrustedProxies(state.config.trusted_proxies.clone())))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                // The route template, never the raw URI: paths and queries may carry tokens.
                let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
                tracing::info_span!("http", method = %req.method(), route = route.as_deref().unwrap_or("unmatched"))
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.config.request_timeout,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred.").into_response()
        }))
        .with_state(state);
    with_security_headers(router)
}

/// Every API error is problem+json: what an extractor of axum's rejects (a body over the
/// limit on a raw-bytes route, a path that is not UTF-8, a failed WebSocket upgrade) comes as
/// short plain text, and is rewritten here with the same status, its text as the detail and
/// its other headers kept.
async fn problem_errors(req: Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text);
    let detail = match detail.trim() {
        "" => status.canonical_reason().unwrap_or("Error").to_owned(),
        d => d.to_owned(),
    };
    let mut out = ApiError::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// The routes that stream a document upload (their handlers authenticate before reading a
/// byte of the body, so only a signed-in user can keep one open).
const UPLOAD_ROUTES: &[&str] = &[
    "/api/v1/cases/{id}/documents",
    "/api/v1/documents/{id}/versions",
    "/cases/{id}/documents/upload",
];

/// An upload: a multipart POST to one of [`UPLOAD_ROUTES`]. The content type alone would let
/// anyone hold any route open by sending a slow body labelled multipart.
fn is_upload(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|m| UPLOAD_ROUTES.contains(&m.as_str()))
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("multipart/form-data"))
}

/// A request must be answered within a minute (`Config::request_timeout`), except uploads: a 100 MiB document over a
/// slow office line legitimately takes longer, and its size is bounded while streaming.
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if is_upload(&req) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The request took too long; please try again.",
        )
        .into_response(),
    }
}

/// The same headers on every response, error or not.
fn with_security_headers(router: Router) -> Router {
    const HEADERS: &[(&str, &str)] = &[
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ];
    // A route may set a stricter value of its own (the logo's sandbox, `no-referrer` on
    // pages whose URL carries a token); every other response gets these.
    HEADERS.iter().fold(router, |r, (name, value)| {
        r.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ))
    })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is not reachable.",
            )
            .with_code("unavailable")
            .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed on this resource.",
    )
    .with_code("method_not_allowed")
}
