//! The authorisation matrix: every endpoint of the OpenAPI document × every kind of caller,
//! checked against one declared policy table. An endpoint without a policy entry fails the
//! test, so nothing new ships without someone deciding who may call it.
//!
//! "Allowed" means the request got past authorisation: not 401, 403 or 404 (bodies are empty
//! or minimal, so an allowed call may well answer 422). "Denied" means exactly the status the
//! contract asks for: 401 without a token, 403 for a role that may never act, 404 for a thing
//! the caller cannot see. Outsiders must get their 404 before any validation of the body, or a
//! 422 would reveal that the thing exists.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Login, TestApp, spawn_app};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    AttorneyOn,
    AttorneyOff,
    ParalegalOn,
    ParalegalOff,
    ClientOn,
    ClientOther,
    Anon,
}

const CALLERS: [Who; 8] = [
    // Outsiders first: allowed callers may change the resource (e.g. delete it).
    Who::Anon,
    Who::ClientOther,
    Who::AttorneyOff,
    Who::ParalegalOff,
    Who::ClientOn,
    Who::ParalegalOn,
    Who::AttorneyOn,
    Who::Admin,
];

/// Who may call an endpoint. Case-scoped policies act on case X, where `AttorneyOn` leads,
/// `ParalegalOn` and `ClientOn` are members; `*Off` and `ClientOther` are on case Y only.
#[derive(Clone, Copy, Debug)]
enum Policy {
    /// No token needed (sign-in and the like); only "never 5xx" is checked here — their own
    /// tests cover them.
    Public,
    /// Any signed-in user, about their own things.
    Authenticated,
    Admin,
    /// Admin and attorneys (e.g. opening a case); paralegals and clients 403.
    AdminOrAttorney,
    /// Any staff role; clients 403.
    Staff,
    /// Members of the case and admins; outsiders 404.
    CaseMember,
    /// Staff members of the case and admins; the case's client 403; outsiders 404.
    CaseStaff,
    /// Attorneys of the case and admins; the case's paralegal and client 403; outsiders 404.
    CaseAttorney,
    /// Covered by a dedicated test named in the table (e.g. the WebSocket upgrade).
    Special(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Status(u16),
    Unchecked,
}

fn expect(policy: Policy, who: Who) -> Expect {
    use Expect::*;
    use Who::*;
    if who == Anon {
        return match policy {
            Policy::Public | Policy::Special(_) => Unchecked,
            _ => Status(401),
        };
    }
    let staff = !matches!(who, ClientOn | ClientOther);
    match policy {
        Policy::Public | Policy::Special(_) => Unchecked,
        Policy::Authenticated => Allowed,
        Policy::Admin => {
            if who == Admin {
                Allowed
            } else {
                Status(403)
            }
        }
        Policy::AdminOrAttorney => match who {
            Admin | AttorneyOn | AttorneyOff => Allowed,
            _ => Status(403),
        },
        Policy::Staff => {
            if staff {
                Allowed
            } else {
                Status(403)
            }
        }
        Policy::CaseMember => match who {
            Admin | AttorneyOn | ParalegalOn | ClientOn => Allowed,
            _ => Status(404),
        },
        Policy::CaseStaff => match who {
            Admin | AttorneyOn | ParalegalOn => Allowed,
            ClientOn => Status(403),
            _ => Status(404),
        },
        Policy::CaseAttorney => match who {
            Admin | AttorneyOn => Allowed,
            ParalegalOn | ClientOn => Status(403),
            _ => Status(404),
        },
    }
}

/// The policy table: one row per `METHOD /path` of the OpenAPI document.
const POLICY: &[(&str, &str, Policy)] = &[
    ("GET", "/api/v1/audit", Policy::AdminOrAttorney),
    ("GET", "/api/v1/audit/verify", Policy::Admin),
    ("POST", "/api/v1/auth/accept-invitation", Policy::Public),
    ("POST", "/api/v1/auth/login", Policy::Public),
    ("POST", "/api/v1/auth/logout", Policy::Authenticated),
    ("POST", "/api/v1/auth/refresh", Policy::Public),
    ("POST", "/api/v1/auth/register", Policy::Public),
    ("GET", "/api/v1/cases", Policy::Authenticated),
    ("POST", "/api/v1/cases", Policy::AdminOrAttorney),
    ("GET", "/api/v1/cases/{id}", Policy::CaseMember),
    ("PATCH", "/api/v1/cases/{id}", Policy::CaseStaff),
    ("GET", "/api/v1/cases/{id}/deadlines", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/deadlines", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/members", Policy::CaseAttorney),
    (
        "DELETE",
        "/api/v1/cases/{id}/members/{user_id}",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/cases/{id}/parties", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/parties", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/status", Policy::CaseStaff),
    ("GET", "/api/v1/cases/{id}/timeline", Policy::CaseMember),
    ("POST", "/api/v1/cases/{id}/timeline", Policy::CaseStaff),
    ("POST", "/api/v1/conflict-checks", Policy::Staff),
    ("GET", "/api/v1/dashboard", Policy::Authenticated),
    ("POST", "/api/v1/invitations", Policy::AdminOrAttorney),
    ("GET", "/api/v1/me", Policy::Authenticated),
    ("PATCH", "/api/v1/me", Policy::Authenticated),
    ("GET", "/api/v1/me/activity", Policy::Authenticated),
    ("POST", "/api/v1/me/password", Policy::Authenticated),
    ("GET", "/api/v1/me/sessions", Policy::Authenticated),
    (
        "DELETE",
        "/api/v1/me/sessions/{id}",
        Policy::Special("auth::sessions_can_be_listed_and_revoked (own sessions only)"),
    ),
    ("POST", "/api/v1/me/totp/disable", Policy::Authenticated),
    ("POST", "/api/v1/me/totp/enable", Policy::Authenticated),
    ("POST", "/api/v1/me/totp/setup", Policy::Authenticated),
    ("GET", "/api/v1/stats/cases", Policy::Staff),
    ("GET", "/api/v1/users", Policy::Staff),
    ("POST", "/api/v1/users", Policy::Admin),
    (
        "GET",
        "/api/v1/users/{id}",
        Policy::Special("users:: (self, staff who share a case, admin)"),
    ),
    ("PATCH", "/api/v1/users/{id}", Policy::Admin),
    (
        "GET",
        "/api/v1/ws",
        Policy::Special("live:: (ticket or cookie; events filtered per user)"),
    ),
    ("POST", "/api/v1/ws-ticket", Policy::Authenticated),
];

struct World {
    app: TestApp,
    admin: Login,
    attorney_on: Login,
    attorney_off: Login,
    paralegal_on: Login,
    paralegal_off: Login,
    client_on: Login,
    client_other: Login,
    case_x: String,
}

impl World {
    async fn new() -> Self {
        let app = spawn_app().await;
        let (
            admin,
            attorney_on,
            attorney_off,
            paralegal_on,
            paralegal_off,
            client_on,
            client_other,
        ) = (
            app.user("admin").await,
            app.user("attorney").await,
            app.user("attorney").await,
            app.user("paralegal").await,
            app.user("paralegal").await,
            app.user("client").await,
            app.user("client").await,
        );
        let mut ids = Vec::new();
        for (lead, staff, client) in [
            (&attorney_on, &paralegal_on, &client_on),
            (&attorney_off, &paralegal_off, &client_other),
        ] {
            let body =
                json!({"title": "Matter", "client_ids": [client.id], "staff_ids": [staff.id]});
            let r = app.post("/api/v1/cases", Some(&lead.access), body).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let v: Value = r.json().await.unwrap();
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        Self {
            app,
            admin,
            attorney_on,
            attorney_off,
            paralegal_on,
            paralegal_off,
            client_on,
            client_other,
            case_x: ids.remove(0),
        }
    }

    fn login(&self, who: Who) -> Option<&Login> {
        Some(match who {
            Who::Admin => &self.admin,
            Who::AttorneyOn => &self.attorney_on,
            Who::AttorneyOff => &self.attorney_off,
            Who::ParalegalOn => &self.paralegal_on,
            Who::ParalegalOff => &self.paralegal_off,
            Who::ClientOn => &self.client_on,
            Who::ClientOther => &self.client_other,
            Who::Anon => return None,
        })
    }

    /// A concrete request for a template: the path with real ids and a valid body, so that
    /// an allowed caller passes validation too and only authorisation decides. Destructive
    /// endpoints get a fresh target per call so every allowed caller has something to act on.
    async fn resolve(&self, method: &str, template: &str) -> (String, Option<Value>) {
        let case = &self.case_x;
        let fresh_email = || format!("new-{}@example.com", Uuid::new_v4().simple());
        let mut path = template
            .replace("/cases/{id}", &format!("/cases/{case}"))
            .replace("/users/{id}", &format!("/users/{}", self.client_on.id));
        if method == "DELETE" && path.contains("/members/{user_id}") {
            let extra = self.new_member().await;
            path = path.replace("{user_id}", &extra.to_string());
        }
        let body = match (method, template) {
            ("GET" | "DELETE", _) => None,
            ("POST", "/api/v1/cases") => {
                Some(json!({"title": "T", "client_ids": [self.client_on.id]}))
            }
            ("PATCH", "/api/v1/cases/{id}") => Some(json!({"title": "Matter"})),
            ("POST", "/api/v1/cases/{id}/deadlines") => {
                Some(json!({"title": "File", "due_on": "2027-01-15", "kind": "filing"}))
            }
            ("POST", "/api/v1/cases/{id}/members") => {
                let (user, _) = self.app.create_user("paralegal").await;
                Some(json!({"user_id": user, "role": "paralegal"}))
            }
            ("POST", "/api/v1/cases/{id}/parties") => {
                Some(json!({"name": "Opposing Co", "kind": "opposing_party"}))
            }
            ("POST", "/api/v1/cases/{id}/status") => Some(json!({"phase": "investigation"})),
            ("POST", "/api/v1/cases/{id}/timeline") => Some(json!({"kind": "note", "note": "n"})),
            ("POST", "/api/v1/conflict-checks") => Some(json!({"names": ["Smith"]})),
            ("POST", "/api/v1/invitations") => {
                Some(json!({"email": fresh_email(), "role": "client"}))
            }
            ("PATCH", "/api/v1/me") => Some(json!({"phone": "+1 555 0100"})),
            ("POST", "/api/v1/users") => Some(json!({
                "email": fresh_email(), "name": "New Person", "role": "client",
                "password": crate::helpers::PASSWORD,
            })),
            ("PATCH", "/api/v1/users/{id}") => Some(json!({"status": "active"})),
            _ => Some(json!({})),
        };
        let path = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{user_id}", &Uuid::new_v4().to_string());
        (path, body)
    }

    /// A new paralegal on case X, added by its lead.
    async fn new_member(&self) -> Uuid {
        let (user, _) = self.app.create_user("paralegal").await;
        let r = self
            .app
            .post(
                &format!("/api/v1/cases/{}/members", self.case_x),
                Some(&self.attorney_on.access),
                json!({"user_id": user, "role": "paralegal"}),
            )
            .await;
        assert!(r.status().is_success(), "add member: {}", r.status());
        user
    }
}

async fn operations(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn every_endpoint_answers_every_caller_as_the_policy_table_says() {
    let world = World::new().await;
    let ops = operations(&world.app).await;

    let declared: BTreeSet<(String, String)> = POLICY
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = ops.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "endpoints without a policy entry (add them to POLICY in tests/api/authz.rs): {missing:?}"
    );
    let stale: Vec<_> = declared.difference(&ops).collect();
    assert!(
        stale.is_empty(),
        "policy entries for endpoints that no longer exist: {stale:?}"
    );

    let mut failures = Vec::new();
    for (method, template, policy) in POLICY {
        if let Policy::Special(test) = policy {
            eprintln!("{method} {template}: checked by {test}");
            continue;
        }
        for who in CALLERS {
            let want = expect(*policy, who);
            if want == Expect::Unchecked && !matches!(policy, Policy::Public) {
                continue;
            }
            let (path, body) = world.resolve(method, template).await;
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            // A fresh session per call: logout, password change and the like end sessions.
            let token = match world.login(who) {
                Some(l) => Some(world.app.login_as(&l.email).await.access),
                None => None,
            };
            let r = world
                .app
                .request(m, &path, token.as_deref(), body.clone())
                .await;
            let got = r.status().as_u16();
            let ok = match want {
                _ if got >= 500 => false,
                Expect::Allowed => ![401, 403, 404].contains(&got),
                Expect::Status(s) => got == s,
                Expect::Unchecked => true,
            };
            if !ok {
                failures.push(format!(
                    "{method} {template} as {who:?}: got {got}, want {want:?}"
                ));
            }
            // A denied caller with a malformed body must not get further either: a 4xx
            // (validation may answer first, it reveals nothing about the resource), never 2xx
            // or 5xx.
            if matches!(want, Expect::Status(_)) && body.is_some() {
                let token = match world.login(who) {
                    Some(l) => Some(world.app.login_as(&l.email).await.access),
                    None => None,
                };
                let m = Method::from_bytes(method.as_bytes()).unwrap();
                let got = world
                    .app
                    .request(
                        m,
                        &path,
                        token.as_deref(),
                        Some(json!({"unexpected": [1, {}]})),
                    )
                    .await
                    .status()
                    .as_u16();
                if !(400..500).contains(&got) {
                    failures.push(format!(
                        "{method} {template} as {who:?} with a malformed body: got {got}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Object-property rules: fields a caller may not set are refused or ignored, never applied.
#[tokio::test]
async fn clients_cannot_mass_assign_privileged_fields() {
    let world = World::new().await;
    let app = &world.app;
    let client = &world.client_on;

    // Their own profile: role, status, email and TOTP flags are not theirs to set.
    let r = app
        .patch(
            "/api/v1/me",
            Some(&client.access),
            json!({"name": "Still A Client", "role": "admin", "status": "active",
                   "email": "boss@example.com", "totp_enabled": true}),
        )
        .await;
    assert!(
        r.status() == StatusCode::OK || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        r.status()
    );
    let me: Value = app
        .get("/api/v1/me", Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "client", "{me}");
    assert_eq!(me["email"], client.email.as_str(), "{me}");
    assert_eq!(me["totp_enabled"], false, "{me}");

    // Another user's role or status: admin only.
    let r = app
        .patch(
            &format!("/api/v1/users/{}", client.id),
            Some(&client.access),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The case: status and phase belong to staff; members are managed by its attorneys.
    let case = &world.case_x;
    for (path, body) in [
        (
            format!("/api/v1/cases/{case}"),
            json!({"title": "Mine now"}),
        ),
        (
            format!("/api/v1/cases/{case}/status"),
            json!({"status": "closed"}),
        ),
        (
            format!("/api/v1/cases/{case}/members"),
            json!({"user_id": world.client_other.id, "role": "lead_attorney"}),
        ),
    ] {
        let m = if path.ends_with(case.as_str()) {
            Method::PATCH
        } else {
            Method::POST
        };
        let r = app
            .request(m, &path, Some(&client.access), Some(body))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let c: Value = app
        .get(&format!("/api/v1/cases/{case}"), Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["status"], "open");
    assert_eq!(c["title"], "Matter");
    assert!(
        !c["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == world.client_other.id.to_string()),
        "{c}"
    );

    // Opening a case is not a client's: 403, whatever the body claims.
    let r = app
        .post(
            "/api/v1/cases",
            Some(&client.access),
            json!({"title": "Own", "client_ids": [client.id], "staff_ids": []}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
