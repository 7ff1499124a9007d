//! The error every service returns. It speaks of rules (not found, forbidden, conflict), never
//! of HTTP; `http::error` turns it into problem+json.

use serde::Serialize;

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a request was not authenticated. All of them answer 401; the code tells clients what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Bad credentials, unknown email, disabled account: one answer for all of them.
    InvalidCredentials,
    TotpRequired,
    InvalidTotp,
    /// Missing, malformed, expired or revoked token or session.
    InvalidToken,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("unauthenticated")]
    Unauthorized(AuthFailure),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A body that cannot be read as what it says it is (400), like malformed JSON.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The request body exceeds a configured limit (413).
    #[error("too large: {0}")]
    TooLarge(String),
    /// Content of a type the server does not accept (415).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("database unavailable")]
    Unavailable(#[source] sea_orm::DbErr),
    /// The object store has no room left (507): nothing was recorded, the client may retry later.
    #[error("storage full")]
    StorageFull(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        // A pool that cannot hand out a connection means the database is away: 503, retry.
        match &e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Self::Unavailable(e),
            DbErr::Exec(r) | DbErr::Query(r) if connection_lost(r) => Self::Unavailable(e),
            _ => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

/// A query that failed because the database went away under it (server restarted, network
/// gone, server shutting down or still starting): the request may be retried, so 503.
fn connection_lost(e: &sea_orm::RuntimeErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    let sea_orm::RuntimeErr::SqlxError(e) = e else {
        return false;
    };
    match &**e {
        SqlxError::Io(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P (operator intervention:
        // admin shutdown, crash shutdown, cannot connect now).
        SqlxError::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Collects field errors while parsing a request, so the caller hears about all of them at once.
#[derive(Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        r: std::result::Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError::new(field, e.to_string()));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}
