//! Durable Object storage: one SQLite database per class
//! (`<dir>/<class>.sqlite`, WAL), holding every object's key-value entries
//! and its alarm.
//!
//! Writes arrive as one [`Batch`] per event and go to the class's writer
//! thread, which commits whatever batches are waiting in a single
//! transaction (group commit): many objects, and many events of one hot
//! object, share a commit. Reads use a small pool of separate connections;
//! WAL lets them run beside the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// Batches committed together at most.
const MAX_GROUP: usize = 4096;
/// Read connections kept per class.
const MAX_IDLE_READERS: usize = 4;
/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A storage failure (SQLite, or the writer thread is gone).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this message.
    pub fn from_message(message: String) -> StoreError {
        StoreError(message)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// One write of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Store a value.
    Put(String, Vec<u8>),
    /// Remove a key.
    Delete(String),
    /// Schedule the alarm at this Unix time in milliseconds.
    SetAlarm(u64),
    /// Cancel the alarm.
    DeleteAlarm,
}

/// Called on the writer thread once a batch is committed (or failed).
pub type OnCommit = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The writes of one event of one object, committed atomically.
pub struct Batch {
    object: Arc<str>,
    ops: Vec<WriteOp>,
    done: OnCommit,
}

/// The database of one class.
pub struct ClassStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: mpsc::Sender<Batch>,
}

impl ClassStore {
    /// Opens (creating it if needed) the database at `path` and starts its
    /// writer thread.
    pub fn open(path: &Path) -> Result<ClassStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never wait for the writer. NORMAL: a commit is
        // durable against a crash of this process (the OS has it); only an
        // OS crash or power loss can lose the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints (which fsync) every ~40 MiB of log rather than every
        // 4 MiB: writes spread over many objects dirty many pages per
        // commit. The log file is cut back to 64 MiB after a checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                 object TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (object, key)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS alarms (
                 object TEXT PRIMARY KEY,
                 at_ms INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )?;
        let (writer, batches) = mpsc::channel();
        let name = format!(
            "edgegate-db-{}",
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("objects")
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_loop(conn, batches))
            .map_err(|e| StoreError(format!("starting the writer thread: {e}")))?;
        Ok(ClassStore {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer,
        })
    }

    /// Queues `ops` of `object` for the next group commit; `done` runs on
    /// the writer thread once they are committed (or failed), after the
    /// `done` of every batch queued before. Empty batches only keep that
    /// order.
    pub fn commit(&self, object: &Arc<str>, ops: Vec<WriteOp>, done: OnCommit) {
        let batch = Batch {
            object: Arc::clone(object),
            ops,
            done,
        };
        if let Err(mpsc::SendError(batch)) = self.writer.send(batch) {
            (batch.done)(Err(StoreError("the writer thread stopped".into())));
        }
    }

    /// The committed value of `key`.
    pub fn get(&self, object: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM kv WHERE object = ?1 AND key = ?2")?
                .query_row(params![object, key], |row| row.get(0))
                .optional()
        })
    }

    /// Committed entries whose key starts with `prefix`, in key order.
    pub fn list(&self, object: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|conn| {
            // Keys compare bytewise (BINARY collation), so the entries with
            // the prefix are a contiguous range starting at it.
            let mut statement = conn.prepare_cached(
                "SELECT key, value FROM kv WHERE object = ?1 AND key >= ?2 ORDER BY key",
            )?;
            let mut rows = statement.query(params![object, prefix])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if !key.starts_with(prefix) {
                    break;
                }
                out.push((key, row.get(1)?));
            }
            Ok(out)
        })
    }

    /// The committed alarm of `object`.
    pub fn alarm(&self, object: &str) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT at_ms FROM alarms WHERE object = ?1")?
                .query_row(params![object], |row| row.get::<_, i64>(0))
                .optional()
                .map(|at| at.map(|at| u64::try_from(at).unwrap_or(0)))
        })
    }

    /// Every committed alarm (to schedule them at start-up).
    pub fn alarms(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached("SELECT object, at_ms FROM alarms")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            rows.map(|r| r.map(|(object, at)| (object, u64::try_from(at).unwrap_or(0))))
                .collect()
        })
    }

    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.lock_readers().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn
            }
        };
        let result = query(&conn);
        let mut readers = self.lock_readers();
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        Ok(result?)
    }

    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer thread: commits waiting batches together until every sender
/// is gone.
fn write_loop(mut conn: Connection, batches: mpsc::Receiver<Batch>) {
    while let Ok(first) = batches.recv() {
        // Let the event loop run first if it shares this core: it queues
        // more batches, so one commit (and one wake-up of this thread)
        // serves more events. Measured: 15% less CPU per rate-limited
        // request with the gateway on one core (docs/BENCHMARKS.md).
        std::thread::yield_now();
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match batches.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }
        let result = if group.iter().all(|b| b.ops.is_empty()) {
            Ok(())
        } else {
            apply(&mut conn, &group).map_err(StoreError::from)
        };
        if let Err(e) = &result {
            tracing::error!(batches = group.len(), "object storage commit failed: {e}");
        }
        for batch in group {
            (batch.done)(result.clone());
        }
    }
}

fn apply(conn: &mut Connection, group: &[Batch]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO kv (object, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (object, key) DO UPDATE SET value = excluded.value",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM kv WHERE object = ?1 AND key = ?2")?;
        let mut set_alarm = tx.prepare_cached(
            "INSERT INTO alarms (object, at_ms) VALUES (?1, ?2)
             ON CONFLICT (object) DO UPDATE SET at_ms = excluded.at_ms",
        )?;
        let mut delete_alarm = tx.prepare_cached("DELETE FROM alarms WHERE object = ?1")?;
        for batch in group {
            let object: &str = &batch.object;
            for op in &batch.ops {
                match op {
                    WriteOp::Put(key, value) => put.execute(params![object, key, value])?,
                    WriteOp::Delete(key) => delete.execute(params![object, key])?,
                    WriteOp::SetAlarm(at) => set_alarm
                        .execute(params![object, i64::try_from(*at).unwrap_or(i64::MAX)])?,
                    WriteOp::DeleteAlarm => delete_alarm.execute(params![object])?,
                };
            }
        }
    }
    tx.commit()
}

/// The class databases under one directory, opened on first use.
pub struct Stores {
    dir: PathBuf,
    classes: Mutex<HashMap<Arc<str>, Arc<ClassStore>>>,
}

impl Stores {
    /// Databases under `dir` (created when the first one is opened).
    pub fn new(dir: PathBuf) -> Stores {
        Stores {
            dir,
            classes: Mutex::new(HashMap::new()),
        }
    }

    /// The database of `class`.
    pub fn class(&self, class: &Arc<str>) -> Result<Arc<ClassStore>, StoreError> {
        let mut classes = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = classes.get(class) {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(ClassStore::open(&self.dir.join(format!("{class}.sqlite")))?);
        classes.insert(Arc::clone(class), Arc::clone(&store));
        Ok(store)
    }

    /// Classes that have a database already (to reschedule their alarms).
    pub fn existing_classes(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut classes: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let class = name.strip_suffix(".sqlite")?;
                super::valid_class(class).then(|| class.to_string())
            })
            .collect();
        classes.sort();
        classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edgegate-store-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn commit(store: &ClassStore, object: &Arc<str>, ops: Vec<WriteOp>) {
        let (tx, rx) = std::sync::mpsc::channel();
        store.commit(object, ops, Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap();
    }

    #[test]
    fn batches_commit_and_read_back() {
        let dir = temp_dir("rw");
        let stores = Stores::new(dir.clone());
        let class: Arc<str> = Arc::from("counter");
        let store = stores.class(&class).unwrap();
        let a: Arc<str> = Arc::from("a");
        commit(
            &store,
            &a,
            vec![
                WriteOp::Put("k1".into(), b"1".to_vec()),
                WriteOp::Put("k2".into(), b"2".to_vec()),
                WriteOp::Put("other".into(), b"3".to_vec()),
                WriteOp::SetAlarm(42),
            ],
        );
        commit(&store, &a, vec![WriteOp::Delete("k2".into())]);
        assert_eq!(store.get("a", "k1").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("a", "k2").unwrap(), None);
        assert_eq!(store.get("b", "k1").unwrap(), None);
        let listed = store.list("a", "k").unwrap();
        assert_eq!(listed, vec![("k1".to_string(), b"1".to_vec())]);
        assert_eq!(store.alarm("a").unwrap(), Some(42));
        assert_eq!(store.alarms().unwrap(), vec![("a".to_string(), 42)]);
        assert_eq!(stores.existing_classes(), vec!["counter".to_string()]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
