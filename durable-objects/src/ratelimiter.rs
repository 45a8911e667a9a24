//! The rate-limiter object: one instance per (policy, key), e.g.
//! `per-ip:203.0.113.9`.
//!
//! `POST /check` with a [`CheckRequest`] answers a [`Decision`]. The policy
//! travels with every call, so the object needs no configuration and follows
//! configuration changes (a changed algorithm starts counting afresh).
//!
//! The state lives under one storage key ([`STATE_KEY`]) and is cached in
//! memory, so a warm object does one `put` per admitted request and no
//! `get`; refusals write nothing (they do not change the state's meaning).
//! An alarm deletes the key once the quota is entirely available again, so
//! idle keys do not accumulate.

use std::cell::{Cell, RefCell};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::algorithms::{self, Algorithm, Decision, LimiterState, Policy, PolicyError};
use crate::object::{DurableObject, FetchOutcome, Request};
use crate::response;
use crate::state::{State, Storage, StorageError};

/// Storage key of the limiter's record.
pub const STATE_KEY: &str = "rl";

/// Body of `POST /check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Counting algorithm.
    pub algorithm: Algorithm,
    /// Requests admitted per period.
    pub limit: u64,
    /// Period length in milliseconds.
    pub period_ms: u64,
    /// Bucket capacity for `token_bucket` and `gcra` (default `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Units this request takes (default 1; 0 only peeks).
    #[serde(default = "one")]
    pub cost: u64,
}

fn one() -> u64 {
    1
}

impl CheckRequest {
    /// A check of `cost` units against `policy`.
    pub fn new(policy: &Policy, cost: u64) -> Self {
        Self {
            algorithm: policy.algorithm(),
            limit: policy.limit(),
            period_ms: policy.period_ms(),
            burst: policy.burst(),
            cost,
        }
    }

    /// The validated policy.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        Policy::new(self.algorithm, self.limit, self.period_ms, self.burst)
    }
}

/// What is stored: the algorithm state and when it becomes idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    state: LimiterState,
    idle_at_ms: u64,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.idle_at_ms.to_le_bytes().to_vec();
        out.extend_from_slice(&self.state.encode());
        out
    }

    /// `None` for bytes this version cannot read: counting restarts rather
    /// than failing every request of the key.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (idle, state) = bytes.split_at_checked(8)?;
        Some(Self {
            idle_at_ms: u64::from_le_bytes(idle.try_into().ok()?),
            state: LimiterState::decode(state).ok()?,
        })
    }
}

/// Whether the platform has an alarm scheduled, as far as this instance knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlarmKnown {
    Unknown,
    Set,
    Unset,
}

/// The rate-limiter Durable Object.
#[derive(Debug)]
pub struct RateLimiter {
    /// `None` until loaded from storage; `Some(None)` when nothing is stored.
    cache: RefCell<Option<Option<Record>>>,
    alarm: Cell<AlarmKnown>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    /// A fresh instance (state is loaded on first use).
    pub fn new() -> Self {
        Self {
            cache: RefCell::new(None),
            alarm: Cell::new(AlarmKnown::Unknown),
        }
    }

    /// Decides one check and stores the new state before returning. The
    /// answer need not wait for the write to be durable: a crash may forget
    /// the last few admissions (the key then admits a little more), a trade
    /// rate limiters make for latency; the live object's count stays exact.
    pub async fn check<S: State>(
        &self,
        state: &S,
        request: &CheckRequest,
    ) -> Result<Decision, CheckError> {
        let policy = request.policy()?;
        let previous = self.load(state).await?;
        let now = state.now_ms();
        let (decision, next) = algorithms::check(
            &policy,
            previous.map(|r| r.state).as_ref(),
            now,
            request.cost,
        );
        if decision.allowed && previous.map(|r| r.state) != Some(next) {
            let record = Record {
                state: next,
                idle_at_ms: now.saturating_add(decision.reset_ms),
            };
            // Cache first: an event interleaved with the write below must
            // count from the new state.
            *self.cache.borrow_mut() = Some(Some(record));
            state
                .storage()
                .put_unconfirmed(STATE_KEY, record.encode())
                .await?;
            self.ensure_alarm(state, record.idle_at_ms).await;
        }
        Ok(decision)
    }

    async fn load<S: State>(&self, state: &S) -> Result<Option<Record>, StorageError> {
        if let Some(cached) = *self.cache.borrow() {
            return Ok(cached);
        }
        let stored = state.storage().get(STATE_KEY).await?;
        let mut cache = self.cache.borrow_mut();
        // Another event may have loaded (and advanced) the state meanwhile.
        Ok(*cache.get_or_insert_with(|| stored.as_deref().and_then(Record::decode)))
    }

    /// Makes sure some alarm will look at the key; a missed alarm only
    /// delays clean-up, so failures are not reported.
    async fn ensure_alarm<S: State>(&self, state: &S, at_ms: u64) {
        if self.alarm.get() == AlarmKnown::Unknown {
            match state.get_alarm().await {
                Ok(Some(_)) => self.alarm.set(AlarmKnown::Set),
                Ok(None) => self.alarm.set(AlarmKnown::Unset),
                Err(_) => return,
            }
        }
        if self.alarm.get() == AlarmKnown::Unset && state.set_alarm(at_ms).await.is_ok() {
            self.alarm.set(AlarmKnown::Set);
        }
    }
}

/// Why a check has no decision.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    /// The request's policy is unusable (400).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Storage failed (503). A failed write leaves the in-memory state
    /// counted, so the instance stays on the strict side.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CheckError {
    /// The HTTP status the object answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            CheckError::Policy(_) => StatusCode::BAD_REQUEST,
            CheckError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl<S: State> DurableObject<S> for RateLimiter {
    async fn fetch(&self, state: &S, request: Request) -> FetchOutcome {
        let response = match (request.method(), request.uri().path()) {
            (&Method::POST, "/check") => {
                match serde_json::from_slice::<CheckRequest>(request.body()) {
                    Err(e) => {
                        response::error(StatusCode::BAD_REQUEST, &format!("invalid check: {e}"))
                    }
                    Ok(check) => match self.check(state, &check).await {
                        Ok(decision) => response::json(StatusCode::OK, &decision),
                        Err(e) => response::error(e.status(), &e.to_string()),
                    },
                }
            }
            (_, "/check") => response::error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
            _ => response::error(StatusCode::NOT_FOUND, "not found"),
        };
        FetchOutcome::Response(response)
    }

    /// Deletes the record once it is idle, else looks again when it will be.
    async fn alarm(&self, state: &S) -> Result<(), StorageError> {
        self.alarm.set(AlarmKnown::Unset);
        let Some(record) = self.load(state).await? else {
            return Ok(());
        };
        if state.now_ms() >= record.idle_at_ms {
            // Forget the cache before the write so that a decision made
            // meanwhile starts from the empty state the key is about to have.
            *self.cache.borrow_mut() = Some(None);
            state.storage().delete(STATE_KEY).await?;
        } else {
            state.set_alarm(record.idle_at_ms).await?;
            self.alarm.set(AlarmKnown::Set);
        }
        Ok(())
    }
}
