//! One task per live object: it owns the object's instance and delivers
//! events one at a time from a bounded queue (the input gate). Each event's
//! writes go to the class writer; its response and messages are released,
//! in event order, only once those writes are committed (the output gate):
//! the writer thread releases them right after the commit. An event that
//! wrote nothing, or only `put-unconfirmed`, is released at once when
//! nothing is in flight, else after the events before it. Later events do
//! not wait for a commit: they see the pending writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use wasmtime::Store;

use super::host::{DurableObject, Effect, EventOutput, FetchOutcome, ObjectCtx, ObjectIo};
use super::store::StoreError;
use super::{Event, FetchReply, ObjectFailure, ObjectKey, Objects, Upgrade};
use crate::cpu::CpuMeter;

/// Commit progress, shared by the actor and the writer thread.
#[derive(Default)]
struct Progress {
    /// Highest event sequence number whose writes are committed.
    committed: AtomicU64,
    /// Highest instance generation whose writes failed to commit.
    failed_generation: AtomicU64,
    /// Commits handed to the writer and not done yet.
    in_flight: AtomicUsize,
    /// Signalled when `in_flight` drops to zero.
    drained: Notify,
}

/// A commit of the object's writes up to event `seq`.
struct Commit {
    key: ObjectKey,
    progress: Arc<Progress>,
    generation: u64,
    seq: u64,
}

impl Commit {
    /// Records the writer's answer, then lets `outputs` out when the writes
    /// are durable and no earlier commit of this instance failed, or fails
    /// them.
    fn settle(&self, committed: Result<(), StoreError>, outputs: Option<Outputs>) {
        let progress = &self.progress;
        let ok = match committed {
            Ok(()) => {
                progress.committed.fetch_max(self.seq, Ordering::AcqRel);
                progress.failed_generation.load(Ordering::Acquire) < self.generation
            }
            Err(e) => {
                let key = &self.key;
                tracing::error!(class = %key.class, name = %key.name, "commit failed: {e}");
                progress
                    .failed_generation
                    .fetch_max(self.generation, Ordering::AcqRel);
                false
            }
        };
        if let Some(outputs) = outputs {
            outputs.release(ok);
        }
    }
}

/// What an event lets out: its response, messages and alarm.
struct Outputs {
    objects: Arc<Objects>,
    key: ObjectKey,
    alarm: Option<Option<u64>>,
    effects: Vec<Effect>,
    reply: Option<(Reply, FetchReply)>,
}

impl Outputs {
    /// Lets the outputs out when `ok`, else fails the reply and drops the
    /// rest.
    fn release(self, ok: bool) {
        let Outputs {
            objects,
            key,
            alarm,
            effects,
            reply,
        } = self;
        if !ok {
            if let Some((reply, _)) = reply {
                let _ = reply.send(Err(ObjectFailure::Storage));
            }
            return;
        }
        if let Some(alarm) = alarm {
            objects.alarms.set(key.clone(), alarm);
        }
        for effect in effects {
            match effect {
                Effect::Send(sockets, text) => {
                    for socket in sockets {
                        let _ = socket.send_text(text.clone());
                    }
                }
                Effect::Close(socket, code, reason) => socket.close(code, &reason),
                Effect::Peer(message) => objects.publish_to_peers(&key, message),
            }
        }
        if let Some((reply, answer)) = reply {
            let _ = reply.send(Ok(answer));
        }
    }
}

type Reply = oneshot::Sender<Result<FetchReply, ObjectFailure>>;

struct Live {
    store: Store<ObjectCtx>,
    object: DurableObject,
}

/// The task of one object.
pub struct Actor {
    objects: Arc<Objects>,
    key: ObjectKey,
    /// The I/O side while there is no instance.
    io: Option<ObjectIo>,
    live: Option<Live>,
    /// Sequence number of the last event that wrote.
    seq: u64,
    /// Bumped when a commit failure resets the instance.
    generation: u64,
    progress: Arc<Progress>,
}

impl Actor {
    /// Starts the task of `key`, reading events from `events`.
    pub fn spawn(objects: Arc<Objects>, key: ObjectKey, events: mpsc::Receiver<Event>) {
        let progress = Arc::new(Progress::default());
        let mut io = ObjectIo::new(
            key.clone(),
            Arc::clone(&objects.stores),
            objects.sockets.of(&key),
        );
        io.peers = objects.has_peers();
        let actor = Actor {
            objects,
            key,
            io: Some(io),
            live: None,
            seq: 0,
            generation: 1,
            progress,
        };
        tokio::spawn(actor.run(events));
    }

    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let idle = self.objects.idle_timeout;
        // One timer for the actor's life, moved on only when it fires: a
        // timer per event would cost more than many events.
        let mut last_event = Instant::now();
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        self.handle(event).await;
                        last_event = Instant::now();
                    }
                    None => break,
                },
                _ = &mut timer => {
                    if last_event.elapsed() < idle {
                        timer.as_mut().reset(last_event + idle);
                        continue;
                    }
                    // Everything committed before anyone can start a new
                    // instance that reads storage.
                    self.barrier().await;
                    if self.objects.retire(&self.key, &events) {
                        break;
                    }
                    timer.as_mut().reset(Instant::now() + idle);
                }
            }
        }
        events.close();
        let mut leftovers = Vec::new();
        while let Ok(event) = events.try_recv() {
            leftovers.push(event);
        }
        self.barrier().await;
        let had_instance = self.live.is_some();
        drop(self.live.take());
        drop(self.io.take());
        self.objects.sockets.release(&self.key);
        if had_instance {
            crate::metrics::get().object_dropped();
            crate::metrics::get().object_evicted();
            tracing::debug!(class = %self.key.class, name = %self.key.name, "object evicted");
        }
        // Sent after the idle check: a new instance takes them.
        for event in leftovers {
            let objects = Arc::clone(&self.objects);
            let key = self.key.clone();
            tokio::spawn(async move { objects.send(&key, event).await });
        }
    }

    /// Waits until everything handled so far is committed and released.
    /// (`&mut`: the actor is `Send` but not `Sync`.)
    async fn barrier(&mut self) {
        loop {
            let drained = self.progress.drained.notified();
            if self.progress.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }

    async fn handle(&mut self, event: Event) {
        self.absorb_commits();
        if let Err(failure) = self.instantiate() {
            event.fail(failure, &self.objects);
            return;
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let meter = Arc::clone(&live.store.data().meter);
        meter.reset();
        live.store.set_epoch_deadline(1);
        let run = self.run_event(event);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match run {
            Ok(done) => {
                let output = {
                    let io = &mut live.store.data_mut().io;
                    let next = self.seq + 1;
                    let output = io.finish_event(next);
                    if !output.ops.is_empty() {
                        self.seq = next;
                    }
                    output
                };
                self.release_event(output, done);
            }
            Err((failure, reply)) => {
                live.store.data_mut().io.abort_event();
                let trapped = matches!(failure, ObjectFailure::Trap(_) | ObjectFailure::CpuLimit);
                if trapped {
                    tracing::warn!(
                        class = %self.key.class,
                        name = %self.key.name,
                        "object failed; resetting it: {failure}"
                    );
                    self.reset();
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Err(failure));
                }
            }
        }
    }

    /// Runs one event on the instance.
    /// A failure comes with the fetch's reply, if the event was a fetch.
    fn run_event(&mut self, event: Event) -> Result<Done, (ObjectFailure, Option<Reply>)> {
        let Some(live) = self.live.as_mut() else {
            event.fail(ObjectFailure::Unavailable, &self.objects);
            return Ok(Done::Nothing);
        };
        let meter = Arc::clone(&live.store.data().meter);
        let object = live.object.edgegate_durable_object_object();
        let store = &mut live.store;
        let failed = |e: wasmtime::Error| {
            if meter.tripped() {
                ObjectFailure::CpuLimit
            } else {
                ObjectFailure::Trap(format!("{:#}", e.root_cause()))
            }
        };
        match event {
            Event::Fetch {
                request,
                upgrade,
                reply,
            } => {
                let called = meter.run(|| object.call_fetch(&mut *store, &request));
                let outcome = match called {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        return Err((failed(e), Some(reply)));
                    }
                };
                match outcome {
                    FetchOutcome::Response(response) => {
                        Ok(Done::Reply(reply, Ok(FetchReply::Response(response))))
                    }
                    FetchOutcome::AcceptWebsocket(accept) => {
                        let answer = self.accept(upgrade, accept.tags, accept.attachment);
                        Ok(Done::Reply(reply, answer))
                    }
                }
            }
            Event::Message { socket, message } => {
                if store.data().io.sockets().get(socket).is_none() {
                    return Ok(Done::Nothing);
                }
                meter
                    .run(|| object.call_websocket_message(&mut *store, socket, &message))
                    .map_err(|e| (failed(e), None))?;
                Ok(Done::Nothing)
            }
            Event::Close {
                socket,
                code,
                reason,
            } => {
                let result = meter
                    .run(|| object.call_websocket_close(&mut *store, socket.id, code, &reason));
                // Forgotten whatever the object did with the event.
                self.objects.sockets.remove(&socket);
                result.map_err(|e| (failed(e), None))?;
                Ok(Done::Nothing)
            }
            Event::Peer { origin, message } => {
                meter
                    .run(|| object.call_peer_message(&mut *store, &origin, &message))
                    .map_err(|e| (failed(e), None))?;
                Ok(Done::Nothing)
            }
            Event::PeersLinked => {
                meter
                    .run(|| object.call_peers_linked(&mut *store))
                    .map_err(|e| (failed(e), None))?;
                Ok(Done::Nothing)
            }
            Event::Alarm => {
                let io = &mut store.data_mut().io;
                match io.current_alarm() {
                    Some(at) if at <= super::now_ms() => {}
                    // Replaced or cancelled since it was scheduled.
                    _ => return Ok(Done::Nothing),
                }
                // Cleared unless the handler sets it again.
                io.set_event_alarm(None);
                let key = self.key.clone();
                let retry = |objects: &Objects| objects.alarms.retry(key, super::now_ms());
                match meter.run(|| object.call_alarm(&mut *store)) {
                    Ok(Ok(())) => Ok(Done::Nothing),
                    Ok(Err(why)) => {
                        retry(&self.objects);
                        Err((ObjectFailure::Alarm(why), None))
                    }
                    Err(e) => {
                        retry(&self.objects);
                        Err((failed(e), None))
                    }
                }
            }
        }
    }

    /// Registers the socket the object accepted.
    fn accept(
        &mut self,
        upgrade: Option<Upgrade>,
        tags: Vec<String>,
        attachment: Vec<u8>,
    ) -> Result<FetchReply, ObjectFailure> {
        let Some(upgrade) = upgrade else {
            return Err(ObjectFailure::NotAnUpgrade);
        };
        let Some(live) = self.live.as_ref() else {
            return Err(ObjectFailure::Unavailable);
        };
        let table = live.store.data().io.sockets();
        match self.objects.sockets.accept(
            &upgrade.id,
            &self.key,
            table,
            tags,
            attachment,
            upgrade.max_message,
        ) {
            Some(socket) => Ok(FetchReply::Accepted(socket.id)),
            None => Err(ObjectFailure::UpgradeGone),
        }
    }

    /// Hands the event's writes to the writer, its outputs with them, or
    /// lets the outputs out now when they need not wait (nothing to commit
    /// or only unconfirmed writes) and nothing is in flight.
    fn release_event(&mut self, output: EventOutput, done: Done) {
        let EventOutput {
            ops,
            alarm,
            effects,
            gated,
        } = output;
        let reply = match done {
            Done::Reply(reply, Err(failure)) => {
                // Refused outright: nothing of it is released.
                let _ = reply.send(Err(failure));
                None
            }
            Done::Reply(reply, Ok(answer)) => Some((reply, answer)),
            Done::Nothing => None,
        };
        let outputs = Outputs {
            objects: Arc::clone(&self.objects),
            key: self.key.clone(),
            alarm,
            effects,
            reply,
        };
        // Outputs that need not wait go now when nothing is in flight;
        // otherwise they follow the commit in flight, released by the
        // writer thread, so that a busy object's thread is left to its
        // events (one hot key: 175k vs 158k decisions/s). Unconfirmed
        // writes commit after; reads see them meanwhile.
        let in_flight = self.progress.in_flight.load(Ordering::Acquire) > 0;
        let outputs = if in_flight || gated {
            Some(outputs)
        } else {
            outputs.release(true);
            if ops.is_empty() {
                return;
            }
            None
        };
        let commit = Commit {
            key: self.key.clone(),
            progress: Arc::clone(&self.progress),
            generation: self.generation,
            seq: self.seq,
        };
        let store = match self.live.as_mut() {
            Some(live) => live.store.data_mut().io.store(),
            None => Err("no instance".to_string()),
        };
        let store = match store {
            Ok(store) => store,
            Err(e) => {
                commit.settle(Err(StoreError::from_message(e)), outputs);
                return;
            }
        };
        self.progress.in_flight.fetch_add(1, Ordering::AcqRel);
        store.commit(
            &self.key.name,
            ops,
            Box::new(move |committed| {
                commit.settle(committed, outputs);
                let progress = &commit.progress;
                if progress.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                    progress.drained.notify_waiters();
                }
            }),
        );
    }

    /// Applies confirmed commits; after a failed commit, starts over from
    /// storage.
    fn absorb_commits(&mut self) {
        if self.progress.failed_generation.load(Ordering::Acquire) >= self.generation {
            tracing::warn!(class = %self.key.class, name = %self.key.name, "storage commit failed; resetting the object");
            self.reset();
            self.generation += 1;
            if let Some(io) = self.io.as_mut() {
                io.reset_pending();
            }
            return;
        }
        let committed = self.progress.committed.load(Ordering::Acquire);
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().io.committed(committed);
        } else if let Some(io) = self.io.as_mut() {
            io.committed(committed);
        }
    }

    /// Drops the instance; the next event creates a new one.
    fn reset(&mut self) {
        if let Some(live) = self.live.take() {
            crate::metrics::get().object_dropped();
            let mut io = live.store.into_data().io;
            io.abort_event();
            self.io = Some(io);
        }
    }

    fn instantiate(&mut self) -> Result<(), ObjectFailure> {
        if self.live.is_some() {
            return Ok(());
        }
        let Some(io) = self.io.take() else {
            return Err(ObjectFailure::Unavailable);
        };
        let started = Instant::now();
        let objects = &self.objects;
        let meter = CpuMeter::new(objects.limits.cpu);
        let ctx = ObjectCtx::new(io, Arc::clone(&meter), objects.limits.memory);
        let mut store = ObjectCtx::store(objects.pre.engine(), ctx);
        let created = meter.run(|| objects.pre.instantiate(&mut store));
        let object = match created {
            Ok(object) => object,
            Err(e) => {
                self.io = Some(store.into_data().io);
                return Err(if meter.tripped() {
                    ObjectFailure::CpuLimit
                } else {
                    ObjectFailure::Capacity(format!("{e:#}"))
                });
            }
        };
        let init = meter.run(|| {
            object.edgegate_durable_object_object().call_init(
                &mut store,
                &self.key.class,
                &self.key.name,
            )
        });
        match init {
            Ok(Ok(())) => {
                self.live = Some(Live { store, object });
                crate::metrics::get().object_created(started.elapsed());
                Ok(())
            }
            Ok(Err(why)) => {
                self.io = Some(store.into_data().io);
                Err(ObjectFailure::UnknownClass(why))
            }
            Err(e) => {
                self.io = Some(store.into_data().io);
                Err(ObjectFailure::Trap(format!("init: {:#}", e.root_cause())))
            }
        }
    }
}

/// How an event ended, besides its writes.
enum Done {
    Reply(Reply, Result<FetchReply, ObjectFailure>),
    Nothing,
}

impl Event {
    /// Answers a failed event: fetches get the failure, a failed close
    /// still forgets its socket.
    fn fail(self, failure: ObjectFailure, objects: &Objects) {
        match self {
            Event::Fetch { reply, .. } => {
                let _ = reply.send(Err(failure));
            }
            Event::Close { socket, .. } => objects.sockets.remove(&socket),
            Event::Alarm | Event::Message { .. } | Event::Peer { .. } | Event::PeersLinked => {}
        }
    }
}
