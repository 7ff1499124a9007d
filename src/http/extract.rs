//! Extractors whose rejections are problem+json, and the request facts the audit trail needs.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::{ApiError, from_json_rejection, from_query_rejection};

/// `Json<T>` whose failures are problems (400 syntax, 415 type, 422 shape, 413 size).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(from_json_rejection)
    }
}

/// `Query<T>` whose failures are 422 problems.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(from_query_rejection)
    }
}

/// `Path<T>`: an id that does not parse cannot name anything, so it is a 404.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

/// Where a request came from, for the audit trail and throttling.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Which proxies may tell us the client's address (`X-Forwarded-For`); set from config.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<std::net::IpAddr>);

impl RequestMeta {
    pub fn from_parts(parts: &Parts) -> Self {
        Self::from_request(&parts.headers, &parts.extensions)
    }

    pub fn from_request(headers: &axum::http::HeaderMap, ext: &axum::http::Extensions) -> Self {
        let peer = ext
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let trusted = ext.get::<TrustedProxies>();
        let ip = match (peer, trusted) {
            (Some(peer), Some(t)) if t.0.contains(&peer) => {
                // The right-most address our proxies did not add is the client.
                let forwarded: Vec<std::net::IpAddr> = headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                forwarded
                    .into_iter()
                    .rev()
                    .find(|a| !t.0.contains(a))
                    .or(Some(peer))
            }
            (peer, _) => peer,
        };
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Self {
            ip: ip.map(|a| a.to_string()),
            user_agent,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}
