//! Extractors whose rejections are problem+json, and the request facts the audit trail needs.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::{ApiError, from_json_rejection, from_query_rejection, not_json};
use crate::error::FieldError;

/// `Json<T>` whose failures are problems (400 syntax, 415 type, 422 shape, 413 size).
///
/// Text with a NUL character is refused here, for every body at once: PostgreSQL cannot
/// store it in `text` (the insert would fail as a 500) and no legal text needs it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The type first, as `axum::Json` does: nothing is read of a body that is not JSON.
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| from_json_rejection(e.into()))?;
        let axum::Json(v) = axum::Json::<T>::from_bytes(&bytes).map_err(from_json_rejection)?;
        if spells_nul(&bytes) {
            return Err(ApiError::validation(vec![FieldError::new(
                nul_field(&bytes),
                "must not contain NUL characters",
            )]));
        }
        Ok(Self(v))
    }
}

/// `application/json` or `application/*+json`, the types `axum::Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        })
}

/// Whether a body that parsed as JSON holds a NUL: the escape `\u0000` not itself escaped
/// (an even number of backslashes before it). A parsed body has backslashes only inside
/// strings, so this is exact, whatever the target type skipped or refused to look at.
fn spells_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && bytes[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
    })
}

/// Where the body's first NUL-carrying string sits (`a.b[2]`), or `body` when that cannot
/// be said (a part that only the target type could read).
fn nul_field(bytes: &[u8]) -> String {
    fn walk(v: &serde_json::Value, path: &mut String) -> bool {
        use serde_json::Value as V;
        match v {
            V::String(s) => s.contains('\0'),
            V::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            V::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) if walk(&v, &mut path) && !path.is_empty() => path,
        _ => "body".into(),
    }
}

/// `Query<T>` whose failures are 422 problems.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let q = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(from_query_rejection)?;
        // A filter with a NUL would reach PostgreSQL as text it cannot take (see `ApiJson`).
        let raw = parts.uri.query().unwrap_or("");
        if raw.contains("%00")
            && let Some((field, _)) =
                url::form_urlencoded::parse(raw.as_bytes()).find(|(_, v)| v.contains('\0'))
        {
            return Err(ApiError::validation(vec![FieldError::new(
                field.into_owned(),
                "must not contain NUL characters",
            )]));
        }
        Ok(Self(q.0))
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

#[cfg(test)]
mod tests {
    use super::{nul_field, spells_nul};

    #[test]
    fn finds_a_nul_and_the_field_holding_it() {
        assert!(!spells_nul(br#"{"title":"ok"}"#));
        let b = br#"{"title":"ok","practice_area":"a\u0000b"}"#;
        assert!(spells_nul(b));
        assert_eq!(nul_field(b), "practice_area");
        let b = br#"{"parties":[{"name":"x"},{"name":"\u0000"}]}"#;
        assert!(spells_nul(b));
        assert_eq!(nul_field(b), "parties[1].name");
        // An escaped backslash followed by the letters is text, not a NUL; a third
        // backslash makes it one again.
        assert!(!spells_nul(br#"{"note":"C:\\u0000"}"#));
        assert!(spells_nul(br#"{"note":"C:\\\u0000"}"#));
    }

    /// Parts a target type skips (an unknown field) may be unreadable as a `Value`: the
    /// NUL is still found, and the field is then the whole body.
    #[test]
    fn a_nul_next_to_what_only_the_target_type_skips_is_still_found() {
        for b in [
            &br#"{"title":"a\u0000b","x":1e400}"#[..],
            &br#"{"title":"a\u0000b","x":"\udc00"}"#[..],
        ] {
            assert!(spells_nul(b), "{}", String::from_utf8_lossy(b));
            assert_eq!(nul_field(b), "body");
        }
    }
}
