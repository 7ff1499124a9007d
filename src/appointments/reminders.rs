//! The reminder job: mails each participant (and pushes a live `notification`) at the
//! configured offsets before an appointment. One `appointment_reminder` row per
//! (appointment, offset) makes it idempotent, also with several instances running.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{
    domain::{self, AppointmentStatus},
    entity::{appointment, reminder},
    service,
};
use crate::{AppState, error::Result};

/// Run until shutdown, looking for due reminders every `job_interval`.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let mut stop = state.shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            if let Err(e) = run_once(&state, crate::db::now()).await {
                tracing::warn!(error = %e, "reminder job failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(state.config.job_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}

/// One pass at `now` (a parameter so tests can move the clock). Returns reminders sent.
pub async fn run_once(state: &AppState, now: DateTime<Utc>) -> Result<usize> {
    let offsets = &state.config.reminder_minutes;
    let Some(max) = offsets.iter().copied().max() else {
        return Ok(0);
    };
    let mut sent = 0;
    let mut after: Option<(DateTime<Utc>, uuid::Uuid)> = None;
    // Page by page in start order (keyset): a busy firm has more than a page of appointments
    // in the next day, and the last of them are due their day-before reminder now too.
    loop {
        let mut q = appointment::Entity::find()
            .filter(appointment::Column::StartsAt.gt(now))
            .filter(appointment::Column::StartsAt.lte(now + Duration::minutes(max)))
            .filter(appointment::Column::Status.is_in([
                AppointmentStatus::Requested.as_str(),
                AppointmentStatus::Confirmed.as_str(),
            ]));
        if let Some((t, id)) = after {
            q = q.filter(
                Condition::any()
                    .add(appointment::Column::StartsAt.gt(t))
                    .add(
                        Condition::all()
                            .add(appointment::Column::StartsAt.eq(t))
                            .add(appointment::Column::Id.gt(id)),
                    ),
            );
        }
        let candidates = q
            .order_by_asc(appointment::Column::StartsAt)
            .order_by_asc(appointment::Column::Id)
            .limit(PAGE)
            .all(state.db.conn())
            .await?;
        let Some(last) = candidates.last() else {
            return Ok(sent);
        };
        after = Some((last.starts_at, last.id));
        let full = candidates.len() as u64 == PAGE;
        sent += remind(state, now, offsets, candidates).await?;
        if !full {
            return Ok(sent);
        }
    }
}

/// Appointments read per page by [`run_once`].
const PAGE: u64 = 500;

/// Send the reminders due now for `candidates` (one page), each in its own transaction.
async fn remind(
    state: &AppState,
    now: DateTime<Utc>,
    offsets: &[i64],
    candidates: Vec<appointment::Model>,
) -> Result<usize> {
    let done: HashSet<(uuid::Uuid, i32)> = reminder::Entity::find()
        .filter(reminder::Column::AppointmentId.is_in(candidates.iter().map(|a| a.id)))
        .all(state.db.conn())
        .await?
        .into_iter()
        .map(|r| (r.appointment_id, r.offset_minutes))
        .collect();
    let mut sent = 0;
    for a in candidates {
        let (due, _) = domain::due_reminders(offsets, a.starts_at, a.scheduled_at, now);
        let new: Vec<i64> = due
            .into_iter()
            .filter(|o| !done.contains(&(a.id, *o as i32)))
            .collect();
        let Some(&send) = new.iter().min() else {
            continue;
        };
        let txn = state.db.begin_write().await?;
        let mut raced = false;
        for o in &new {
            let r = reminder::ActiveModel {
                appointment_id: Set(a.id),
                offset_minutes: Set(*o as i32),
                created_at: Set(crate::db::now()),
            }
            .insert(&*txn)
            .await;
            match r {
                Ok(_) => {}
                // Another instance got there first: it sends this reminder.
                Err(e) if crate::db::is_unique_violation(&e) => {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if raced {
            continue;
        }
        let change = format!("reminder_{send}");
        service::announce(
            state,
            &*txn,
            &a,
            "notification",
            Some("appointment.reminder"),
            &change,
        )
        .await?;
        txn.commit().await?;
        sent += 1;
    }
    Ok(sent)
}
