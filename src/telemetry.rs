//! Logging to stderr (stdout is for command output): human-readable by default, JSON in
//! production (`LFP_LOG_FORMAT=json`).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// `bulk` is for commands whose statements are slow by design (the scale generator inserts
/// thousands of rows per statement): sqlx's slow-statement warning would print each one's
/// whole text, megabytes of placeholders. `LFP_LOG` still overrides the default.
pub fn init(format: LogFormat, bulk: bool) {
    let default = if bulk {
        "info,sqlx=error,sea_orm=warn,sea_orm_migration=warn"
    } else {
        "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"
    };
    let filter = EnvFilter::try_from_env("LFP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
            .try_init(),
    };
}
