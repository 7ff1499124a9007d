//! Pages served by the binary. For now: a landing page and the first-run setup page that
//! turns the one-time link printed at start-up into the first admin account.

use axum::{
    Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("static/index.html")) }),
        )
        .route(
            "/setup",
            get(|| async { Html(include_str!("static/setup.html")) }),
        )
        .route("/static/setup.js", get(setup_js))
        .route("/static/style.css", get(style_css))
}

async fn setup_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/setup.js"),
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
}
