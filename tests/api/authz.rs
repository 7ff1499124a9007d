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
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration as CDuration, Utc};
use reqwest::{Method, StatusCode, multipart};
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
    /// A time entry recorded by attorney_on (case X's lead): its timekeeper, the case's lead
    /// and admins; the case's paralegal and client 403; outsiders 404.
    TimeEntryEditors,
    /// Attorneys of the case and admins; the case's paralegal and client 403; outsiders 404
    /// (also for invoices: a paralegal off the case cannot see it, so 404 before the role's 403).
    CaseAttorney,
    /// Members of the case who write messages in it; an admin not on the case sees it but may
    /// not write there (403, messages contract; documents let admins upload); outsiders 404.
    CaseParticipant,
    /// The sender and the recipients of the message (attorney_on → paralegal_on, client_on);
    /// anyone else, admins included, 404 (admins see no messages of cases they are not on).
    MessageParticipants,
    /// Who may see the appointment: its attorney, its client (and creator), admins; anyone
    /// else 404.
    AppointmentParticipants,
    /// Staff participants (confirm, complete): attorney and admin; its client 403 (clients may
    /// never confirm/complete); anyone else 404.
    AppointmentStaff,
    /// The attorney themself and admins (availability, busy blocks): other staff 403;
    /// clients 404 (busy blocks are no client's business; they cannot see them at all).
    AttorneySelf,
    /// Free slots of attorney_on: any staff; a client only of attorneys on their cases
    /// (client_on), another client 404.
    AttorneySlots,
    /// A sent invoice of case X: staff of the case and admins, its client; outsiders 404.
    InvoiceViewers,
    /// Payments on a sent invoice: staff of the case and admins; its client 403; outsiders 404.
    InvoiceStaff,
    /// Checkout: only the invoice's client; staff of the case 403; outsiders 404.
    InvoiceClient,
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
        Policy::TimeEntryEditors => match who {
            Admin | AttorneyOn => Allowed,
            ParalegalOn | ClientOn => Status(403),
            _ => Status(404),
        },
        Policy::CaseAttorney => match who {
            Admin | AttorneyOn => Allowed,
            ParalegalOn | ClientOn => Status(403),
            _ => Status(404),
        },
        Policy::CaseParticipant => match who {
            AttorneyOn | ParalegalOn | ClientOn => Allowed,
            Admin => Status(403),
            _ => Status(404),
        },
        Policy::MessageParticipants => match who {
            AttorneyOn | ParalegalOn | ClientOn => Allowed,
            _ => Status(404),
        },
        Policy::AppointmentParticipants => match who {
            Admin | AttorneyOn | ClientOn => Allowed,
            _ => Status(404),
        },
        Policy::AppointmentStaff => match who {
            Admin | AttorneyOn => Allowed,
            ClientOn => Status(403),
            _ => Status(404),
        },
        Policy::AttorneySelf => match who {
            Admin | AttorneyOn => Allowed,
            AttorneyOff | ParalegalOn | ParalegalOff => Status(403),
            _ => Status(404),
        },
        Policy::AttorneySlots => match who {
            ClientOther => Status(404),
            _ => Allowed,
        },
        Policy::InvoiceViewers => match who {
            Admin | AttorneyOn | ParalegalOn | ClientOn => Allowed,
            _ => Status(404),
        },
        Policy::InvoiceStaff => match who {
            Admin | AttorneyOn | ParalegalOn => Allowed,
            ClientOn => Status(403),
            _ => Status(404),
        },
        Policy::InvoiceClient => match who {
            ClientOn => Allowed,
            Admin | AttorneyOn | ParalegalOn => Status(403),
            _ => Status(404),
        },
    }
}

/// The policy table: one row per `METHOD /path` of the OpenAPI document.
const POLICY: &[(&str, &str, Policy)] = &[
    ("GET", "/api/v1/audit", Policy::AdminOrAttorney),
    ("GET", "/api/v1/audit/verify", Policy::Admin),
    ("POST", "/api/v1/auth/accept-invitation", Policy::Public),
    ("POST", "/api/v1/auth/password-reset", Policy::Public),
    (
        "POST",
        "/api/v1/auth/password-reset/confirm",
        Policy::Public,
    ),
    ("POST", "/api/v1/auth/login", Policy::Public),
    ("POST", "/api/v1/auth/logout", Policy::Authenticated),
    ("POST", "/api/v1/auth/refresh", Policy::Public),
    ("POST", "/api/v1/auth/register", Policy::Public),
    ("GET", "/api/v1/openapi.json", Policy::Public),
    ("GET", "/api/v1/cases", Policy::Authenticated),
    ("POST", "/api/v1/cases", Policy::AdminOrAttorney),
    ("GET", "/api/v1/cases/{id}", Policy::CaseMember),
    ("PATCH", "/api/v1/cases/{id}", Policy::CaseStaff),
    ("GET", "/api/v1/cases/{id}/deadlines", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/deadlines", Policy::CaseStaff),
    (
        "PATCH",
        "/api/v1/cases/{id}/deadlines/{deadline_id}",
        Policy::CaseStaff,
    ),
    ("POST", "/api/v1/cases/{id}/members", Policy::CaseAttorney),
    (
        "DELETE",
        "/api/v1/cases/{id}/members/{user_id}",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/cases/{id}/parties", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/parties", Policy::CaseStaff),
    (
        "DELETE",
        "/api/v1/cases/{id}/parties/{party_id}",
        Policy::CaseStaff,
    ),
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
    ("GET", "/api/v1/deadlines", Policy::Staff),
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
    ("GET", "/api/v1/admin/mail", Policy::Admin),
    ("GET", "/api/v1/appointments", Policy::Authenticated),
    ("POST", "/api/v1/appointments", Policy::AttorneySlots),
    (
        "GET",
        "/api/v1/appointments/{id}",
        Policy::AppointmentParticipants,
    ),
    (
        "PATCH",
        "/api/v1/appointments/{id}",
        Policy::AppointmentParticipants,
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/cancel",
        Policy::AppointmentParticipants,
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/complete",
        Policy::AppointmentStaff,
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/confirm",
        Policy::AppointmentStaff,
    ),
    (
        "GET",
        "/api/v1/appointments/{id}/ics",
        Policy::AppointmentParticipants,
    ),
    ("GET", "/api/v1/billing/summary", Policy::Authenticated),
    ("POST", "/api/v1/calendar/feed-token", Policy::Authenticated),
    ("GET", "/api/v1/cases/{id}/documents", Policy::CaseMember),
    ("POST", "/api/v1/cases/{id}/documents", Policy::CaseMember),
    ("GET", "/api/v1/cases/{id}/expenses", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/expenses", Policy::CaseStaff),
    (
        "POST",
        "/api/v1/cases/{id}/legal-hold",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/cases/{id}/messages", Policy::CaseMember),
    (
        "POST",
        "/api/v1/cases/{id}/messages",
        Policy::CaseParticipant,
    ),
    (
        "PUT",
        "/api/v1/cases/{id}/rates/{user_id}",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/cases/{id}/time-entries", Policy::CaseStaff),
    ("POST", "/api/v1/cases/{id}/time-entries", Policy::CaseStaff),
    ("GET", "/api/v1/documents/search", Policy::Authenticated),
    ("GET", "/api/v1/documents/stats", Policy::Authenticated),
    ("GET", "/api/v1/documents/{id}", Policy::CaseMember),
    ("PATCH", "/api/v1/documents/{id}", Policy::CaseStaff),
    ("DELETE", "/api/v1/documents/{id}", Policy::CaseStaff),
    ("GET", "/api/v1/documents/{id}/content", Policy::CaseMember),
    (
        "POST",
        "/api/v1/documents/{id}/legal-hold",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/documents/{id}/versions", Policy::CaseMember),
    (
        "POST",
        "/api/v1/documents/{id}/versions",
        Policy::CaseMember,
    ),
    ("DELETE", "/api/v1/expenses/{id}", Policy::CaseStaff),
    ("GET", "/api/v1/invoices", Policy::Authenticated),
    ("POST", "/api/v1/invoices", Policy::CaseAttorney),
    ("GET", "/api/v1/invoices/{id}", Policy::InvoiceViewers),
    (
        "POST",
        "/api/v1/invoices/{id}/checkout",
        Policy::InvoiceClient,
    ),
    ("GET", "/api/v1/invoices/{id}/ledes", Policy::InvoiceViewers),
    (
        "GET",
        "/api/v1/invoices/{id}/ledes/validate",
        Policy::InvoiceViewers,
    ),
    (
        "POST",
        "/api/v1/invoices/{id}/payments",
        Policy::InvoiceStaff,
    ),
    ("GET", "/api/v1/invoices/{id}/pdf", Policy::InvoiceViewers),
    ("POST", "/api/v1/invoices/{id}/send", Policy::CaseAttorney),
    ("POST", "/api/v1/invoices/{id}/void", Policy::CaseAttorney),
    (
        "POST",
        "/api/v1/invoices/{id}/adjustments",
        Policy::CaseAttorney,
    ),
    (
        "DELETE",
        "/api/v1/invoices/{id}/adjustments/{adjustment_id}",
        Policy::CaseAttorney,
    ),
    ("GET", "/api/v1/messages", Policy::Authenticated),
    (
        "POST",
        "/api/v1/messages/bulk-delete",
        Policy::MessageParticipants,
    ),
    ("POST", "/api/v1/messages/read", Policy::MessageParticipants),
    ("GET", "/api/v1/messages/stats", Policy::Authenticated),
    (
        "GET",
        "/api/v1/messages/unread-count",
        Policy::Authenticated,
    ),
    ("GET", "/api/v1/messages/{id}", Policy::MessageParticipants),
    (
        "DELETE",
        "/api/v1/messages/{id}",
        Policy::MessageParticipants,
    ),
    (
        "POST",
        "/api/v1/messages/{id}/read",
        Policy::MessageParticipants,
    ),
    (
        "PATCH",
        "/api/v1/time-entries/{id}",
        Policy::TimeEntryEditors,
    ),
    (
        "DELETE",
        "/api/v1/time-entries/{id}",
        Policy::TimeEntryEditors,
    ),
    ("GET", "/api/v1/trust/ledger", Policy::InvoiceViewers),
    ("POST", "/api/v1/trust/deposits", Policy::InvoiceStaff),
    ("POST", "/api/v1/trust/transfers", Policy::InvoiceStaff),
    ("POST", "/api/v1/trust/refunds", Policy::CaseAttorney),
    ("GET", "/api/v1/trust/reconciliations", Policy::Admin),
    ("POST", "/api/v1/trust/reconciliations", Policy::Admin),
    (
        "GET",
        "/api/v1/users/{id}/availability",
        Policy::AttorneySelf,
    ),
    (
        "PUT",
        "/api/v1/users/{id}/availability",
        Policy::AttorneySelf,
    ),
    ("GET", "/api/v1/users/{id}/busy", Policy::AttorneySelf),
    ("POST", "/api/v1/users/{id}/busy", Policy::AttorneySelf),
    (
        "DELETE",
        "/api/v1/users/{id}/busy/{busy_id}",
        Policy::AttorneySelf,
    ),
    ("PUT", "/api/v1/users/{id}/rate", Policy::Admin),
    ("GET", "/api/v1/users/{id}/slots", Policy::AttorneySlots),
    ("POST", "/api/v1/webhooks/payments", Policy::Public),
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
    /// Fixtures on case X, one of each kind.
    message: String,
    document: String,
    appointment: String,
    invoice: String,
    /// Hands out distinct future times for fresh appointments and busy blocks.
    slot: AtomicI64,
}

/// A request body: JSON, or a multipart upload of a small PDF.
#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Pdf,
}

fn pdf_form() -> multipart::Form {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..64u8).map(|i| i.wrapping_mul(7)));
    multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes)
            .file_name("x.pdf")
            .mime_str("application/pdf")
            .unwrap(),
    )
}

/// A future time on the 5-minute grid, `days` ahead at `hh:00` UTC.
fn future(days: i64, hh: u32) -> DateTime<Utc> {
    (Utc::now() + CDuration::days(days))
        .date_naive()
        .and_hms_opt(hh, 0, 0)
        .unwrap()
        .and_utc()
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
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
        let mut w = Self {
            app,
            admin,
            attorney_on,
            attorney_off,
            paralegal_on,
            paralegal_off,
            client_on,
            client_other,
            case_x: ids.remove(0),
            message: String::new(),
            document: String::new(),
            appointment: String::new(),
            invoice: String::new(),
            slot: AtomicI64::new(0),
        };
        w.message = w.new_message().await;
        w.document = w.new_document().await;
        w.appointment = w.new_appointment().await;
        w.invoice = w.new_invoice(true).await;
        w.new_expense().await;
        let case = w.case_x.clone();
        let client = w.client_on.id;
        w.ok(
            Method::POST,
            "/api/v1/trust/deposits",
            json!({"client_id": client, "case_id": case, "amount_cents": 100_000}),
        )
        .await;
        w
    }

    /// A call as attorney_on (the lead of case X) that must succeed.
    async fn ok(&self, m: Method, path: &str, body: Value) -> Value {
        let r = self
            .app
            .request(m, path, Some(&self.attorney_on.access), Some(body))
            .await;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn new_message(&self) -> String {
        let path = format!("/api/v1/cases/{}/messages", self.case_x);
        id_of(&self.ok(Method::POST, &path, json!({"body": "Hello"})).await)
    }

    async fn new_document(&self) -> String {
        let r = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/cases/{}/documents", self.case_x)),
            )
            .bearer_auth(&self.attorney_on.access)
            .multipart(pdf_form())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        id_of(&r.json().await.unwrap())
    }

    /// Distinct one-hour times, 10+ days ahead, so fixtures never overlap.
    fn next_slot(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let n = self.slot.fetch_add(1, Ordering::SeqCst);
        let start = future(10 + n / 10, 8 + (n % 10) as u32);
        (start, start + CDuration::hours(1))
    }

    async fn new_appointment(&self) -> String {
        let (s, e) = self.next_slot();
        let body = json!({"attorney_id": self.attorney_on.id, "client_id": self.client_on.id,
            "case_id": self.case_x, "starts_at": s, "ends_at": e, "title": "Meeting"});
        id_of(&self.ok(Method::POST, "/api/v1/appointments", body).await)
    }

    async fn new_busy(&self) -> String {
        let (s, e) = self.next_slot();
        let path = format!("/api/v1/users/{}/busy", self.attorney_on.id);
        let body = json!({"starts_at": s, "ends_at": e, "reason": "court"});
        id_of(&self.ok(Method::POST, &path, body).await)
    }

    async fn new_party(&self) -> String {
        let path = format!("/api/v1/cases/{}/parties", self.case_x);
        let body = json!({"name": "Mistaken Party", "kind": "witness"});
        id_of(&self.ok(Method::POST, &path, body).await)
    }

    async fn new_deadline(&self) -> String {
        let path = format!("/api/v1/cases/{}/deadlines", self.case_x);
        let body = json!({"title": "File", "due_on": "2027-01-15", "kind": "filing"});
        id_of(&self.ok(Method::POST, &path, body).await)
    }

    async fn new_time_entry(&self) -> String {
        let path = format!("/api/v1/cases/{}/time-entries", self.case_x);
        let body = json!({"work_date": Utc::now().date_naive(), "minutes": 6,
            "rate_cents": 10_000, "description": "Work", "task_code": "L110", "activity_code": "A106"});
        id_of(&self.ok(Method::POST, &path, body).await)
    }

    async fn new_expense(&self) -> String {
        let path = format!("/api/v1/cases/{}/expenses", self.case_x);
        let body = json!({"incurred_on": Utc::now().date_naive(), "amount_cents": 100,
            "description": "Copies", "expense_code": "E101"});
        id_of(&self.ok(Method::POST, &path, body).await)
    }

    /// A new invoice on case X over a new time entry, sent when `send` (so its client sees it).
    async fn new_invoice(&self, send: bool) -> String {
        self.new_time_entry().await;
        let id = id_of(
            &self
                .ok(
                    Method::POST,
                    "/api/v1/invoices",
                    json!({"case_id": self.case_x}),
                )
                .await,
        );
        if send {
            self.ok(
                Method::POST,
                &format!("/api/v1/invoices/{id}/send"),
                json!({}),
            )
            .await;
        }
        id
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
    async fn resolve(&self, method: &str, template: &str) -> (String, Option<Body>) {
        let case = &self.case_x;
        let attorney = self.attorney_on.id;
        let fresh_email = || format!("new-{}@example.com", Uuid::new_v4().simple());
        let destructive = method == "DELETE"
            || template.ends_with("/cancel")
            || template.ends_with("/void")
            || template.ends_with("/bulk-delete");
        // The fixture an `{id}` names, by path prefix; destructive calls get a fresh one.
        let rest = template.trim_start_matches("/api/v1");
        let target = if rest.starts_with("/messages/{id}") {
            Some(if destructive {
                self.new_message().await
            } else {
                self.message.clone()
            })
        } else if rest.starts_with("/documents/{id}") {
            Some(if destructive {
                self.new_document().await
            } else {
                self.document.clone()
            })
        } else if rest.starts_with("/appointments/{id}") {
            Some(if destructive {
                self.new_appointment().await
            } else {
                self.appointment.clone()
            })
        } else if rest.starts_with("/invoices/{id}") {
            Some(if destructive {
                self.new_invoice(true).await
            } else {
                self.invoice.clone()
            })
        } else if rest.starts_with("/time-entries/{id}") {
            // Fresh for PATCH too: invoices created meanwhile lock the earlier ones (409).
            Some(self.new_time_entry().await)
        } else if rest.starts_with("/expenses/{id}") {
            Some(self.new_expense().await)
        } else {
            None
        };
        let mut path = template
            .replace("/cases/{id}", &format!("/cases/{case}"))
            .replace("/rates/{user_id}", &format!("/rates/{attorney}"));
        if rest.starts_with("/users/{id}/") {
            // Availability, busy blocks, slots and rates belong to an attorney.
            path = path.replace("/users/{id}", &format!("/users/{attorney}"));
        } else {
            path = path.replace("/users/{id}", &format!("/users/{}", self.client_on.id));
        }
        if let Some(t) = &target {
            path = path.replace("{id}", t);
        }
        // No adjustment exists: allowed callers reach the draft check (409) or 404 after it.
        path = path.replace("{adjustment_id}", &Uuid::new_v4().to_string());
        if path.contains("{busy_id}") {
            path = path.replace("{busy_id}", &self.new_busy().await);
        }
        if path.contains("{party_id}") {
            path = path.replace("{party_id}", &self.new_party().await);
        }
        if path.contains("{deadline_id}") {
            path = path.replace("{deadline_id}", &self.new_deadline().await);
        }
        if method == "DELETE" && path.contains("/members/{user_id}") {
            let extra = self.new_member().await;
            path = path.replace("{user_id}", &extra.to_string());
        }
        let (from, to) = (future(1, 0), future(8, 0));
        let range = format!(
            "from={}&to={}",
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        match (method, rest) {
            ("GET", "/documents/search") => path.push_str("?q=x"),
            ("GET", "/users/{id}/slots") => {
                path.push_str(&format!("?{range}&duration_minutes=30"));
            }
            ("GET", "/users/{id}/busy" | "/appointments") => path.push_str(&format!("?{range}")),
            ("GET", "/trust/ledger") => {
                path.push_str(&format!("?client_id={}&case_id={case}", self.client_on.id))
            }
            _ => {}
        }
        let (s, e) = self.next_slot();
        let body = match (method, rest) {
            ("GET" | "DELETE", _) => return (path, None),
            ("POST", "/cases/{id}/documents" | "/documents/{id}/versions") => {
                return (path, Some(Body::Pdf));
            }
            ("POST", "/cases") => json!({"title": "T", "client_ids": [self.client_on.id]}),
            ("PATCH", "/cases/{id}") => json!({"title": "Matter"}),
            ("PATCH", "/cases/{id}/deadlines/{deadline_id}") => json!({"completed": true}),
            ("POST", "/cases/{id}/deadlines") => {
                json!({"title": "File", "due_on": "2027-01-15", "kind": "filing"})
            }
            ("POST", "/cases/{id}/members") => {
                let (user, _) = self.app.create_user("paralegal").await;
                json!({"user_id": user, "role": "paralegal"})
            }
            ("POST", "/cases/{id}/parties") => {
                json!({"name": "Opposing Co", "kind": "opposing_party"})
            }
            ("POST", "/cases/{id}/status") => json!({"phase": "investigation"}),
            ("POST", "/cases/{id}/timeline") => json!({"kind": "note", "note": "n"}),
            ("POST", "/conflict-checks") => json!({"names": ["Smith"]}),
            ("POST", "/invitations") => json!({"email": fresh_email(), "role": "client"}),
            ("PATCH", "/me") => json!({"phone": "+1 555 0100"}),
            ("POST", "/users") => json!({
                "email": fresh_email(), "name": "New Person", "role": "client",
                "password": crate::helpers::PASSWORD,
            }),
            ("PATCH", "/users/{id}") => json!({"status": "active"}),
            ("POST", "/cases/{id}/messages") => json!({"body": "Hi"}),
            ("POST", "/messages/read") => json!({"ids": [self.message]}),
            ("POST", "/messages/bulk-delete") => json!({"ids": [self.new_message().await]}),
            ("PATCH", "/documents/{id}") => json!({"title": "Renamed"}),
            ("POST", "/documents/{id}/legal-hold" | "/cases/{id}/legal-hold") => {
                json!({"on": false})
            }
            ("POST", "/appointments") => json!({"attorney_id": attorney, "starts_at": s,
                "ends_at": e, "title": "Talk"}),
            ("PATCH", "/appointments/{id}") => json!({"title": "Renamed"}),
            ("PUT", "/users/{id}/availability") => json!({"timezone": "UTC",
                "rules": [{"weekday": 1, "start": "09:00", "end": "17:00"}]}),
            ("POST", "/users/{id}/busy") => json!({"starts_at": s, "ends_at": e}),
            ("PUT", "/users/{id}/rate" | "/cases/{id}/rates/{user_id}") => {
                json!({"rate_cents": 20_000})
            }
            ("POST", "/cases/{id}/time-entries") => json!({"work_date": Utc::now().date_naive(),
                "minutes": 6, "rate_cents": 10_000, "description": "Work"}),
            ("PATCH", "/time-entries/{id}") => json!({"minutes": 12}),
            ("POST", "/cases/{id}/expenses") => json!({"incurred_on": Utc::now().date_naive(),
                "amount_cents": 100, "description": "Copies"}),
            ("POST", "/invoices") => {
                // Something unbilled, so an allowed caller gets a draft, not 422.
                self.new_time_entry().await;
                json!({"case_id": case})
            }
            ("POST", "/invoices/{id}/payments") => json!({"amount_cents": 1, "method": "check"}),
            ("POST", "/trust/deposits") => json!({"client_id": self.client_on.id,
                "case_id": case, "amount_cents": 100}),
            ("POST", "/trust/transfers") => json!({"case_id": case, "invoice_id": self.invoice,
                "amount_cents": 1}),
            ("POST", "/trust/refunds") => json!({"client_id": self.client_on.id,
                "case_id": case, "amount_cents": 1}),
            ("POST", "/trust/reconciliations") => json!({"month": "2026-01",
                "bank_balance_cents": 0}),
            ("POST", "/invoices/{id}/adjustments") => json!({"kind": "discount",
                "applies_to": "fees", "amount_cents": 1, "description": "Courtesy"}),
            _ => json!({}),
        };
        let path = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{user_id}", &Uuid::new_v4().to_string());
        (path, Some(Body::Json(body)))
    }

    async fn send(&self, method: &str, path: &str, who: Who, body: Option<Body>) -> u16 {
        // A fresh session per call: logout, password change and the like end sessions.
        let token = match self.login(who) {
            Some(l) => Some(self.app.login_as(&l.email).await.access),
            None => None,
        };
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = match body {
            Some(Body::Pdf) => {
                let mut r = self.app.client.request(m, self.app.url(path));
                if let Some(t) = &token {
                    r = r.bearer_auth(t);
                }
                r.multipart(pdf_form()).send().await.expect("request sent")
            }
            Some(Body::Json(v)) => self.app.request(m, path, token.as_deref(), Some(v)).await,
            None => self.app.request(m, path, token.as_deref(), None).await,
        };
        r.status().as_u16()
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
            let got = world.send(method, &path, who, body.clone()).await;
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
                let bad = Some(Body::Json(json!({"unexpected": [1, {}]})));
                let got = world.send(method, &path, who, bad).await;
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

    // A shared document's confidentiality and title are staff's to change.
    let doc = format!("/api/v1/documents/{}", world.document);
    let r = app
        .patch(
            &doc,
            Some(&client.access),
            json!({"confidentiality": "privileged", "title": "Mine"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let d: Value = app
        .get(&doc, Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["confidentiality"], "shared", "{d}");
    assert_ne!(d["title"], "Mine", "{d}");

    // Billing a case is staff work, whatever rate a client names.
    let r = app
        .post(
            &format!("/api/v1/cases/{case}/time-entries"),
            Some(&client.access),
            json!({"work_date": Utc::now().date_naive(), "minutes": 600,
                   "rate_cents": 1, "description": "Mine"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
