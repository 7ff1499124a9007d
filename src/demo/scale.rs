//! `lawfirm-pro demo --scale N`: a large synthetic firm for load benchmarks.
//!
//! Rows go in with multi-row `INSERT`s inside large transactions, not through the per-request
//! services — but the result is data the services accept as their own:
//! - every case has its lead attorney and its client as members (plus a paralegal on some),
//!   a `created` timeline entry, and `case_number_seq` knows the last number handed out;
//! - messages have a recipient row for every other member of their case;
//! - the full-text indexes are filled as the services fill them (generated `tsvector`
//!   columns on PostgreSQL; on SQLite the documents' FTS5 trigger and, for messages,
//!   `messages::search_index::add` with each message's audience);
//! - every document version is a real object: its bytes are encrypted with its own data key
//!   exactly as an upload is, the key wrapped under the master key, and written to the
//!   configured object store, so downloads decrypt;
//! - audit entries are appended through the audit chain's own `append_in`, so
//!   `lawfirm-pro audit verify` passes.
//!
//! One shortcut, stated: every generated login shares one Argon2id hash (one password, one
//! salt). Hashing 10,000 passwords at the OWASP cost would take longer than the rest of the
//! run; the hash is still a real one and logins verify against it at full cost.
//!
//! How N maps to sizes (linear; N = 100 is the largest, N = 1 the smallest full shape):
//! attorneys = clamp(N / 2, 2, 50), paralegals = attorneys / 5 (at least 1), one admin,
//! clients = 100·N, cases = 1,000·N, messages = 10,000·N, documents = 2,000·N,
//! time entries = 5,000·N, audit entries = 100,000·N, deadlines = cases.

use std::time::Instant;

use chrono::{Datelike, Duration};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Iterable,
    PaginatorTrait, Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    AppState,
    audit::{NewEntry, Outcome, service::append_bulk},
    billing::entity::time_entry,
    cases::{
        domain::format_number,
        entity::{deadline, legal_case, member, timeline},
    },
    documents::{
        entity::{document, version},
        upload::key_context,
    },
    messages::{
        entity::{message, recipient},
        search_index,
    },
    storage::{
        Storage,
        chunks::{ChunkCipher, DataKey, Encryptor},
    },
    users::entity::user,
};

/// How many rows of each kind one scale produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub attorneys: usize,
    pub paralegals: usize,
    pub clients: usize,
    pub cases: usize,
    pub messages: usize,
    pub documents: usize,
    pub time_entries: usize,
    pub audit: usize,
}

pub const MAX_SCALE: u32 = 100;

impl Sizes {
    pub fn for_scale(n: u32) -> Self {
        let n = n.clamp(1, MAX_SCALE) as usize;
        let attorneys = (n / 2).clamp(2, 50);
        Self {
            attorneys,
            paralegals: (attorneys / 5).max(1),
            clients: 100 * n,
            cases: 1_000 * n,
            messages: 10_000 * n,
            documents: 2_000 * n,
            time_entries: 5_000 * n,
            audit: 100_000 * n,
        }
    }

    /// A tiny firm of the same shape, for tests (seconds, not minutes).
    pub fn tiny() -> Self {
        Self {
            attorneys: 2,
            paralegals: 1,
            clients: 6,
            cases: 20,
            messages: 120,
            documents: 15,
            time_entries: 40,
            audit: 300,
        }
    }
}

/// What the generator made: the logins a load benchmark signs in with.
#[derive(Debug)]
pub struct Generated {
    pub password: String,
    pub admin: String,
    pub attorneys: Vec<String>,
    pub paralegals: Vec<String>,
    pub clients: Vec<String>,
    pub sizes: Sizes,
    pub seconds: f64,
    /// Seconds per phase, in order.
    pub phases: Vec<(&'static str, f64)>,
}

pub const DOMAIN: &str = "scale.lawfirm.example";

pub fn attorney_email(i: usize) -> String {
    format!("attorney{i}@{DOMAIN}")
}
pub fn paralegal_email(i: usize) -> String {
    format!("paralegal{i}@{DOMAIN}")
}
pub fn client_email(i: usize) -> String {
    format!("client{i}@{DOMAIN}")
}

const WORDS: &[&str] = &[
    "contract",
    "settlement",
    "deposition",
    "invoice",
    "hearing",
    "witness",
    "motion",
    "discovery",
    "appeal",
    "estate",
    "lease",
    "tenant",
    "employer",
    "overtime",
    "injury",
    "insurance",
    "claim",
    "merger",
    "trademark",
    "patent",
    "custody",
    "divorce",
    "probate",
    "subpoena",
    "affidavit",
    "exhibit",
    "mediation",
    "arbitration",
    "damages",
    "negligence",
    "warranty",
    "supplier",
    "shipment",
    "payment",
    "deadline",
    "filing",
    "court",
    "judge",
    "agreement",
    "breach",
    "notice",
    "review",
    "draft",
    "signature",
    "meeting",
    "schedule",
    "records",
    "evidence",
    "testimony",
    "counsel",
];
const AREAS: &[&str] = &[
    "employment",
    "probate",
    "commercial",
    "family",
    "real estate",
    "personal injury",
    "intellectual property",
    "immigration",
];
const STATUSES: &[&str] = &["intake", "open", "open", "open", "pending", "closed"];
const PHASES: &[&str] = &[
    "intake",
    "investigation",
    "discovery",
    "negotiation",
    "trial",
    "settlement",
];
const PRIORITIES: &[&str] = &["low", "normal", "normal", "high", "urgent"];
const SURNAMES: &[&str] = &[
    "Smith",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Müller",
    "Rossi",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Haddad",
    "Johansson",
    "O'Brien",
    "Dubois",
    "Novak",
    "Khan",
    "Levi",
];

fn words(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| *WORDS.choose(rng).expect("non-empty"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rows per statement: stay well under SQLite's and PostgreSQL's bound-parameter limits.
fn rows_per_statement<E: EntityTrait>() -> usize {
    (20_000 / E::Column::iter().count()).max(1)
}

async fn insert_rows<E, A>(txn: &DatabaseTransaction, rows: Vec<A>) -> anyhow::Result<()>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E> + Clone + Send,
{
    for chunk in rows.chunks(rows_per_statement::<E>()) {
        E::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Finish a phase's bar; how long the phase took.
fn done(pb: &ProgressBar) -> f64 {
    pb.finish();
    pb.elapsed().as_secs_f64()
}

fn bar(label: &'static str, len: usize) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(label);
    pb
}

/// Rows committed per transaction.
const TXN_ROWS: usize = 50_000;

/// Generate `total` rows in batches with `make(range)` and insert them, committing every
/// `TXN_ROWS` rows, with a progress bar.
async fn fill<E, A, F>(
    state: &AppState,
    label: &'static str,
    total: usize,
    mut make: F,
) -> anyhow::Result<(&'static str, f64)>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E> + Clone + Send,
    F: FnMut(std::ops::Range<usize>) -> Vec<A>,
{
    let pb = bar(label, total);
    let mut start = 0;
    while start < total {
        let end = (start + TXN_ROWS).min(total);
        let rows = make(start..end);
        let txn = state.db.conn().begin().await?;
        insert_rows(&txn, rows).await?;
        txn.commit().await?;
        pb.set_position(end as u64);
        start = end;
    }
    Ok((label, done(&pb)))
}

struct CaseInfo {
    id: Uuid,
    lead: usize,
    client: usize,
    paralegal: Option<usize>,
}

/// Fill an empty database with a firm of `sizes`. Refuses when people already exist.
pub async fn generate(state: &AppState, sizes: Sizes, seed: u64) -> anyhow::Result<Generated> {
    let started = Instant::now();
    if user::Entity::find().count(state.db.conn()).await? > 0 {
        anyhow::bail!("the database already has users: generate into an empty database");
    }
    let password = format!("scale-{}", &crate::crypto::random_token()[..16]);
    let hash = state
        .hasher
        .hash(&secrecy::SecretString::from(password.clone()))
        .await?;
    let mut phases = Vec::new();
    let now = crate::db::now();
    let year = now.year();
    let today = now.date_naive();

    // People.
    let admin_id = Uuid::now_v7();
    let attorney_ids: Vec<Uuid> = (0..sizes.attorneys).map(|_| Uuid::now_v7()).collect();
    let paralegal_ids: Vec<Uuid> = (0..sizes.paralegals).map(|_| Uuid::now_v7()).collect();
    let client_ids: Vec<Uuid> = (0..sizes.clients).map(|_| Uuid::now_v7()).collect();
    let person = |id: Uuid, email: String, name: String, role: &str| -> user::ActiveModel {
        user::Model {
            id,
            email,
            name,
            role: role.into(),
            status: "active".into(),
            phone: None,
            timezone: "America/New_York".into(),
            password_hash: Some(hash.clone()),
            totp_secret: None,
            totp_enabled: false,
            totp_last_step: None,
            created_at: now,
            updated_at: now,
        }
        .into()
    };
    let mut people = vec![person(
        admin_id,
        format!("admin@{DOMAIN}"),
        "Scale Admin".into(),
        "admin",
    )];
    for (i, id) in attorney_ids.iter().enumerate() {
        people.push(person(
            *id,
            attorney_email(i),
            format!("Attorney {} {i}", SURNAMES[i % SURNAMES.len()]),
            "attorney",
        ));
    }
    for (i, id) in paralegal_ids.iter().enumerate() {
        people.push(person(
            *id,
            paralegal_email(i),
            format!("Paralegal {i}"),
            "paralegal",
        ));
    }
    for (i, id) in client_ids.iter().enumerate() {
        people.push(person(
            *id,
            client_email(i),
            format!("Client {} {i}", SURNAMES[(i * 7) % SURNAMES.len()]),
            "client",
        ));
    }
    let total_people = people.len();
    let mut people = Some(people);
    phases.push(
        fill(state, "people", total_people, |_| {
            people.take().unwrap_or_default()
        })
        .await?,
    );

    // Cases: lead attorney round-robin, each client on cases/clients cases, some paralegals.
    let cases: Vec<CaseInfo> = (0..sizes.cases)
        .map(|i| CaseInfo {
            id: Uuid::now_v7(),
            lead: i % sizes.attorneys,
            client: i % sizes.clients,
            paralegal: (i % 5 == 0).then_some(i % sizes.paralegals),
        })
        .collect();
    let year_ago = now - Duration::days(365);
    let mut case_rng = StdRng::seed_from_u64(seed ^ 1);
    phases.push(
        fill(state, "cases", sizes.cases, |r| {
            r.map(|i| {
                let c = &cases[i];
                let opened = year_ago + Duration::minutes(case_rng.random_range(0..525_600));
                let status = *STATUSES.choose(&mut case_rng).expect("non-empty");
                legal_case::ActiveModel::from(legal_case::Model {
                    id: c.id,
                    number: format_number(year, i as i32 + 1),
                    year,
                    seq: i as i32 + 1,
                    title: format!(
                        "{} v. {} — {}",
                        SURNAMES[c.client % SURNAMES.len()],
                        SURNAMES[(i / 3) % SURNAMES.len()],
                        words(&mut case_rng, 2)
                    ),
                    description: words(&mut case_rng, 12),
                    practice_area: Some((*AREAS.choose(&mut case_rng).expect("non-empty")).into()),
                    priority: (*PRIORITIES.choose(&mut case_rng).expect("non-empty")).into(),
                    status: status.into(),
                    phase: (*PHASES.choose(&mut case_rng).expect("non-empty")).into(),
                    opened_at: opened,
                    closed_at: (status == "closed").then_some(now),
                    statute_of_limitations: None,
                    created_by: attorney_ids[c.lead],
                    created_at: opened,
                    updated_at: opened,
                })
            })
            .collect()
        })
        .await?,
    );
    let sql = match state.db.backend() {
        DbBackend::Postgres => "INSERT INTO case_number_seq (year, last) VALUES ($1, $2)",
        _ => "INSERT INTO case_number_seq (year, last) VALUES (?, ?)",
    };
    state
        .db
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            state.db.backend(),
            sql,
            [year.into(), (sizes.cases as i32).into()],
        ))
        .await?;

    // Members: (case index, user, role) flattened.
    let mut memberships: Vec<(usize, Uuid, &'static str)> = Vec::with_capacity(sizes.cases * 3);
    for (i, c) in cases.iter().enumerate() {
        memberships.push((i, attorney_ids[c.lead], "lead_attorney"));
        memberships.push((i, client_ids[c.client], "client"));
        if let Some(p) = c.paralegal {
            memberships.push((i, paralegal_ids[p], "paralegal"));
        }
    }
    phases.push(
        fill(state, "members", memberships.len(), |r| {
            memberships[r]
                .iter()
                .map(|(i, uid, role)| {
                    member::ActiveModel::from(member::Model {
                        case_id: cases[*i].id,
                        user_id: *uid,
                        role: (*role).into(),
                        added_at: now,
                    })
                })
                .collect()
        })
        .await?,
    );
    drop(memberships);
    phases.push(
        fill(state, "timeline", sizes.cases, |r| {
            r.map(|i| {
                timeline::ActiveModel::from(timeline::Model {
                    id: Uuid::now_v7(),
                    case_id: cases[i].id,
                    kind: "created".into(),
                    from_value: None,
                    to_value: Some("open".into()),
                    note: None,
                    actor_id: Some(attorney_ids[cases[i].lead]),
                    at: now,
                    client_visible: true,
                })
            })
            .collect()
        })
        .await?,
    );
    phases.push(
        fill(state, "deadlines", sizes.cases, |r| {
            r.map(|i| {
                deadline::ActiveModel::from(deadline::Model {
                    id: Uuid::now_v7(),
                    case_id: cases[i].id,
                    title: format!("File {}", WORDS[i % WORDS.len()]),
                    due_on: today + Duration::days((i % 120) as i64 - 20),
                    kind: "filing".into(),
                    created_by: Some(attorney_ids[cases[i].lead]),
                    created_at: now,
                    completed_at: None,
                    completed_by: None,
                })
            })
            .collect()
        })
        .await?,
    );

    // Messages, each with a recipient row for every other member of its case.
    let mut msg_rng = StdRng::seed_from_u64(seed ^ 2);
    // Sent over the last year and inserted oldest first, as a live firm's are written: row
    // order (SQLite's rowids, PostgreSQL's heap) follows time, as it would there.
    let mut sent_at: Vec<_> = (0..sizes.messages)
        .map(|_| now - Duration::minutes(msg_rng.random_range(1..525_600)))
        .collect();
    sent_at.sort_unstable();
    let pb = bar("messages", sizes.messages);
    let mut start = 0;
    while start < sizes.messages {
        let end = (start + TXN_ROWS / 2).min(sizes.messages);
        let mut msgs = Vec::with_capacity(end - start);
        let mut rcpts = Vec::with_capacity((end - start) * 2);
        // (id, sender, recipients) for the full-text rows, written with them.
        let mut indexed = Vec::with_capacity(end - start);
        for i in start..end {
            let c = &cases[i % sizes.cases];
            let mut members = vec![
                (attorney_ids[c.lead], "lead_attorney"),
                (client_ids[c.client], "client"),
            ];
            if let Some(p) = c.paralegal {
                members.push((paralegal_ids[p], "paralegal"));
            }
            // Each round over the cases swaps who writes, so every case has messages both
            // ways (by `i % 2` alone, an even number of cases fixed the sender per case and
            // some attorneys never received anything).
            let (sender, role) = members[(i / sizes.cases) % 2];
            let id = Uuid::now_v7();
            let at = sent_at[i];
            let n = msg_rng.random_range(6..30);
            let body = words(&mut msg_rng, n);
            let to: Vec<Uuid> = members
                .iter()
                .map(|(u, _)| *u)
                .filter(|u| *u != sender)
                .collect();
            msgs.push(message::ActiveModel::from(message::Model {
                id,
                case_id: c.id,
                sender_id: sender,
                sender_role: role.into(),
                parent_id: None,
                body,
                created_at: at,
                sender_deleted_at: None,
            }));
            indexed.push((id, sender, to));
            for (uid, _) in members.iter().filter(|(u, _)| *u != sender) {
                rcpts.push(recipient::ActiveModel::from(recipient::Model {
                    message_id: id,
                    user_id: *uid,
                    case_id: c.id,
                    delivered_at: at,
                    read_at: (msg_rng.random_range(0..10) > 1).then_some(at),
                    deleted_at: None,
                    message_created_at: at,
                }));
            }
        }
        let txn = state.db.conn().begin().await?;
        insert_rows(&txn, msgs).await?;
        insert_rows(&txn, rcpts).await?;
        let entries: Vec<search_index::Entry> = indexed
            .iter()
            .map(|(id, sender, to)| search_index::Entry {
                id: *id,
                sender: *sender,
                recipients: to,
            })
            .collect();
        search_index::add(&txn, &entries).await?;
        txn.commit().await?;
        pb.set_position(end as u64);
        start = end;
    }
    phases.push(("messages", done(&pb)));

    // Documents: small text files, encrypted and stored like uploads.
    let mut doc_rng = StdRng::seed_from_u64(seed ^ 3);
    let pb = bar("documents", sizes.documents);
    let mut start = 0;
    while start < sizes.documents {
        let end = (start + 5_000).min(sizes.documents);
        let mut docs = Vec::with_capacity(end - start);
        let mut versions = Vec::with_capacity(end - start);
        let mut objects = Vec::with_capacity(end - start);
        for i in start..end {
            let c = &cases[i % sizes.cases];
            let (id, version_id) = (Uuid::now_v7(), Uuid::now_v7());
            let n = doc_rng.random_range(20..120);
            let text = format!("Memorandum {i}\n{}\n", words(&mut doc_rng, n));
            let plain = text.as_bytes();
            let key = DataKey::generate();
            let prefix = crate::crypto::random_bytes::<8>();
            let mut enc = Encryptor::new(ChunkCipher::new(&key, prefix));
            let mut sealed: Vec<u8> = enc
                .push(plain)
                .map_err(|_| anyhow::anyhow!("too many chunks"))?
                .concat();
            sealed.extend(enc.finish());
            let object_key = Storage::new_key();
            let sha256 = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(plain))
            };
            let uploader = if i % 4 == 0 {
                client_ids[c.client]
            } else {
                attorney_ids[c.lead]
            };
            let filename = format!("memo-{i}.txt");
            let at = now - Duration::minutes(doc_rng.random_range(1..525_600));
            docs.push(document::ActiveModel::from(document::Model {
                id,
                case_id: c.id,
                title: format!("Memo on {}", words(&mut doc_rng, 3)),
                filename: filename.clone(),
                content_type: "text/plain".into(),
                size: plain.len() as i64,
                sha256: sha256.clone(),
                version: 1,
                confidentiality: if i % 5 == 4 { "internal" } else { "shared" }.into(),
                uploaded_by: uploader,
                legal_hold: false,
                search_text: text.clone(),
                deleted_at: None,
                deleted_by: None,
                created_at: at,
                updated_at: at,
            }));
            versions.push(version::ActiveModel::from(version::Model {
                id: version_id,
                document_id: id,
                version: 1,
                object_key: object_key.clone(),
                filename,
                content_type: "text/plain".into(),
                size: plain.len() as i64,
                sha256,
                wrapped_key: key.wrap(&state.keys.master, &key_context(version_id)),
                nonce_prefix: prefix.to_vec(),
                uploaded_by: uploader,
                created_at: at,
            }));
            objects.push((object_key, sealed));
        }
        // Objects first: a row never points at bytes that are not there.
        futures::stream::iter(objects)
            .map(|(key, bytes)| async move {
                use object_store::ObjectStoreExt;
                state
                    .storage
                    .store()
                    .put(&Storage::path(&key), bytes.into())
                    .await
                    .map(|_| ())
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        let txn = state.db.conn().begin().await?;
        insert_rows(&txn, docs).await?;
        insert_rows(&txn, versions).await?;
        txn.commit().await?;
        pb.set_position(end as u64);
        start = end;
    }
    phases.push(("documents", done(&pb)));

    let mut time_rng = StdRng::seed_from_u64(seed ^ 4);
    phases.push(
        fill(state, "time", sizes.time_entries, |r| {
            r.map(|i| {
                let c = &cases[i % sizes.cases];
                let at = now - Duration::days(time_rng.random_range(0..365));
                time_entry::ActiveModel::from(time_entry::Model {
                    id: Uuid::now_v7(),
                    case_id: c.id,
                    timekeeper_id: attorney_ids[c.lead],
                    work_date: at.date_naive(),
                    minutes: 6 * time_rng.random_range(1..40),
                    rate_cents: 25_000 + 1_000 * (c.lead as i64 % 10),
                    description: words(&mut time_rng, 6),
                    task_code: None,
                    activity_code: None,
                    billable: i % 10 != 0,
                    invoice_id: None,
                    created_at: at,
                    updated_at: at,
                })
            })
            .collect()
        })
        .await?,
    );

    // The audit trail, through the chain's own append (hashes and head kept right).
    const ACTIONS: &[(&str, &str)] = &[
        ("case.view", "case"),
        ("message.send", "message"),
        ("document.download", "document"),
        ("case.status", "case"),
        ("time.create", "time_entry"),
        ("auth.login", "session"),
    ];
    let pb = bar("audit", sizes.audit);
    // The chain's secondary indexes are built once after the load instead of being updated
    // row by row (six B-trees per entry dominated the generator). Their definitions are read
    // from the catalogue, so they come back exactly as the migrations made them. The firm is
    // generated into an empty database, so no reader misses them meanwhile.
    let indexes = audit_indexes(state).await?;
    for (name, _) in &indexes {
        state
            .db
            .conn()
            .execute_unprepared(&format!("DROP INDEX {name}"))
            .await?;
    }
    let people: Vec<(Uuid, Uuid, Uuid)> = cases
        .iter()
        .map(|c| (c.id, client_ids[c.client], attorney_ids[c.lead]))
        .collect();
    let n_cases = sizes.cases;
    let tick = pb.clone();
    append_bulk(
        &state.db,
        sizes.audit,
        TXN_ROWS,
        move |i| {
            let (case_id, client, lead) = people[i % n_cases];
            let (action, resource) = ACTIONS[i % ACTIONS.len()];
            let actor = if i % 3 == 0 { client } else { lead };
            NewEntry {
                at: None,
                actor_id: Some(actor),
                action: action.into(),
                resource_type: resource.into(),
                resource_id: Some(case_id.to_string()),
                case_id: Some(case_id),
                outcome: Outcome::Success,
                ip: Some("127.0.0.1".into()),
                user_agent: Some("lawfirm-pro demo --scale".into()),
                details: serde_json::json!({"generated": true}),
            }
        },
        move |n| tick.inc(n as u64),
    )
    .await?;
    for (_, sql) in &indexes {
        state.db.conn().execute_unprepared(sql).await?;
    }
    phases.push(("audit", done(&pb)));

    // Fresh planner statistics for the tables just filled, as autovacuum would gather them
    // soon after a bulk load on PostgreSQL. SQLite is left as the application leaves it in
    // production (it never runs ANALYZE), so benchmarks see the plans real firms get.
    if state.db.backend() == DbBackend::Postgres {
        state.db.conn().execute_unprepared("ANALYZE").await?;
    }
    // SQLite's full-text indexes as the server's upkeep keeps them: one b-tree each.
    crate::db::fts::compact(&state.db).await?;

    Ok(Generated {
        password,
        admin: format!("admin@{DOMAIN}"),
        attorneys: (0..sizes.attorneys).map(attorney_email).collect(),
        paralegals: (0..sizes.paralegals).map(paralegal_email).collect(),
        clients: (0..sizes.clients).map(client_email).collect(),
        sizes,
        seconds: started.elapsed().as_secs_f64(),
        phases,
    })
}

/// `(name, CREATE INDEX …)` of `audit_log`'s secondary indexes (not the primary key).
async fn audit_indexes(state: &AppState) -> anyhow::Result<Vec<(String, String)>> {
    let backend = state.db.backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT indexname::text AS name, indexdef AS sql FROM pg_indexes
             WHERE tablename = 'audit_log' AND indexname LIKE 'ix\\_%' ORDER BY indexname"
        }
        _ => {
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'audit_log' AND sql IS NOT NULL ORDER BY name"
        }
    };
    let rows = state
        .db
        .conn()
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    let out: Vec<(String, String)> = rows
        .iter()
        .map(|r| Ok((r.try_get("", "name")?, r.try_get("", "sql")?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    anyhow::ensure!(
        !out.is_empty(),
        "audit_log has no secondary indexes to rebuild"
    );
    Ok(out)
}

/// The summary and logins, in a form `scripts/bench` reads (`key: value` lines).
pub fn print_logins(n: u32, g: &Generated) {
    let s = g.sizes;
    println!(
        "Scale {n} firm generated in {:.1} s: {} attorneys, {} paralegals, {} clients, {} cases, \
         {} messages, {} documents, {} time entries, {} audit entries.",
        g.seconds,
        s.attorneys,
        s.paralegals,
        s.clients,
        s.cases,
        s.messages,
        s.documents,
        s.time_entries,
        s.audit
    );
    let phases: Vec<String> = g
        .phases
        .iter()
        .map(|(l, s)| format!("{l} {s:.1} s"))
        .collect();
    println!("phases: {}", phases.join(", "));
    println!("password: {}", g.password);
    println!("admin: {}", g.admin);
    println!("attorney: {}", g.attorneys[0]);
    println!("paralegal: {}", g.paralegals[0]);
    println!("client: {}", g.clients[0]);
    println!(
        "Every login uses that password: attorney0..attorney{} , paralegal0..paralegal{}, \
         client0..client{} @{DOMAIN}.",
        s.attorneys - 1,
        s.paralegals - 1,
        s.clients - 1
    );
}
