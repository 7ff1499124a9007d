//! Passwords: the policy, and Argon2id hashing on a few low-priority threads behind a
//! semaphore, so a login flood queues instead of starving the executor, other requests or
//! memory (19 MiB per thread).

use std::{
    collections::HashSet,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// 30,000 most common passwords (the zxcvbn project's list, MIT licence), lower-cased.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 256;

/// Why a new password is refused.
pub fn check_policy(password: &str, email: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err("must be at least 12 characters");
    }
    if n > MAX_LEN {
        return Err("must be at most 256 characters");
    }
    let lower = password.to_lowercase();
    if lower == email.trim().to_lowercase() {
        return Err("must not be your email address");
    }
    // A common password stays common with digits or symbols around it ("password1234").
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if COMMON.contains(lower.as_str()) || (!core.is_empty() && COMMON.contains(core)) {
        return Err("is too common; choose a less predictable password");
    }
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first) {
        return Err("is too predictable");
    }
    Ok(())
}

/// The hasher is saturated: more requests are already waiting than the queue allows.
/// Answered as 429 with `Retry-After`; nothing about the account is revealed or recorded.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated; try again shortly")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<HashError> for crate::error::Error {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::RateLimited {
                retry_after_secs: 1,
            },
            HashError::Failed(e) => Self::Internal(e),
        }
    }
}

/// How many hashes wait and run right now, and the most that ever ran at once.
#[derive(Default)]
struct Gauge {
    waiting: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts one waiting request for as long as it lives; holds how many waited before it.
struct Waiting<'a>(usize, &'a Gauge);

impl<'a> Waiting<'a> {
    fn new(g: &'a Gauge) -> Self {
        Self(g.waiting.fetch_add(1, Ordering::SeqCst), g)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.1.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one running hash for as long as it lives (on the blocking thread).
struct Running<'a>(&'a Gauge);

impl<'a> Running<'a> {
    fn new(g: &'a Gauge) -> Self {
        let now = g.running.fetch_add(1, Ordering::SeqCst) + 1;
        g.peak.fetch_max(now, Ordering::SeqCst);
        Self(g)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hashes and verifies passwords off the async executor, at most `concurrency` at a time
/// (default: one core fewer than the machine has, so a login flood leaves a core for every
/// other request) with at most `queue` waiting; beyond that a request is shed.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// As many threads as permits, at the lowest CPU priority, for the life of the hasher.
    threads: Arc<rayon::ThreadPool>,
    queue: usize,
    gauge: Arc<Gauge>,
    params: Params,
    /// A hash of a random password: verifying against it makes unknown emails cost the same.
    dummy: Arc<String>,
}

impl Hasher {
    /// Fails only if the operating system refuses the hashing threads (start-up error).
    pub fn new(
        concurrency: usize,
        queue: usize,
        fast_for_tests: bool,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        // OWASP: m = 19 MiB, t = 2, p = 1. Tests may use the minimum cost to stay quick.
        let params = if fast_for_tests {
            Params::new(Params::MIN_M_COST, 1, 1, None).expect("valid params")
        } else {
            Params::new(19 * 1024, 2, 1, None).expect("valid params")
        };
        let dummy = argon(&params)
            .hash_password(crate::crypto::random_token().as_bytes())
            .expect("hashing a fixed-size input")
            .to_string();
        let concurrency = concurrency.max(1);
        // Threads that live as long as the hasher. A thread per hash gave each its own malloc
        // arena, and every arena kept its freed 19 MiB: a login flood left the process 350 MiB
        // larger for good. A fixed set keeps at most one hash's memory per thread.
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(concurrency)
            .thread_name(|_| "lfp-password-hash".into())
            .start_handler(|_| lowest_priority())
            // A hash that panics drops its answer channel; its caller gets an error, and
            // the thread (and the process) live on.
            .panic_handler(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                tracing::error!(panic = why, "a password hash panicked");
            })
            .build()?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            threads: Arc::new(threads),
            queue,
            gauge: Arc::default(),
            params,
            dummy: Arc::new(dummy),
        })
    }

    /// The most hashes that have run at the same moment since start (tests, diagnostics).
    pub fn peak_running(&self) -> usize {
        self.gauge.peak.load(Ordering::SeqCst)
    }

    /// A slot, waiting in line if there is room in the queue. The permit travels into the
    /// blocking task, so a request that goes away mid-hash still holds its slot until the
    /// hash is done: the bound is on CPU actually in use, not on requests in flight.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, HashError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        // Counted out on drop: a request cancelled while it waits (the client went away)
        // must leave the queue too, or the count would creep up until every login is shed.
        let waiting = Waiting::new(&self.gauge);
        if waiting.0 >= self.queue {
            return Err(HashError::Busy);
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HashError::Failed(e.into()))
    }

    /// Run `f` under a slot on one of the hasher's threads, which run at the lowest CPU
    /// priority. Argon2 is CPU-bound by design; at normal priority a login flood takes its
    /// cores away from every other request (and, on PostgreSQL, from the database's own
    /// processes). At nice 19 the kernel runs a hash only when nothing else wants the core, so
    /// logins slow down under load instead of everything else. Threads of their own leave the
    /// shared blocking pool's priority alone.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = self.slot().await?;
        let gauge = self.gauge.clone();
        let span = tracing::Span::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.threads.spawn(move || {
            let _e = span.enter();
            // Counted out before the slot is given back, or the next hash would be counted
            // in while this one still is.
            let out = {
                let _running = Running::new(&gauge);
                f()
            };
            drop(permit);
            // The request may have gone away; the slot is free either way.
            let _ = tx.send(out);
        });
        rx.await.map_err(|_| {
            HashError::Failed(anyhow::anyhow!("the hash thread ended without an answer"))
        })
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let params = self.params.clone();
        let pw = password.clone();
        self.run(move || {
            argon(&params)
                .hash_password(pw.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await?
        .map_err(HashError::Failed)
    }

    /// Verify against `hash`, or against a dummy when there is no user, in the same time and
    /// through the same slots and queue (an unknown email is shed or delayed alike).
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy.as_ref().clone());
        let pw = password.clone();
        let ok = self
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    return false;
                };
                // Verification uses the parameters stored in the hash itself.
                Argon2::default()
                    .verify_password(pw.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .await?;
        Ok(ok && known)
    }
}

/// Nice 19 for the calling thread only (Linux schedules threads, so `setpriority` on the
/// thread id leaves the rest of the process alone). Best effort: a refusal is logged once per
/// thread and the hash still runs.
#[cfg(target_os = "linux")]
fn lowest_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::warn!(error = %e, "could not lower the password-hash thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(COMMON.len() >= 10_000);
        assert!(check_policy("short", "a@b.co").is_err());
        assert!(check_policy("password1234", "a@b.co").is_err());
        assert!(check_policy("qwertyuiop12", "a@b.co").is_err());
        assert!(check_policy("!!Password2024!!", "a@b.co").is_err());
        assert!(check_policy("aaaaaaaaaaaaaa", "a@b.co").is_err());
        assert!(check_policy("ann.lee@example.com", "Ann.Lee@example.com").is_err());
        assert!(check_policy("correct horse battery staple", "a@b.co").is_ok());
        assert!(check_policy(&"x1".repeat(200), "a@b.co").is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_cost_and_verify() {
        let h = Hasher::new(1, 8, false).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(h.verify(&pw, Some(&hash)).await.unwrap());
        assert!(
            !h.verify(
                &SecretString::from("wrong horse battery staple"),
                Some(&hash)
            )
            .await
            .unwrap()
        );
        assert!(!h.verify(&pw, None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_the_configured_number_of_hashes_run_at_once() {
        let h = Hasher::new(2, 64, true).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (h, pw, hash) = (h.clone(), pw.clone(), hash.clone());
                // Known and unknown users alike go through the same slots.
                tokio::spawn(async move {
                    let known = (i % 2 == 0).then_some(hash.as_str());
                    h.verify(&pw, known).await.unwrap()
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), i % 2 == 0);
        }
        assert!((1..=2).contains(&h.peak_running()), "{}", h.peak_running());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashes_share_as_many_threads_as_slots() {
        // A thread per hash left a malloc arena holding 19 MiB behind each (docs/benchmarks.md,
        // round 12): the threads must be reused.
        let h = Hasher::new(2, 64, true).unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.run(|| std::thread::current().id()).await.unwrap() })
            })
            .collect();
        let mut threads = HashSet::new();
        for t in tasks {
            threads.insert(t.await.unwrap());
        }
        assert!(
            (1..=2).contains(&threads.len()),
            "{} threads",
            threads.len()
        );
        // And a hash that panics costs its caller an answer, not a thread or the process.
        assert!(matches!(
            h.run(|| panic!("boom")).await,
            Err(HashError::Failed(_))
        ));
        let pw = SecretString::from("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(h.verify(&pw, Some(&hash)).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_at_the_lowest_cpu_priority_and_leave_the_caller_alone() {
        let h = Hasher::new(1, 8, true).unwrap();
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let inside = h.run(own).await.unwrap();
        assert_eq!(inside, 19);
        assert_eq!(own(), before, "the calling thread keeps its priority");
        // The same path serves real hashes.
        let pw = SecretString::from("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(h.verify(&pw, Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let h = Hasher::new(1, 2, true).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        // Hold the only slot, then fill the queue with two waiting verifications.
        let held = h.permits.clone().acquire_owned().await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let (h, pw) = (h.clone(), pw.clone());
                tokio::spawn(async move { h.verify(&pw, None).await })
            })
            .collect();
        while h.gauge.waiting.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(h.verify(&pw, None).await, Err(HashError::Busy)));
        assert!(matches!(h.hash(&pw).await, Err(HashError::Busy)));
        assert!(matches!(
            crate::error::Error::from(HashError::Busy),
            crate::error::Error::RateLimited {
                retry_after_secs: 1
            }
        ));
        drop(held);
        for w in waiting {
            assert!(!w.await.unwrap().unwrap());
        }
        assert_eq!(h.gauge.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(h.peak_running(), 1);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_while_waiting_leaves_the_queue() {
        let h = Hasher::new(1, 1, true).unwrap();
        let pw = SecretString::from("correct horse battery staple");
        let held = h.permits.clone().acquire_owned().await.unwrap();
        let (h2, pw2) = (h.clone(), pw.clone());
        let waiter = tokio::spawn(async move { h2.verify(&pw2, None).await });
        while h.gauge.waiting.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // The client went away: its future is dropped mid-wait.
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(h.gauge.waiting.load(Ordering::SeqCst), 0);
        drop(held);
        // The queue has room again: the next login is served, not shed.
        assert!(!h.verify(&pw, None).await.unwrap());
    }
}
