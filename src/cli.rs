//! The command line: `serve` (default), `migrate`, `demo`, `user create`, `backup`, `restore`,
//! `recount`, `audit verify`, `keys rotate`.

use std::{io::Read, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{AppState, Application, Config, auth::Principal, users::domain::Role};

#[derive(Debug, Parser)]
#[command(
    name = "lawfirm-pro",
    version,
    about = "Law Firm Pro: a self-hosted client portal for law firms"
)]
pub struct Cli {
    /// Optional TOML configuration file (also `LFP_CONFIG`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Commands that issue statements slow by design (see `telemetry::init`).
    pub fn is_bulk(&self) -> bool {
        matches!(self.command, Some(Command::Demo { scale: Some(_) }))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the portal (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Seed a demo firm (people, cases, deadlines) and print its logins.
    Demo {
        /// Instead of the small firm, generate a large synthetic one for load benchmarks:
        /// N = 1 (1,000 cases, 10,000 messages) up to N = 100 (100,000 cases, 1M messages,
        /// 10M audit entries). Needs an empty database. See docs/benchmarks.md.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        scale: Option<u32>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Copy the database, documents and a checksummed manifest into DIR (safe while serving).
    Backup {
        dir: PathBuf,
        /// Also copy the keys (`keys/`). Store such a backup as carefully as the keys themselves.
        #[arg(long)]
        include_keys: bool,
    },
    /// Restore a backup made by `backup` into an empty database and data directory.
    Restore { dir: PathBuf },
    /// Rebuild the read models the database keeps by triggers (unread and unbilled counters,
    /// each staff member's deadlines, newest-document bounds, each member's documents) from
    /// their sources and print how
    /// many rows were out of step. A repair after hand edits; stop the server first.
    Recount,
    /// Inspect the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage the master key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every document data key and TOTP secret under a new master key (content is not
    /// re-encrypted). Stop the server first. Generates the key unless `--new-key-stdin`.
    Rotate {
        /// Read the new base64 master key from standard input (required with LFP_MASTER_KEY).
        #[arg(long)]
        new_key_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exits 1 and names the first bad entry on tampering.
    Verify,
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(config)
                .await?
                .run_until_stopped()
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Recount => {
            let state = AppState::init(config).await?;
            let r = crate::db::recount::recount(&state.db).await?;
            state.audit.shutdown().await;
            println!(
                "recounted: {} membership case copies, {} membership counters, {} deadline rows, \
                 {} document bounds, {} member document rows corrected, \
                 {} message search rows out of step (all rebuilt if any), \
                 {} member case search rows out of step (all rebuilt)",
                r.case_copies,
                r.counters,
                r.deadlines,
                r.document_bounds,
                r.member_documents,
                r.search_rows,
                r.member_search_rows
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let state = AppState::init(config).await?;
            println!("migrations applied");
            state.audit.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { scale: Some(n) } => {
            let state = AppState::init(config).await?;
            let result = crate::demo::scale::generate(
                &state,
                crate::demo::scale::Sizes::for_scale(n),
                n as u64,
            )
            .await;
            state.audit.shutdown().await;
            crate::demo::scale::print_logins(n, &result?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { scale: None } => {
            let state = AppState::init(config).await?;
            let result = crate::demo::seed(&state).await;
            state.audit.shutdown().await;
            let (password, people) = result?;
            println!("Demo firm created. Every login below uses the password: {password}\n");
            for u in people {
                println!("  {:<10} {:<40} {}", u.role.as_str(), u.email, u.name);
            }
            println!("\nStart the portal with `lawfirm-pro serve` and sign in with any of them.");
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command:
                UserCommand::Create {
                    role,
                    email,
                    name,
                    password_stdin: _,
                },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let state = AppState::init(config).await?;
            let input = crate::users::service::NewUser {
                email,
                name,
                role: role.as_str().to_string(),
                password: Some(password),
                phone: None,
                timezone: None,
            };
            let result =
                crate::users::service::create_user(&state, &Principal::system(), input).await;
            state.audit.shutdown().await;
            match result {
                Ok(user) => {
                    println!("created {} {} ({})", user.role, user.email, user.id);
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::error::Error::Validation(errors)) => {
                    for e in errors {
                        eprintln!("lawfirm-pro: {}: {}", e.field, e.message);
                    }
                    Ok(ExitCode::from(2))
                }
                Err(crate::error::Error::Conflict(m)) => {
                    eprintln!("lawfirm-pro: {m}");
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Backup { dir, include_keys } => {
            let db = crate::db::Db::connect(&config.database_url, 2).await?;
            let opts = crate::backup::BackupOptions { include_keys };
            let result = crate::backup::backup(&config, &db, &dir, opts).await;
            db.close().await;
            let manifest = result?;
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            println!(
                "backup written to {}: {} files, {bytes} bytes, {} database{}",
                dir.display(),
                manifest.files.len(),
                manifest.database,
                if include_keys {
                    " (includes the keys: store it as carefully as the keys)"
                } else {
                    " (keys not included: keep a copy of keys/ or LFP_MASTER_KEY separately)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { dir } => {
            let report = crate::backup::restore(&config, &dir).await?;
            // Bring an older backup up to date, then prove the trail survived the trip.
            let state = AppState::init(config).await?;
            let chain = crate::audit::service::verify_chain(&state.db).await?;
            state.audit.shutdown().await;
            println!(
                "restored {} database and {} verified files{}; audit chain {} ({} entries)",
                report.database,
                report.files_verified,
                if report.keys_restored {
                    " including keys"
                } else {
                    ""
                },
                if chain.ok { "ok" } else { "BROKEN" },
                chain.entries_checked
            );
            Ok(if chain.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Keys {
            command: KeysCommand::Rotate { new_key_stdin },
        } => {
            let new_key = if new_key_stdin {
                let mut k = String::new();
                std::io::stdin().read_to_string(&mut k)?;
                Some(secrecy::SecretString::from(k.trim().to_string()))
            } else {
                None
            };
            let state = AppState::init(config).await?;
            let result = crate::documents::keys::rotate_master_key(&state, new_key).await;
            state.audit.shutdown().await;
            let r = result?;
            println!(
                "master key rotated: {} document keys and {} TOTP secrets re-wrapped",
                r.data_keys, r.totp_secrets
            );
            match r.key_file {
                Some(p) => println!(
                    "new key installed at {}; the old one was kept beside it",
                    p.display()
                ),
                None => println!("now set LFP_MASTER_KEY to the new key and restart"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let state = AppState::init(config).await?;
            let report = crate::audit::service::verify_chain(&state.db).await?;
            state.audit.shutdown().await;
            if report.ok {
                println!("audit chain ok: {} entries checked", report.entries_checked);
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit chain BROKEN at entry {} ({} entries checked)",
                    report.first_bad_id.unwrap_or_default(),
                    report.entries_checked
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}
