//! The `lawfirm-pro` binary: parse the command line, read configuration, dispatch.

use clap::Parser;

/// jemalloc instead of glibc's malloc: the server spent about a fifth of its CPU allocating
/// (a `perf` profile under load), and with jemalloc it serves 12–23 % more requests a second
/// on PostgreSQL, idling at 38–44 MiB and holding less under load (docs/benchmarks.md, round
/// 22; mimalloc was as fast but idled at 55–66 MiB, over the 50 MB target: round 21).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    lawfirm_pro::install_tls_provider();
    let cli = lawfirm_pro::cli::Cli::parse();
    let config = match lawfirm_pro::Config::load(cli.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lawfirm-pro: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    lawfirm_pro::telemetry::init(config.log_format, cli.is_bulk());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lawfirm-pro: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lawfirm_pro::cli::run(cli, config)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            eprintln!("lawfirm-pro: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
