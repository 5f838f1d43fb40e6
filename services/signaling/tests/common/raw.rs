//! A WebSocket client that writes whatever bytes a test asks for: the frames a
//! well-behaved library refuses to send (declared lengths it never sends, reserved
//! bits, invalid UTF-8), over a plain TCP socket with a hand-made handshake.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The 4-byte mask every client frame carries; its value does not matter.
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

pub struct RawSocket {
    stream: TcpStream,
    /// Bytes read past the handshake, not yet parsed into frames.
    buffered: Vec<u8>,
}

/// A frame from the node (never masked).
#[derive(Debug)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// The upgrade's HTTP status, and the socket when it was 101.
pub async fn upgrade(port: u16, origin: Option<&str>) -> (u16, Option<RawSocket>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("handshake answered")
            .expect("reads");
        assert_eq!(n, 1, "connection closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let socket = (status == 101).then_some(RawSocket {
        stream,
        buffered: Vec::new(),
    });
    (status, socket)
}

/// A masked client frame: `first` is FIN, RSV and opcode; `declared` overrides
/// the length in the header (to lie about it).
pub fn frame(first: u8, payload: &[u8], declared: Option<u64>) -> Vec<u8> {
    let len = declared.unwrap_or(payload.len() as u64);
    let mut out = vec![first];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

pub fn text(payload: &str) -> Vec<u8> {
    frame(0x81, payload.as_bytes(), None)
}

impl RawSocket {
    /// Writes bytes; false once the node has stopped taking them (closed, or
    /// its receive window stayed full for a second).
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Writes what fits within `wait`, for streams the node may stop reading.
    pub async fn write_for(&mut self, bytes: &[u8], wait: Duration) {
        tokio::time::timeout(wait, self.stream.write_all(bytes))
            .await
            .ok();
    }

    /// The next frame, or None when the socket closed or nothing came in `wait`.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<ServerFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse(&self.buffered) {
                self.buffered.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buffered.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the close frame; its code (None: closed without one).
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        while let Some(frame) = self.next_frame(wait).await {
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
        None
    }

    /// The next text frame's JSON, skipping pings.
    pub async fn next_json(&mut self, wait: Duration) -> Option<serde_json::Value> {
        while let Some(frame) = self.next_frame(wait).await {
            match frame.opcode {
                1 => return serde_json::from_slice(&frame.payload).ok(),
                8 => return None,
                _ => continue,
            }
        }
        None
    }
}

fn parse(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (mut at, len) = match buf[1] & 0x7f {
        126 => (
            4,
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (10, u64::from_be_bytes(bytes))
        }
        n => (2, u64::from(n)),
    };
    let len = usize::try_from(len).ok()?;
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    Some((
        ServerFrame {
            opcode: buf[0] & 0x0f,
            payload,
        },
        at,
    ))
}
