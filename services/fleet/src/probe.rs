//! Looking at the outside of processes: free ports, open ports, `/readyz`, and
//! polling until something holds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::FleetError;

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, FleetError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| FleetError::io("no free loopback port", e))
}

/// Whether something accepts TCP connections on `host:port`.
pub fn accepts(host: &str, port: u16) -> bool {
    TcpStream::connect((host, port)).is_ok()
}

/// GET /readyz over plain HTTP: `Some(true)` ready, `Some(false)` not ready,
/// `None` unreachable.
pub fn ready(host: &str, port: u16) -> Option<bool> {
    let mut stream = TcpStream::connect((host, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.starts_with("HTTP/1.1 200"))
}

/// Polls `condition` every 50 ms until it holds, or fails naming `what`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> Result<bool, FleetError>,
) -> Result<(), FleetError> {
    let start = Instant::now();
    while !condition()? {
        if start.elapsed() >= limit {
            return Err(FleetError::Timeout {
                what: what.to_owned(),
                limit,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
