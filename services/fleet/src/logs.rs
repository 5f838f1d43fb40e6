//! Where the fleet's processes write their output.

use std::path::PathBuf;
use std::process::Stdio;

use crate::FleetError;

/// Where a fleet's node and Redis output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Logs {
    /// Nowhere: expected faults (a killed Redis) make nodes log warnings that
    /// would bury a test's own output.
    #[default]
    Discard,
    /// To the launcher's stderr.
    Inherit,
    /// One file per process in this directory: `<node id>.log`, `redis-<port>.log`.
    Dir(PathBuf),
}

impl Logs {
    /// [`Logs::Inherit`] when `FLEET_NODE_LOGS` is set, else [`Logs::Discard`].
    pub fn from_env() -> Logs {
        if std::env::var_os("FLEET_NODE_LOGS").is_some() {
            Logs::Inherit
        } else {
            Logs::Discard
        }
    }

    /// stdout and stderr for a process whose log file would be `name.log`.
    pub(crate) fn streams(&self, name: &str) -> Result<(Stdio, Stdio), FleetError> {
        match self {
            Logs::Discard => Ok((Stdio::null(), Stdio::null())),
            Logs::Inherit => Ok((Stdio::null(), Stdio::inherit())),
            Logs::Dir(dir) => {
                let path = dir.join(format!("{name}.log"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| FleetError::io(format!("log file {}", path.display()), e))?;
                let copy = file
                    .try_clone()
                    .map_err(|e| FleetError::io(format!("log file {}", path.display()), e))?;
                Ok((Stdio::from(file), Stdio::from(copy)))
            }
        }
    }
}
