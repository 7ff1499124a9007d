//! `lawfirm-pro demo`: a small, believable firm to click through, created through the same
//! services as real data (so it is audited and valid), with its logins printed once.

pub mod scale;

use chrono::{Duration, Utc};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::{
    AppState,
    auth::Principal,
    cases::{members, service as cases},
    crypto::random_token,
    error::Error,
    users::service::{NewUser, UserView, create_user},
};

pub struct DemoLogin {
    pub role: &'static str,
    pub email: &'static str,
    pub name: &'static str,
}

pub const PEOPLE: &[DemoLogin] = &[
    DemoLogin {
        role: "admin",
        email: "admin@demo.lawfirm.example",
        name: "Ada Admin",
    },
    DemoLogin {
        role: "attorney",
        email: "alice.attorney@demo.lawfirm.example",
        name: "Alice Barrister",
    },
    DemoLogin {
        role: "attorney",
        email: "ben.attorney@demo.lawfirm.example",
        name: "Ben Counsel",
    },
    DemoLogin {
        role: "paralegal",
        email: "pat.paralegal@demo.lawfirm.example",
        name: "Pat Paralegal",
    },
    DemoLogin {
        role: "client",
        email: "john.smith@demo.lawfirm.example",
        name: "John Smith",
    },
    DemoLogin {
        role: "client",
        email: "maria.garcia@demo.lawfirm.example",
        name: "María García",
    },
    DemoLogin {
        role: "client",
        email: "acme@demo.lawfirm.example",
        name: "Acme Widgets Ltd",
    },
];

/// Seed the demo firm; refuses when the database already has people in it.
pub async fn seed(state: &AppState) -> anyhow::Result<(String, Vec<UserView>)> {
    // Seven accounts (an admin among them) with one printed password do not belong in a firm
    // that is in use: only an empty database gets the demo.
    let users = crate::users::entity::user::Entity::find()
        .count(state.db.conn())
        .await?;
    if users > 0 {
        anyhow::bail!(
            "this database already has {users} users: the demo firm goes only into an empty one \
             (point LFP_DATA_DIR or DATABASE_URL at a new one)"
        );
    }
    let system = Principal::system();
    // One random password for every demo login: printed once, never a known default.
    let password = format!("demo-{}", &random_token()[..16]);
    let mut people = Vec::new();
    for p in PEOPLE {
        let u = create_user(
            state,
            &system,
            NewUser {
                email: p.email.into(),
                name: p.name.into(),
                role: p.role.into(),
                password: Some(password.clone()),
                phone: None,
                timezone: Some("America/New_York".into()),
            },
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => anyhow::anyhow!("the demo firm already exists in this database"),
            other => anyhow::anyhow!("creating {}: {other}", p.email),
        })?;
        people.push(u);
    }
    let as_user = |u: &UserView| Principal {
        user_id: u.id,
        role: u.role,
        session_id: None,
        meta: Default::default(),
    };
    let (alice, ben, pat) = (as_user(&people[1]), as_user(&people[2]), &people[3]);
    let (john, maria, acme) = (&people[4], &people[5], &people[6]);
    let today = Utc::now().date_naive();
    let err = |e: Error| anyhow::anyhow!("seeding cases: {e}");

    let smith = cases::create_case(
        state,
        &alice,
        cases::NewCase {
            title: "Smith v. Northwind Logistics".into(),
            description: Some("Wrongful termination and unpaid overtime claim.".into()),
            practice_area: Some("employment".into()),
            client_ids: vec![john.id],
            staff_ids: vec![pat.id],
            priority: Some("high".into()),
            statute_of_limitations: Some(today + Duration::days(200)),
            parties: Vec::new(),
            reviewed_conflicts: None,
        },
    )
    .await
    .map_err(err)?;
    cases::change_status(
        state,
        &alice,
        smith.id,
        cases::StatusChange {
            phase: Some("discovery".into()),
            note: Some("Initial disclosures served.".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(err)?;
    members::add_deadline(
        state,
        &alice,
        smith.id,
        members::NewDeadline {
            title: "Deposition of HR director".into(),
            due_on: today + Duration::days(12),
            kind: "hearing".into(),
        },
    )
    .await
    .map_err(err)?;
    members::add_party(
        state,
        &alice,
        smith.id,
        members::NewParty {
            name: "Northwind Logistics Inc.".into(),
            kind: "opposing_party".into(),
        },
    )
    .await
    .map_err(err)?;

    let garcia = cases::create_case(
        state,
        &ben,
        cases::NewCase {
            title: "Estate of Ramón García".into(),
            description: Some("Probate administration and will contest.".into()),
            practice_area: Some("probate".into()),
            client_ids: vec![maria.id],
            staff_ids: vec![],
            priority: None,
            statute_of_limitations: None,
            parties: Vec::new(),
            reviewed_conflicts: None,
        },
    )
    .await
    .map_err(err)?;
    members::add_deadline(
        state,
        &ben,
        garcia.id,
        members::NewDeadline {
            title: "File inventory with the court".into(),
            due_on: today + Duration::days(25),
            kind: "filing".into(),
        },
    )
    .await
    .map_err(err)?;

    let acme_case = cases::create_case(
        state,
        &alice,
        cases::NewCase {
            title: "Acme Widgets — supplier contract dispute".into(),
            description: Some("Breach of a five-year supply agreement.".into()),
            practice_area: Some("commercial".into()),
            client_ids: vec![acme.id],
            staff_ids: vec![ben.user_id],
            priority: Some("normal".into()),
            statute_of_limitations: None,
            parties: Vec::new(),
            reviewed_conflicts: None,
        },
    )
    .await
    .map_err(err)?;
    cases::change_status(
        state,
        &alice,
        acme_case.id,
        cases::StatusChange {
            status: Some("closed".into()),
            note: Some("Settled.".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(err)?;
    Ok((password, people))
}
