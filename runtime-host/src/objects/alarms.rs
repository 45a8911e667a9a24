//! The alarm scheduler: every object's committed alarm, fired when due.
//! Alarms live in the class databases, so they are scheduled again when
//! the host starts.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::ObjectKey;

/// Retries of a failing alarm before it is left for the next start.
const MAX_RETRIES: u32 = 6;
/// First retry delay; doubled on each failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    due: BTreeSet<(u64, ObjectKey)>,
    by_key: HashMap<ObjectKey, u64>,
    failures: HashMap<ObjectKey, u32>,
}

impl Queue {
    fn set(&mut self, key: ObjectKey, at: Option<u64>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.due.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.due.insert((at, key.clone()));
            self.by_key.insert(key, at);
        }
    }
}

/// Scheduled alarms.
#[derive(Default)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Scheduler {
    /// Records `key`'s alarm after a commit (`None`: no alarm).
    pub fn set(&self, key: ObjectKey, at: Option<u64>) {
        let mut queue = self.lock();
        queue.failures.remove(&key);
        let earlier = at.is_some_and(|at| queue.due.first().is_none_or(|(first, _)| at < *first));
        queue.set(key, at);
        drop(queue);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Schedules a retry of `key`'s failed alarm, with exponential backoff.
    pub fn retry(&self, key: ObjectKey, now_ms: u64) {
        let mut queue = self.lock();
        if queue.by_key.contains_key(&key) {
            // Set again meanwhile: that one stands.
            return;
        }
        let failures = queue.failures.entry(key.clone()).or_insert(0);
        *failures += 1;
        if *failures > MAX_RETRIES {
            queue.failures.remove(&key);
            tracing::warn!(class = %key.class, name = %key.name, "alarm keeps failing; left for the next start");
            return;
        }
        let delay = FIRST_RETRY.saturating_mul(1 << (*failures - 1));
        let at = now_ms.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        queue.set(key, Some(at));
        drop(queue);
        self.wake.notify_one();
    }

    /// Number of scheduled alarms.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Takes the alarms due at `now_ms`, or says how long until the next.
    fn take_due(&self, now_ms: u64) -> (Vec<(ObjectKey, u64)>, Option<Duration>) {
        let mut queue = self.lock();
        let mut fired = Vec::new();
        while let Some((at, _)) = queue.due.first()
            && *at <= now_ms
        {
            let Some((at, key)) = queue.due.pop_first() else {
                break;
            };
            queue.by_key.remove(&key);
            fired.push((key, at));
        }
        let next = queue
            .due
            .first()
            .map(|(at, _)| Duration::from_millis(at - now_ms));
        (fired, next)
    }

    /// Fires due alarms through `fire` for the life of the process.
    pub async fn run(&self, fire: impl Fn(ObjectKey, u64)) {
        loop {
            let (fired, next) = self.take_due(super::now_ms());
            for (key, at) in fired {
                fire(key, at);
            }
            // At most a minute: the wall clock may jump.
            let sleep = next
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_alarms_come_out_in_order_and_replacements_count() {
        let s = Scheduler::default();
        let a = ObjectKey::new("c", "a");
        let b = ObjectKey::new("c", "b");
        s.set(a.clone(), Some(300));
        s.set(b.clone(), Some(100));
        s.set(b.clone(), Some(200));
        let (fired, next) = s.take_due(250);
        assert_eq!(fired, vec![(b.clone(), 200)]);
        assert_eq!(next, Some(Duration::from_millis(50)));
        s.set(a.clone(), None);
        assert_eq!(s.take_due(1000), (vec![], None));
        s.retry(a.clone(), 1000);
        assert_eq!(s.take_due(1999).0, vec![]);
        assert_eq!(s.take_due(2000).0, vec![(a.clone(), 2000)]);
        s.retry(a.clone(), 2000);
        assert_eq!(s.take_due(4000).0, vec![(a, 4000)]);
        assert_eq!(s.len(), 0);
    }
}
