//! RFC 9457 problem details for every failure, including axum's own rejections.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::error::{AuthFailure, Error, FieldError};

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Machine-readable reason, e.g. `totp_required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// An HTTP error: a status with a problem body and maybe a `Retry-After`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    code: Option<&'static str>,
    errors: Option<Vec<FieldError>>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            code: None,
            errors: None,
            retry_after: None,
        }
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "The resource does not exist.").with_code("not_found")
    }
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The request has invalid fields.",
        )
        .with_code("validation_failed");
        e.errors = Some(errors);
        e
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => Self::not_found(),
            Error::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, why).with_code("forbidden"),
            Error::Unauthorized(kind) => {
                let (detail, code) = match kind {
                    AuthFailure::InvalidCredentials => {
                        ("Invalid email or password.", "invalid_credentials")
                    }
                    AuthFailure::TotpRequired => (
                        "A one-time code from your authenticator is required.",
                        "totp_required",
                    ),
                    AuthFailure::InvalidTotp => ("The one-time code is not valid.", "invalid_totp"),
                    AuthFailure::InvalidToken => {
                        ("Missing, invalid or expired credentials.", "invalid_token")
                    }
                };
                Self::new(StatusCode::UNAUTHORIZED, detail).with_code(code)
            }
            Error::Conflict(d) => Self::new(StatusCode::CONFLICT, d).with_code("conflict"),
            Error::Malformed(d) => Self::new(StatusCode::BAD_REQUEST, d).with_code("malformed"),
            Error::Validation(errors) => Self::validation(errors),
            Error::TooLarge(d) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, d).with_code("too_large")
            }
            Error::UnsupportedMediaType(d) => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, d).with_code("unsupported_media_type")
            }
            Error::RateLimited { retry_after_secs } => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts; try again later.",
                )
                .with_code("rate_limited");
                e.retry_after = Some(retry_after_secs.max(1));
                e
            }
            Error::Unavailable(cause) => {
                tracing::error!(error = %cause, "database unavailable");
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is temporarily unavailable.",
                )
                .with_code("unavailable");
                e.retry_after = Some(5);
                e
            }
            Error::StorageFull(cause) => {
                tracing::error!(error = ?cause, "object store full");
                let mut e = Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "The document store is full; nothing was saved. Try again later.",
                )
                .with_code("storage_full");
                e.retry_after = Some(60);
                e
            }
            Error::Internal(cause) => {
                // The cause chain goes to the log, never to the client.
                tracing::error!(error = ?cause, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An unexpected error occurred.",
                )
            }
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            errors: self.errors,
        };
        let mut res = (self.status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Turns axum's JSON rejections into problems: syntax 400, shape 422, type 415, size 413.
pub fn from_json_rejection(r: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as J;
    match r {
        J::JsonDataError(e) => {
            let text = e.body_text();
            let msg = strip_position(
                text.split_once("target type: ")
                    .map(|(_, m)| m)
                    .unwrap_or(&text),
            );
            let field = field_from_serde_message(&msg);
            ApiError::validation(vec![FieldError::new(field, msg)])
        }
        J::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "The body is not valid JSON.")
                .with_code("malformed_json")
        }
        J::MissingJsonContentType(_) => not_json(),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.",
        )
        .with_code("too_large"),
        other => ApiError::new(other.status(), "The request body could not be read."),
    }
}

/// A body sent as something other than JSON (415).
pub fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Expected `Content-Type: application/json`.",
    )
    .with_code("unsupported_media_type")
}

/// serde appends "at line 1 column 2"; clients need the field, not our parser's position.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde says `missing field `email`` or `email: invalid type…`; pull the field name out.
fn field_from_serde_message(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return rest.split('`').next().unwrap_or("body").to_string();
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        return rest.split('`').next().unwrap_or("body").to_string();
    }
    match msg.split_once(": ") {
        Some((path, _)) if !path.contains(' ') && !path.is_empty() => path.to_string(),
        _ => "body".into(),
    }
}

/// Problem for a query string that does not parse.
pub fn from_query_rejection(r: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = r.body_text();
    let msg = strip_position(
        text.split_once("query string: ")
            .map(|(_, m)| m)
            .unwrap_or(&text),
    );
    ApiError::validation(vec![FieldError::new(field_from_serde_message(&msg), msg)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_fields() {
        assert_eq!(
            field_from_serde_message("missing field `email` at line 1 column 2"),
            "email"
        );
        assert_eq!(
            field_from_serde_message("name: invalid type: integer `1`, expected a string"),
            "name"
        );
        assert_eq!(field_from_serde_message("invalid type: map"), "body");
    }
}
