//! Pages served by the binary: the web portal (sign-in, dashboard, matter pages; see
//! [`pages`]), the first-run setup page, and the static assets (CSS and ES modules, compiled
//! in: there is no separate front-end build).

pub mod client;
pub mod pages;
pub mod staff;
pub mod work;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{Html, IntoResponse},
    routing::{get, post},
};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

pub fn router() -> Router<AppState> {
    let portal = Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/cases/{id}", get(pages::case_view))
        .route("/cases/{id}/messages", post(pages::send_message))
        .route("/cases/{id}/phase", post(pages::change_phase))
        .route(
            "/cases/new",
            get(work::new_case_form).post(work::new_case_submit),
        )
        .route("/cases/{id}/time", post(work::record_time))
        .route("/cases/{id}/invoices", post(work::generate_invoice))
        .route(
            "/cases/{id}/book",
            get(work::book_form).post(work::book_submit),
        )
        .route("/invoices/{id}", get(work::invoice_view))
        .route("/invoices/{id}/send", post(work::send_invoice))
        .route("/invoices/{id}/pay", post(work::pay_invoice))
        .merge(staff::routes())
        .merge(client::routes())
        // Pages show client data: never in a shared or browser cache.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(portal)
        .route(
            "/welcome",
            get(|| async { Html(include_str!("static/index.html")) }),
        )
        .route(
            "/setup",
            get(|| async { Html(include_str!("static/setup.html")) }),
        )
        .route("/static/setup.js", get(setup_js))
        .route("/static/style.css", get(style_css))
        .route("/static/live.js", get(live_js))
        .route("/static/portal.js", get(portal_js))
}

async fn live_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/live.js"),
    )
}

async fn portal_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/portal.js"),
    )
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
