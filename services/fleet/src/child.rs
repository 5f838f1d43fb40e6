//! One spawned process that cannot outlive its launcher: killed when dropped,
//! in a process group of its own (a terminal's Ctrl-C reaches the launcher,
//! which stops everything in order), and on Linux sent SIGKILL by the kernel
//! when the launcher dies without cleaning up.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::FleetError;

/// A running child process, SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Owned {
    child: Child,
    exited: Option<ExitStatus>,
}

impl Owned {
    /// Starts `command`; `hint` is appended when the program cannot run.
    pub fn spawn(command: &mut Command, hint: &'static str) -> Result<Owned, FleetError> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let launcher = std::process::id();
            // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The launcher died before the line above took effect.
                    if libc::getppid() as u32 != launcher {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(|source| FleetError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            hint,
            source,
        })?;
        Ok(Owned {
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited (reaping it), without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub fn signal(&self, signal: libc::c_int) {
        if self.exited.is_none() {
            // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot
            // have been reused.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.child.kill().ok();
            self.exited = self.child.wait().ok();
        }
        self.exited
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_for(grace).or_else(|| self.kill())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How an exit status reads in messages and JSON: `0`, `1`, `SIGKILL`…
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(libc::SIGKILL)) => "SIGKILL".into(),
        (None, Some(libc::SIGTERM)) => "SIGTERM".into(),
        (None, Some(libc::SIGINT)) => "SIGINT".into(),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown".into(),
    }
}

pub(crate) fn exited(what: &str, status: ExitStatus) -> FleetError {
    FleetError::Exited {
        what: what.to_owned(),
        status: describe(status),
    }
}
