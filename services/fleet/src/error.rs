//! What can go wrong while starting or steering a fleet.

use std::time::Duration;

/// A fleet operation that did not work out; the message says what to install
/// or where to look.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A program could not be started at all (missing, not executable).
    #[error("cannot run {program}: {source}{hint}")]
    Spawn {
        program: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Something the launcher needs from the system failed (a temp dir, a port).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A condition did not hold within its limit.
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout { what: String, limit: Duration },
    /// A process ended while it was expected to keep running, or ended badly.
    #[error("{what} exited ({status})")]
    Exited { what: String, status: String },
    /// `redis-cli --cluster create` refused.
    #[error("redis-cli --cluster create failed: {0}")]
    ClusterCreate(String),
    /// No node of that id in this fleet.
    #[error("no node {0} in this fleet")]
    UnknownNode(String),
    /// The fleet runs without a Redis of its own.
    #[error("this fleet has no Redis of its own")]
    NoRedis,
    /// A `--set` or control line that does not parse.
    #[error("{0}")]
    Usage(String),
}

impl FleetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> FleetError {
        FleetError::Io {
            what: what.into(),
            source,
        }
    }
}
