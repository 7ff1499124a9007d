//! Rate limits on actions that cost us (hashing, fuzzy matching, mail) or invite abuse
//! (account creation, token guessing, booking floods); message sends are counted in
//! the database by `messages`. Answers 429 with
//! `Retry-After`. Counted in memory per instance: with several instances the effective limit
//! is multiplied by their number, which still bounds abuse; failed logins are counted in the
//! database instead (`auth::throttle`) because that limit protects an account, not a server.

use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Open registration, per source address.
    Register,
    /// Token refresh, per source address (refresh tokens are long random values, but a flood
    /// still costs a database round trip each).
    Refresh,
    /// Conflict checks, per user (fuzzy matching over every name of the firm).
    ConflictCheck,
    /// Invitations, per user (each sends a mail).
    Invitation,
    /// Document uploads, per user.
    Upload,
    /// Appointment bookings and reschedules, per user.
    Booking,
    /// Password-reset requests, per source address (each may send a mail).
    PasswordReset,
    /// Reset mails, per account: however many addresses ask, one inbox gets a few an hour.
    PasswordResetMail,
}

impl Action {
    const ALL: [Action; 8] = [
        Action::Register,
        Action::Refresh,
        Action::ConflictCheck,
        Action::Invitation,
        Action::Upload,
        Action::Booking,
        Action::PasswordReset,
        Action::PasswordResetMail,
    ];

    /// (time to earn back one event, burst).
    fn quota(self) -> (Duration, u32) {
        let per_minute = |n: u32| Duration::from_secs(60) / n;
        let (rate, burst) = match self {
            Action::Register => (2, 10),
            Action::Refresh => (60, 60),
            Action::ConflictCheck => (30, 30),
            Action::Invitation => (10, 30),
            Action::Upload => (30, 60),
            Action::Booking => (10, 20),
            Action::PasswordReset => (5, 10),
            Action::PasswordResetMail => {
                return (Duration::from_secs(20 * 60), 3);
            }
        };
        (per_minute(rate), burst)
    }
}

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

pub struct RateLimits {
    limiters: HashMap<Action, Keyed>,
    clock: DefaultClock,
}

impl Default for RateLimits {
    fn default() -> Self {
        let limiters = Action::ALL
            .into_iter()
            .map(|a| {
                let (period, burst) = a.quota();
                let nz = |n: u32| NonZeroU32::new(n).expect("quotas are positive");
                let quota = Quota::with_period(period)
                    .expect("non-zero period")
                    .allow_burst(nz(burst));
                (a, RateLimiter::keyed(quota))
            })
            .collect();
        Self {
            limiters,
            clock: DefaultClock::default(),
        }
    }
}

impl RateLimits {
    /// Count one `action` by `key` (a user id or an address); 429 once over the quota.
    pub fn check(&self, action: Action, key: &str) -> Result<(), Error> {
        let limiter = &self.limiters[&action];
        // Forget idle keys now and then, so a flood of distinct addresses cannot grow memory.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_allowed_then_refused_per_key() {
        let limits = RateLimits::default();
        let (_, burst) = Action::Booking.quota();
        for _ in 0..burst {
            limits.check(Action::Booking, "alice").unwrap();
        }
        match limits.check(Action::Booking, "alice") {
            Err(Error::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected 429, got {other:?}"),
        }
        // Another key and another action have their own budgets.
        limits.check(Action::Booking, "bob").unwrap();
        limits.check(Action::Upload, "alice").unwrap();
    }
}
