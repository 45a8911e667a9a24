//! The `edgegate:durable-object` world on the host side: bindings, the
//! store data of an object instance, and the imports (storage, alarms,
//! WebSockets) over the class database and the socket table.
//!
//! Writes of the running event are buffered (reads see them) and handed to
//! the actor when the event ends; writes of earlier events stay visible
//! until their commit is confirmed. Messages and closes are buffered too:
//! they leave only after the event's writes are committed (the output
//! gate).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::ObjectKey;
use super::sockets::{MAX_ATTACHMENT_BYTES, ObjectSockets, Socket};
use super::store::{ClassStore, Stores, WriteOp};
use crate::cpu::CpuMeter;

// Synchronous both ways: the imports never wait, and events run to their
// end on the actor's thread without the cost of a fiber (and of a stack
// mapping per idle instance).
wasmtime::component::bindgen!({
    world: "durable-object",
    path: "../wit/durable-object.wit",
});

pub use edgegate::durable_object::types::{FetchOutcome, Message, Request, Response};
use edgegate::durable_object::{alarms, peers, storage, types, websockets};

/// Longest storage key.
const MAX_KEY_BYTES: usize = 2048;
/// Largest stored value.
const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;
/// Outgoing message bytes one event may buffer; beyond, `send-text` fails.
const MAX_EVENT_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// Prefix the component maps to "too large" errors.
const TOO_LARGE: &str = "too large: ";

/// The component linked against WASI and the world's imports.
pub fn pre(
    component: &wasmtime::component::Component,
) -> Result<DurableObjectPre<ObjectCtx>, wasmtime::Error> {
    let mut linker: Linker<ObjectCtx> = Linker::new(component.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    DurableObject::add_to_linker::<_, HasSelf<ObjectCtx>>(&mut linker, |ctx| ctx)?;
    DurableObjectPre::new(linker.instantiate_pre(component)?)
}

/// An output of an event, released after its writes are committed.
pub enum Effect {
    /// A text message for each of the sockets, one copy shared by them.
    Send(Vec<Arc<Socket>>, Utf8Bytes),
    /// A close on the object's initiative.
    Close(Arc<Socket>, u16, String),
    /// A message for the same object on the other hosts.
    Peer(String),
}

/// Writes whose commit is not confirmed yet, by event sequence number.
#[derive(Default)]
pub struct Pending {
    entries: HashMap<String, (u64, Option<Vec<u8>>)>,
    alarm: Option<(u64, Option<u64>)>,
    /// The committed alarm, once read or confirmed.
    committed_alarm: Option<Option<u64>>,
}

/// What the running event did.
#[derive(Default)]
struct EventState {
    writes: BTreeMap<String, Option<Vec<u8>>>,
    alarm: Option<Option<u64>>,
    effects: Vec<Effect>,
    output_bytes: usize,
    /// A write whose commit the outputs wait for (all but `put-unconfirmed`).
    gated: bool,
}

impl EventState {
    /// Buffers `text` for `sockets` (one copy, counted once against the
    /// event's output bound).
    fn send(&mut self, sockets: Vec<Arc<Socket>>, text: String) -> Result<(), String> {
        if self.output_bytes.saturating_add(text.len()) > MAX_EVENT_OUTPUT_BYTES {
            return Err("too many messages in one event".into());
        }
        if !sockets.is_empty() {
            self.output_bytes += text.len();
            self.effects.push(Effect::Send(sockets, text.into()));
        }
        Ok(())
    }
}

/// What an event leaves for the actor.
pub struct EventOutput {
    /// Writes to commit.
    pub ops: Vec<WriteOp>,
    /// The alarm as the event left it, if it changed it.
    pub alarm: Option<Option<u64>>,
    /// Messages and closes.
    pub effects: Vec<Effect>,
    /// Whether the outputs wait for the commit of `ops`; not when every
    /// write was `put-unconfirmed`.
    pub gated: bool,
}

/// The storage and socket side of one object, kept across instance resets.
pub struct ObjectIo {
    key: ObjectKey,
    stores: Arc<Stores>,
    store: Option<Arc<ClassStore>>,
    sockets: Arc<ObjectSockets>,
    pending: Pending,
    event: EventState,
    /// Whether the host links objects to other hosts.
    pub peers: bool,
}

impl ObjectIo {
    /// The I/O of `key`.
    pub fn new(key: ObjectKey, stores: Arc<Stores>, sockets: Arc<ObjectSockets>) -> ObjectIo {
        ObjectIo {
            key,
            stores,
            store: None,
            sockets,
            pending: Pending::default(),
            event: EventState::default(),
            peers: false,
        }
    }

    /// The object's socket table.
    pub fn sockets(&self) -> &Arc<ObjectSockets> {
        &self.sockets
    }

    /// The class database (opened on first use).
    pub fn store(&mut self) -> Result<Arc<ClassStore>, String> {
        if let Some(store) = &self.store {
            return Ok(Arc::clone(store));
        }
        let store = self
            .stores
            .class(&self.key.class)
            .map_err(|e| format!("storage unavailable: {e}"))?;
        self.store = Some(Arc::clone(&store));
        Ok(store)
    }

    /// Ends the running event: its writes join the pending ones under
    /// `seq`.
    pub fn finish_event(&mut self, seq: u64) -> EventOutput {
        let event = std::mem::take(&mut self.event);
        let mut ops = Vec::with_capacity(event.writes.len() + 1);
        for (key, value) in event.writes {
            ops.push(match &value {
                Some(v) => WriteOp::Put(key.clone(), v.clone()),
                None => WriteOp::Delete(key.clone()),
            });
            self.pending.entries.insert(key, (seq, value));
        }
        if let Some(alarm) = event.alarm {
            ops.push(match alarm {
                Some(at) => WriteOp::SetAlarm(at),
                None => WriteOp::DeleteAlarm,
            });
            self.pending.alarm = Some((seq, alarm));
        }
        EventOutput {
            ops,
            alarm: event.alarm,
            effects: event.effects,
            gated: event.gated,
        }
    }

    /// Forgets what the running event did (it failed).
    pub fn abort_event(&mut self) {
        self.event = EventState::default();
    }

    /// Writes up to `seq` are committed: reads go to the database for them.
    pub fn committed(&mut self, seq: u64) {
        if !self.pending.entries.is_empty() {
            self.pending.entries.retain(|_, (s, _)| *s > seq);
        }
        if let Some((s, alarm)) = self.pending.alarm
            && s <= seq
        {
            self.pending.committed_alarm = Some(alarm);
            self.pending.alarm = None;
        }
    }

    /// Forgets every uncommitted write (a commit failed).
    pub fn reset_pending(&mut self) {
        self.pending = Pending::default();
        self.event = EventState::default();
    }

    /// Sets the alarm for the running event.
    pub fn set_event_alarm(&mut self, at: Option<u64>) {
        self.event.alarm = Some(at);
        self.event.gated = true;
    }

    /// The alarm as this object currently sees it.
    pub fn current_alarm(&mut self) -> Option<u64> {
        if let Some(alarm) = self.event.alarm {
            return alarm;
        }
        if let Some((_, alarm)) = self.pending.alarm {
            return alarm;
        }
        if let Some(alarm) = self.pending.committed_alarm {
            return alarm;
        }
        let loaded = self
            .store()
            .and_then(|store| store.alarm(&self.key.name).map_err(|e| e.to_string()));
        match loaded {
            Ok(alarm) => {
                self.pending.committed_alarm = Some(alarm);
                alarm
            }
            Err(e) => {
                tracing::warn!(class = %self.key.class, name = %self.key.name, "reading the alarm failed: {e}");
                None
            }
        }
    }

    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(value) = self.event.writes.get(key) {
            return Ok(value.clone());
        }
        if let Some((_, value)) = self.pending.entries.get(key) {
            return Ok(value.clone());
        }
        let store = self.store()?;
        store
            .get(&self.key.name, key)
            .map_err(|e| format!("storage unavailable: {e}"))
    }

    fn write(&mut self, key: String, value: Option<Vec<u8>>) {
        self.event.writes.insert(key, value);
        self.event.gated = true;
    }

    /// A write the event's outputs do not wait for.
    fn write_unconfirmed(&mut self, key: String, value: Vec<u8>) {
        self.event.writes.insert(key, Some(value));
    }
}

fn check_entry(key: &str, value: Option<&[u8]>) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES || value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(format!("{TOO_LARGE}{key}"));
    }
    Ok(())
}

/// Store data of an object instance.
pub struct ObjectCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The CPU limit of the running event.
    pub meter: Arc<CpuMeter>,
    /// Storage and sockets.
    pub io: ObjectIo,
}

impl ObjectCtx {
    /// Data for a new instance: no environment, no files, stderr shared
    /// (panic messages).
    pub fn new(io: ObjectIo, meter: Arc<CpuMeter>, memory: u64) -> ObjectCtx {
        ObjectCtx {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(memory).unwrap_or(usize::MAX))
                .trap_on_grow_failure(false)
                .build(),
            meter,
            io,
        }
    }

    /// A store for a new instance, with the memory and CPU limits applied.
    pub fn store(engine: &Engine, ctx: ObjectCtx) -> wasmtime::Store<ObjectCtx> {
        let mut store = wasmtime::Store::new(engine, ctx);
        store.limiter(|ctx| &mut ctx.limits);
        store.epoch_deadline_callback(|ctx| ctx.data().meter.on_epoch_deadline_sync());
        store.set_epoch_deadline(1);
        store
    }
}

impl WasiView for ObjectCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for ObjectCtx {}

impl storage::Host for ObjectCtx {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        check_entry(&key, None)?;
        self.io.read(&key)
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        check_entry(&key, Some(&value))?;
        self.io.write(key, Some(value));
        Ok(())
    }

    fn put_unconfirmed(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        check_entry(&key, Some(&value))?;
        self.io.write_unconfirmed(key, value);
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<bool, String> {
        check_entry(&key, None)?;
        let existed = self.io.read(&key)?.is_some();
        self.io.write(key, None);
        Ok(existed)
    }

    fn list(&mut self, prefix: String) -> Result<Vec<(String, Vec<u8>)>, String> {
        let store = self.io.store()?;
        let committed = store
            .list(&self.io.key.name, &prefix)
            .map_err(|e| format!("storage unavailable: {e}"))?;
        let mut merged: BTreeMap<String, Option<Vec<u8>>> =
            committed.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (key, (_, value)) in &self.io.pending.entries {
            if key.starts_with(&prefix) {
                merged.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in self.io.event.writes.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            merged.insert(key.clone(), value.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn transaction(&mut self, ops: Vec<storage::Op>) -> Result<(), String> {
        // Every op is checked before any is applied: all or nothing.
        for op in &ops {
            match op {
                storage::Op::Put((key, value)) => check_entry(key, Some(value))?,
                storage::Op::Delete(key) => check_entry(key, None)?,
            }
        }
        for op in ops {
            match op {
                storage::Op::Put((key, value)) => self.io.write(key, Some(value)),
                storage::Op::Delete(key) => self.io.write(key, None),
            }
        }
        Ok(())
    }
}

impl alarms::Host for ObjectCtx {
    fn set_alarm(&mut self, at_ms: u64) {
        self.io.set_event_alarm(Some(at_ms));
    }

    fn get_alarm(&mut self) -> Option<u64> {
        self.io.current_alarm()
    }

    fn delete_alarm(&mut self) {
        self.io.set_event_alarm(None);
    }
}

impl peers::Host for ObjectCtx {
    fn enabled(&mut self) -> bool {
        self.io.peers
    }

    fn publish(&mut self, message: String) {
        if !self.io.peers {
            return;
        }
        // Counted with the event's socket output: one bound for both.
        let event = &mut self.io.event;
        if event.output_bytes.saturating_add(message.len()) > MAX_EVENT_OUTPUT_BYTES {
            tracing::warn!(class = %self.io.key.class, name = %self.io.key.name, "too much peer output in one event; message dropped");
            return;
        }
        event.output_bytes += message.len();
        event.effects.push(Effect::Peer(message));
    }
}

impl websockets::Host for ObjectCtx {
    fn get_websockets(&mut self, tag: Option<String>) -> Vec<u64> {
        self.io.sockets.open_ids(tag.as_deref())
    }

    fn send_text(&mut self, socket: u64, text: String) -> Result<(), String> {
        let Some(socket) = self.io.sockets.get(socket) else {
            return Err("no such socket".into());
        };
        if !socket.is_open() {
            return Err("socket is closed".into());
        }
        self.io.event.send(vec![socket], text)
    }

    fn send_text_many(&mut self, sockets: Vec<u64>, text: String) -> u32 {
        let sockets = self.io.sockets.open_among(&sockets);
        let open = u32::try_from(sockets.len()).unwrap_or(u32::MAX);
        match self.io.event.send(sockets, text) {
            Ok(()) => open,
            Err(why) => {
                tracing::warn!(class = %self.io.key.class, name = %self.io.key.name, "{why}; broadcast dropped");
                0
            }
        }
    }

    fn close(&mut self, socket: u64, code: u16, reason: String) {
        if let Some(socket) = self.io.sockets.get(socket) {
            self.io
                .event
                .effects
                .push(Effect::Close(socket, code, reason));
        }
    }

    fn tags(&mut self, socket: u64) -> Vec<String> {
        self.io
            .sockets
            .get(socket)
            .map(|s| s.tags.clone())
            .unwrap_or_default()
    }

    fn attachment(&mut self, socket: u64) -> Option<Vec<u8>> {
        self.io.sockets.get(socket).map(|s| s.attachment())
    }

    fn set_attachment(&mut self, socket: u64, value: Vec<u8>) -> Result<(), String> {
        if value.len() > MAX_ATTACHMENT_BYTES {
            return Err(format!("{TOO_LARGE}attachment"));
        }
        let Some(socket) = self.io.sockets.get(socket) else {
            return Err("no such socket".into());
        };
        socket.set_attachment(value);
        Ok(())
    }

    fn set_auto_response(&mut self, request: String, response: String) {
        self.io.sockets.set_auto_response(request, response);
    }
}
