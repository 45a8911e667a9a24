//! Edge instances and the requests they serve.
//!
//! An instance (a `Store` plus the instantiated component) serves one request
//! at a time and is then kept for the next, so the guest's start-up work
//! (parsing its configuration) happens once per instance, not per request.
//! `wasi:http/incoming-handler.handle` returns only after the guest has
//! written its whole response body, so an instance whose call returned `Ok`
//! is idle and can serve again. Traps and limit hits discard the instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edgegate_problem::Problem;
use hyper::body::Incoming;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::access::AccessLog;
use crate::cpu::{CpuMeter, metered};
use crate::metrics;
use crate::outbound::{Outbound, OutboundHooks};
use crate::respond::Body;
use crate::unread::ClientBody;

/// Idle instances kept for reuse; more than this are dropped when they
/// finish, returning their memory.
const MAX_IDLE: usize = 128;

/// An instance still holding more host resources than this after a request
/// leaks them (unfinished streams, unconsumed responses) and is retired.
const MAX_RETAINED_RESOURCES: usize = 64;

/// Limits of every instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear-memory cap in bytes.
    pub memory: u64,
    /// Longest continuous guest run.
    pub cpu: Duration,
    /// Requests an instance serves before it is retired.
    pub max_requests: u64,
}

/// Why a request got no response from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest ran past the CPU limit.
    CpuLimit,
    /// The guest trapped or a host call failed fatally.
    Trap {
        /// The root cause, one line.
        cause: String,
        /// The whole error with the guest backtrace.
        detail: String,
    },
    /// `handle` returned without setting a response.
    NoResponse,
    /// The guest answered with a `wasi:http` error code instead of a response.
    ErrorCode(String),
    /// No instance could be created (all slots busy, or out of memory).
    Capacity(String),
}

impl GuestFailure {
    fn trap(during: &str, error: &wasmtime::Error) -> GuestFailure {
        GuestFailure::Trap {
            cause: format!("{during}: {}", error.root_cause()),
            detail: format!("{during}: {error:?}"),
        }
    }

    /// Label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::CpuLimit => "cpu_limit",
            GuestFailure::Trap { .. } => "trap",
            GuestFailure::NoResponse => "no_response",
            GuestFailure::ErrorCode(_) => "error_code",
            GuestFailure::Capacity(_) => "capacity",
        }
    }

    /// The problem the client sees. Details stay generic; the specifics go
    /// to the log.
    pub fn problem(&self) -> Problem {
        match self {
            GuestFailure::CpuLimit => Problem::new(
                503,
                "guest_cpu_limit",
                "the edge function exceeded its CPU time limit",
            ),
            GuestFailure::Capacity(_) => Problem::new(
                503,
                "capacity_exhausted",
                "no edge instance is available, retry shortly",
            ),
            GuestFailure::Trap { .. } | GuestFailure::ErrorCode(_) => {
                Problem::new(500, "guest_error", "the edge function failed")
            }
            GuestFailure::NoResponse => {
                Problem::new(500, "guest_error", "the edge function returned no response")
            }
        }
    }
}

type Reply = Result<http::Response<Body>, GuestFailure>;

/// The one-shot answer of a request, settable from the guest's
/// `response-outparam` or, failing that, from the host after the call.
#[derive(Clone)]
struct ReplySlot(Arc<Mutex<Option<tokio::sync::oneshot::Sender<Reply>>>>);

impl ReplySlot {
    fn new() -> (ReplySlot, tokio::sync::oneshot::Receiver<Reply>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (ReplySlot(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Sends unless already sent; returns whether this call sent.
    fn send(&self, reply: Reply) -> bool {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match sender {
            Some(tx) => {
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }
}

/// The gateway's own time on one request, from its arrival at the pool to
/// the edge's first call to an origin or its response head, whichever comes
/// first (`edgegate_edge_latency_seconds`): instance checkout or creation,
/// authentication, rate limits and routing, without the upstream's time.
#[derive(Clone)]
pub struct EdgeClock(Arc<(Instant, AtomicBool)>);

impl EdgeClock {
    fn start() -> EdgeClock {
        EdgeClock(Arc::new((Instant::now(), AtomicBool::new(false))))
    }

    /// Records the time since the start, once; later calls do nothing.
    pub fn stop(&self) {
        let (started, stopped) = &*self.0;
        if !stopped.swap(true, Ordering::Relaxed) {
            metrics::get().edge_latency(started.elapsed());
        }
    }
}

/// Store data of one instance.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    limits: StoreLimits,
    meter: Arc<CpuMeter>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

struct Instance {
    store: Store<HostState>,
    proxy: Proxy,
    served: u64,
}

/// The edge component, ready to serve requests.
pub struct Guests {
    pre: ProxyPre<HostState>,
    env: Vec<(String, String)>,
    outbound: Arc<Outbound>,
    limits: Limits,
    access: Arc<AccessLog>,
    idle: Mutex<Vec<Instance>>,
}

impl Guests {
    /// Serves with instances of `pre`; each gets exactly `env` as its
    /// environment and writes its access records to `access`.
    pub fn new(
        pre: ProxyPre<HostState>,
        env: Vec<(String, String)>,
        outbound: Arc<Outbound>,
        limits: Limits,
        access: Arc<AccessLog>,
    ) -> Guests {
        Guests {
            pre,
            env,
            outbound,
            limits,
            access,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The same component with another environment (a reloaded
    /// configuration); its instances start fresh.
    pub fn with_env(&self, env: Vec<(String, String)>) -> Guests {
        Guests::new(
            self.pre.clone(),
            env,
            Arc::clone(&self.outbound),
            self.limits.clone(),
            Arc::clone(&self.access),
        )
    }

    /// Runs `request` through an instance. Returns when the guest set the
    /// response head (its body streams on) or failed.
    pub async fn handle(self: &Arc<Self>, request: hyper::Request<Incoming>) -> Reply {
        let (slot, answer) = ReplySlot::new();
        let clock = EdgeClock::start();
        let guests = Arc::clone(self);
        // Its own task: a guest call must run to its end even when the
        // client goes away, or the instance would be left mid-call.
        tokio::spawn(async move { guests.run(request, slot, clock).await });
        answer.await.unwrap_or(Err(GuestFailure::NoResponse))
    }

    async fn run(&self, request: hyper::Request<Incoming>, slot: ReplySlot, clock: EdgeClock) {
        let mut instance = match self.checkout().await {
            Ok(instance) => instance,
            Err(failure) => {
                tracing::warn!("no edge instance: {failure:?}");
                metrics::get().guest_failure(failure.kind());
                slot.send(Err(failure));
                return;
            }
        };
        match self.call(&mut instance, request, slot.clone(), clock).await {
            Ok(()) => {
                if slot.send(Err(GuestFailure::NoResponse)) {
                    tracing::warn!("edge component returned without a response");
                }
                self.checkin(instance);
            }
            Err(failure) => {
                metrics::get().guest_failure(failure.kind());
                let answered = !slot.send(Err(failure.clone()));
                match failure {
                    GuestFailure::CpuLimit => tracing::warn!(
                        limit_ms = self.limits.cpu.as_millis() as u64,
                        "edge component exceeded its CPU limit; instance discarded"
                    ),
                    // After the head, a trap is most often the guest failing
                    // to write to a client that went away.
                    GuestFailure::Trap { cause, detail } if answered => {
                        tracing::warn!("edge component failed after responding: {cause}");
                        tracing::debug!("{detail}");
                    }
                    GuestFailure::Trap { detail, .. } => {
                        tracing::error!("edge component failed: {detail}");
                    }
                    other => tracing::error!("edge component failed: {other:?}"),
                }
            }
        }
    }

    /// An idle instance, else a new one.
    async fn checkout(&self) -> Result<Instance, GuestFailure> {
        if let Some(instance) = self.lock_idle().pop() {
            return Ok(instance);
        }
        let started = std::time::Instant::now();
        let meter = CpuMeter::new(self.limits.cpu);
        let mut store = self.new_store(Arc::clone(&meter));
        store.set_epoch_deadline(1);
        let proxy = metered(Arc::clone(&meter), self.pre.instantiate_async(&mut store))
            .await
            .map_err(|e| {
                if meter.tripped() {
                    GuestFailure::CpuLimit
                } else if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                    GuestFailure::Capacity(format!("{e:#}"))
                } else {
                    GuestFailure::trap("instantiation", &e)
                }
            })?;
        metrics::get().instantiated(started.elapsed());
        Ok(Instance {
            store,
            proxy,
            served: 0,
        })
    }

    fn new_store(&self, meter: Arc<CpuMeter>) -> Store<HostState> {
        let wasi = WasiCtx::builder()
            .envs(&self.env)
            .stdout(self.access.stdout())
            .inherit_stderr()
            .build();
        let memory = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
        let state = HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks::new(Arc::clone(&self.outbound)),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory)
                .trap_on_grow_failure(false)
                .build(),
            meter,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|ctx| ctx.data().meter.on_epoch_deadline());
        store
    }

    /// One `handle` call on `instance`.
    async fn call(
        &self,
        instance: &mut Instance,
        request: hyper::Request<Incoming>,
        slot: ReplySlot,
        clock: EdgeClock,
    ) -> Result<(), GuestFailure> {
        let meter = Arc::clone(&instance.store.data().meter);
        meter.reset();
        instance.store.set_epoch_deadline(1);
        instance.served += 1;
        instance.store.data_mut().hooks.clock = Some(clock.clone());

        let mut http = instance.store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, ClientBody::wrap(request))
            .map_err(|e| GuestFailure::trap("incoming request", &e))?;
        let out = http
            .new_response_outparam_from_callback(move |response| {
                clock.stop();
                slot.send(response.map_err(|code| GuestFailure::ErrorCode(format!("{code:?}"))));
            })
            .map_err(|e| GuestFailure::trap("response outparam", &e))?;

        let handler = instance.proxy.wasi_http_incoming_handler();
        metered(
            Arc::clone(&meter),
            handler.call_handle(&mut instance.store, request, out),
        )
        .await
        .map_err(|e| {
            if meter.tripped() {
                GuestFailure::CpuLimit
            } else {
                GuestFailure::trap("handle", &e)
            }
        })
    }

    /// Keeps `instance` for the next request unless it is due for retirement.
    fn checkin(&self, mut instance: Instance) {
        if instance.served >= self.limits.max_requests {
            tracing::debug!(served = instance.served, "retiring edge instance");
            return;
        }
        let retained = instance.store.data_mut().table.iter_mut().count();
        if retained > MAX_RETAINED_RESOURCES {
            tracing::warn!(retained, "edge instance leaks host resources; retiring it");
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE {
            tracing::trace!(retained, served = instance.served, "edge instance idle");
            idle.push(instance);
        }
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
