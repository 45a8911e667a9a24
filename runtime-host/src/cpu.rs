//! The per-request CPU limit: how long a guest may run without blocking on
//! host I/O.
//!
//! The guest runs inside the future of an async wasmtime call. Time spent
//! inside that future's `poll` is time the guest (or synchronous host code it
//! called) was running. The call returns `Pending` for two reasons: the guest
//! waits on I/O (its run ends: the count restarts), or the epoch callback
//! asked it to yield so other requests get the worker thread (its run goes
//! on). Counting poll time rather than epoch ticks keeps the limit exact when
//! a yielded guest waits in a busy scheduler queue. Once a poll has lasted
//! [`CPU_CLOCK_AFTER`], the thread's CPU clock is counted instead of the
//! wall clock, so a long run on a busy machine (the thread descheduled in
//! the middle of a poll) is not charged for other processes' time; the
//! short polls of ordinary requests never pay for reading that clock (a
//! system call).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// Wall time of a poll after which its run time is read from the thread's
/// CPU clock.
const CPU_CLOCK_AFTER: Duration = Duration::from_millis(20);

/// The guest ran longer than the limit without blocking.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("guest ran for {ran:?} without yielding to the host (limit {limit:?})")]
pub struct CpuLimitExceeded {
    /// How long it had run.
    pub ran: Duration,
    /// The limit.
    pub limit: Duration,
}

/// Tracks the current continuous run of one instance.
#[derive(Debug)]
pub struct CpuMeter {
    limit: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the poll in progress started.
    poll_started: Option<Instant>,
    /// Set at the first epoch check past [`CPU_CLOCK_AFTER`] of the poll in
    /// progress: the thread's CPU clock then and the poll's wall time until
    /// then.
    mark: Option<(Duration, Duration)>,
    /// Run time accumulated over earlier polls of the current run.
    ran: Duration,
    /// The epoch callback asked for a yield during the poll in progress.
    yield_requested: bool,
    /// The limit was hit in this request.
    tripped: bool,
}

impl CpuMeter {
    /// A meter enforcing `limit`.
    pub fn new(limit: Duration) -> Arc<CpuMeter> {
        Arc::new(CpuMeter {
            limit,
            state: Mutex::default(),
        })
    }

    /// Starts a new request.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// Whether the limit was hit since the last reset.
    pub fn tripped(&self) -> bool {
        self.lock().tripped
    }

    /// The epoch-deadline callback: trap past the limit, else yield for one
    /// tick so other tasks run.
    pub fn on_epoch_deadline(&self) -> wasmtime::Result<UpdateDeadline> {
        self.check(true)
    }

    /// The epoch-deadline callback of synchronous calls, which cannot
    /// yield: trap past the limit, else go on for one tick.
    pub fn on_epoch_deadline_sync(&self) -> wasmtime::Result<UpdateDeadline> {
        self.check(false)
    }

    /// Runs `call`, a synchronous guest call, as one continuous run.
    pub fn run<T>(&self, call: impl FnOnce() -> T) -> T {
        self.enter();
        let result = call();
        self.leave(false);
        result
    }

    fn check(&self, can_yield: bool) -> wasmtime::Result<UpdateDeadline> {
        let mut state = self.lock();
        let ran = state.ran + state.poll_time(true);
        if ran >= self.limit {
            state.tripped = true;
            return Err(wasmtime::Error::new(CpuLimitExceeded {
                ran,
                limit: self.limit,
            }));
        }
        if !can_yield {
            return Ok(UpdateDeadline::Continue(1));
        }
        state.yield_requested = true;
        Ok(UpdateDeadline::Yield(1))
    }

    fn enter(&self) {
        let mut state = self.lock();
        state.poll_started = Some(Instant::now());
        state.mark = None;
    }

    fn leave(&self, pending: bool) {
        let mut state = self.lock();
        let elapsed = state.poll_time(false);
        state.poll_started = None;
        state.mark = None;
        if pending && !state.yield_requested {
            // Blocked on host I/O: the continuous run is over.
            state.ran = Duration::ZERO;
        } else {
            state.ran += elapsed;
        }
        state.yield_requested = false;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Run time of the poll in progress: wall time until its mark, then
    /// the thread's CPU time. `set_mark` sets the mark if there is none.
    fn poll_time(&mut self, set_mark: bool) -> Duration {
        let Some(started) = self.poll_started else {
            return Duration::ZERO;
        };
        if let Some((cpu_at_mark, wall_at_mark)) = self.mark
            && let Some(cpu) = thread_cpu_time()
        {
            return wall_at_mark + cpu.saturating_sub(cpu_at_mark);
        }
        let wall = started.elapsed();
        if set_mark && self.mark.is_none() && wall >= CPU_CLOCK_AFTER {
            self.mark = thread_cpu_time().map(|cpu| (cpu, wall));
        }
        wall
    }
}

/// CPU time the calling thread has used, if the OS tells.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    ok.then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// Runs `future` (a guest call) under `meter`.
pub fn metered<F: Future>(meter: Arc<CpuMeter>, future: F) -> Metered<F> {
    Metered {
        meter,
        inner: Box::pin(future),
    }
}

/// A future whose poll time counts against a [`CpuMeter`].
pub struct Metered<F> {
    meter: Arc<CpuMeter>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let meter = Arc::clone(&self.meter);
        meter.enter();
        let result = self.inner.as_mut().poll(cx);
        meter.leave(result.is_pending());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the thread busy until it has used `time` of CPU (however
    /// long that takes on a busy machine).
    fn spin(time: Duration) {
        let started = thread_cpu_time().unwrap();
        while thread_cpu_time().unwrap() - started < time {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn yields_below_limit_and_trips_above() {
        let meter = CpuMeter::new(Duration::from_millis(200));
        meter.enter();
        assert!(matches!(
            meter.on_epoch_deadline().unwrap(),
            UpdateDeadline::Yield(1)
        ));
        spin(Duration::from_millis(210));
        assert!(meter.on_epoch_deadline().is_err());
        assert!(meter.tripped());
        meter.reset();
        assert!(!meter.tripped());
    }

    #[test]
    fn time_the_thread_does_not_run_is_not_counted() {
        let meter = CpuMeter::new(Duration::from_millis(300));
        meter.enter();
        spin(CPU_CLOCK_AFTER + Duration::from_millis(5));
        assert!(meter.on_epoch_deadline().is_ok());
        // Descheduled (here: asleep) in the middle of a poll.
        std::thread::sleep(Duration::from_millis(350));
        assert!(meter.on_epoch_deadline().is_ok());
        spin(Duration::from_millis(280));
        assert!(meter.on_epoch_deadline().is_err());
    }

    #[test]
    fn synchronous_runs_continue_then_trip() {
        let meter = CpuMeter::new(Duration::from_millis(50));
        let early = meter.run(|| meter.on_epoch_deadline_sync().unwrap());
        assert!(matches!(early, UpdateDeadline::Continue(1)));
        let late = meter.run(|| {
            std::thread::sleep(Duration::from_millis(60));
            meter.on_epoch_deadline_sync()
        });
        assert!(late.is_err());
        assert!(meter.tripped());
    }

    #[test]
    fn yields_continue_a_run_but_io_waits_end_it() {
        let meter = CpuMeter::new(Duration::from_millis(100));
        // A poll that ran 60 ms and was asked to yield: the run continues.
        meter.enter();
        std::thread::sleep(Duration::from_millis(60));
        meter.on_epoch_deadline().unwrap();
        meter.leave(true);
        meter.enter();
        std::thread::sleep(Duration::from_millis(50));
        assert!(meter.on_epoch_deadline().is_err());

        // The same, but the first poll ended waiting on I/O: it restarts.
        meter.reset();
        meter.enter();
        std::thread::sleep(Duration::from_millis(60));
        meter.leave(true);
        meter.enter();
        std::thread::sleep(Duration::from_millis(20));
        assert!(meter.on_epoch_deadline().is_ok());
    }
}
