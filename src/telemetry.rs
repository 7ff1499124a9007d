//! Logging to stderr (stdout is for command output): human-readable by default, JSON in
//! production (`LFP_LOG_FORMAT=json`).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// The filter when `LFP_LOG` is unset. `bulk` is for commands whose statements are slow by
/// design (the scale generator inserts thousands of rows per statement): sqlx's
/// slow-statement warning (target `sqlx::query`) would print each one's whole text, megabytes
/// of placeholders; sqlx's other warnings (the pool's) stay.
pub fn default_filter(bulk: bool) -> String {
    let base = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";
    if bulk {
        format!("{base},sqlx::query=error")
    } else {
        base.to_owned()
    }
}

pub fn init(format: LogFormat, bulk: bool) {
    let filter =
        EnvFilter::try_from_env("LFP_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter(bulk)));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's default drops sqlx's statement warnings and nothing else of sqlx's.
    #[test]
    fn bulk_commands_quiet_only_the_statement_log() {
        for (bulk, statements) in [(false, true), (true, false)] {
            let subscriber =
                tracing_subscriber::registry().with(EnvFilter::new(default_filter(bulk)));
            tracing::subscriber::with_default(subscriber, || {
                use tracing::Level;
                assert_eq!(
                    tracing::enabled!(target: "sqlx::query", Level::WARN),
                    statements,
                    "bulk = {bulk}"
                );
                assert!(tracing::enabled!(target: "sqlx::pool", Level::WARN));
                assert!(!tracing::enabled!(target: "sqlx::pool", Level::INFO));
                assert!(tracing::enabled!(target: "lawfirm_pro", Level::INFO));
            });
        }
    }
}
