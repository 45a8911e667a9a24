//! The open-file limit. `edgegate serve` holds a descriptor for every client
//! connection, WebSocket and upstream connection, so it raises its soft
//! `RLIMIT_NOFILE` to the hard limit at start (as nginx's
//! `worker_rlimit_nofile` does) rather than refusing connections at the
//! usual soft default of 1024.

/// Why the limit could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// Reading the current limits failed.
    #[error("getrlimit(RLIMIT_NOFILE): {0}")]
    Get(std::io::Error),
    /// Setting the soft limit to the hard one (the number) failed.
    #[error("setrlimit(RLIMIT_NOFILE) to {0}: {1}")]
    Set(u64, std::io::Error),
}

/// The soft and hard open-file limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// What the process may open now.
    pub soft: u64,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one; logs the outcome (a
/// warning on failure, since serving still works up to the old limit).
pub fn raise_nofile_limit() {
    match raise_nofile() {
        Ok(limit) => tracing::debug!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit; the limits after.
pub fn raise_nofile() -> Result<NofileLimit, RlimitError> {
    let mut limit = get()?;
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(NofileLimit::from(limit));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid, initialised rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(RlimitError::Set(NofileLimit::from(limit).hard, error));
    }
    nofile()
}

/// The current open-file limits.
pub fn nofile() -> Result<NofileLimit, RlimitError> {
    get().map(NofileLimit::from)
}

fn get() -> Result<libc::rlimit, RlimitError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(RlimitError::Get(std::io::Error::last_os_error()));
    }
    Ok(limit)
}

impl From<libc::rlimit> for NofileLimit {
    fn from(limit: libc::rlimit) -> Self {
        NofileLimit {
            soft: limit.rlim_cur,
            hard: limit.rlim_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        // Start below the hard limit (one less: harmless to tests running
        // alongside), so the call has something to raise.
        let mut lowered = get().unwrap();
        lowered.rlim_cur = lowered.rlim_max.saturating_sub(1);
        // SAFETY: `lowered` is a valid, initialised rlimit that outlives the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        assert!(nofile().unwrap().soft < nofile().unwrap().hard);
        let raised = raise_nofile().unwrap();
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(nofile().unwrap(), raised);
    }
}
