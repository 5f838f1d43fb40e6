//! The frame guard: WebSocket frame headers checked as the bytes arrive.
//!
//! actix-http's frame parser buffers a whole frame before it compares its length
//! with the limit, so a header declaring a gigabyte makes the node buffer whatever
//! the client streams after it. The guard sits between the socket's byte stream and
//! the WebSocket decoder and reads only the headers: a frame or fragmented message
//! that declares or reaches more than `limits.max_frame_bytes`, reserved bits, an
//! unknown opcode or a malformed control frame ends the stream at once, before the
//! payload is buffered. The session then reads the [`Violation`] to pick the close
//! code. Payload bytes are passed through untouched and never copied.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Why the guard cut a socket's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A frame, or the sum of a fragmented message, over the limit: close 1009.
    TooBig,
    /// Reserved bits, an unknown opcode, a fragmented or oversized control frame,
    /// or fragments out of order: close 1002.
    Protocol,
}

/// Where the session reads what the guard saw; one per socket, on one worker.
pub type ViolationCell = Rc<Cell<Option<Violation>>>;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Control frames carry at most 125 bytes (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The header scanner, independent of any stream so that it is easy to test.
#[derive(Debug)]
pub struct FrameScanner {
    limit: u64,
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Bytes of the fragmented data message in progress, if one is.
    message: Option<u64>,
}

impl FrameScanner {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
            header: [0; MAX_HEADER],
            header_len: 0,
            remaining: 0,
            message: None,
        }
    }

    /// Scans one chunk. `Err((n, violation))`: the first `n` bytes are whole,
    /// valid frames (or their start); the frame after them breaks the rules.
    pub fn scan(&mut self, chunk: &[u8]) -> Result<(), (usize, Violation)> {
        let mut at = 0;
        while at < chunk.len() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len() - at);
                at += skip;
                self.remaining -= skip as u64;
                continue;
            }
            let frame_start = at.saturating_sub(self.header_len);
            self.header[self.header_len] = chunk[at];
            self.header_len += 1;
            at += 1;
            match self.header_complete() {
                None => {}
                Some(Ok(length)) => {
                    self.header_len = 0;
                    self.remaining = length;
                }
                Some(Err(violation)) => return Err((frame_start, violation)),
            }
        }
        Ok(())
    }

    /// `None` while more header bytes are needed; else the payload length, or the
    /// rule the header breaks.
    fn header_complete(&mut self) -> Option<Result<u64, Violation>> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return None;
        }
        let (first, second) = (h[0], h[1]);
        if h.len() == 2 {
            // Checked as soon as they are known, before waiting for the rest.
            if let Err(v) = self.check_first_byte(first, second & 0x7f) {
                return Some(Err(v));
            }
        }
        let ext = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        if h.len() < 2 + ext + mask {
            return None;
        }
        let length = match ext {
            0 => u64::from(second & 0x7f),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&h[2..10]);
                u64::from_be_bytes(bytes)
            }
        };
        Some(self.admit(first, length))
    }

    fn check_first_byte(&self, first: u8, short_len: u8) -> Result<(), Violation> {
        if first & 0x70 != 0 {
            return Err(Violation::Protocol);
        }
        let opcode = first & 0x0f;
        let fin = first & 0x80 != 0;
        match opcode {
            0..=2 => Ok(()),
            8..=10 if fin && u64::from(short_len) <= MAX_CONTROL_PAYLOAD => Ok(()),
            _ => Err(Violation::Protocol),
        }
    }

    /// Accounts a complete header against the limit and the fragment order.
    fn admit(&mut self, first: u8, length: u64) -> Result<u64, Violation> {
        let fin = first & 0x80 != 0;
        match first & 0x0f {
            0 => {
                let total = self
                    .message
                    .ok_or(Violation::Protocol)?
                    .saturating_add(length);
                if total > self.limit {
                    return Err(Violation::TooBig);
                }
                self.message = (!fin).then_some(total);
            }
            1 | 2 => {
                if self.message.is_some() {
                    return Err(Violation::Protocol);
                }
                if length > self.limit {
                    return Err(Violation::TooBig);
                }
                self.message = (!fin).then_some(length);
            }
            _ => {}
        }
        Ok(length)
    }
}

/// A socket's byte stream behind the [`FrameScanner`].
pub struct FrameGuard<S> {
    inner: S,
    scanner: FrameScanner,
    seen: ViolationCell,
    /// The violation to report once the valid bytes before it have been passed on.
    pending: Option<Violation>,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, limit: usize) -> (Self, ViolationCell) {
        let seen = ViolationCell::default();
        let guard = Self {
            inner,
            scanner: FrameScanner::new(limit),
            seen: Rc::clone(&seen),
            pending: None,
        };
        (guard, seen)
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(violation) = this.pending.take() {
            this.seen.set(Some(violation));
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        if this.seen.get().is_some() {
            // Nothing after a violation is read: the client's bytes stay in the
            // kernel and the socket is closed.
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => match this.scanner.scan(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err((valid, violation)) if valid > 0 => {
                    chunk.truncate(valid);
                    this.pending = Some(violation);
                    Poll::Ready(Some(Ok(chunk)))
                }
                Err((_, violation)) => {
                    this.seen.set(Some(violation));
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header with the given first byte and length.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(first: u8, len: usize) -> Vec<u8> {
        let mut f = header(first, len as u64);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_chunking() {
        let mut bytes = frame(0x81, 100);
        bytes.extend(frame(0x89, 4));
        bytes.extend(frame(0x01, 300));
        bytes.extend(frame(0x80, 600));
        for size in [1, 3, 7, 64, bytes.len()] {
            let mut scanner = FrameScanner::new(1000);
            for chunk in bytes.chunks(size) {
                assert_eq!(scanner.scan(chunk), Ok(()), "chunk size {size}");
            }
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_from_the_header_alone() {
        for len in [1001, 1 << 30, (1 << 63) - 1, u64::MAX] {
            let mut scanner = FrameScanner::new(1000);
            assert_eq!(
                scanner.scan(&header(0x81, len)),
                Err((0, Violation::TooBig)),
                "{len}"
            );
        }
    }

    #[test]
    fn a_fragmented_message_may_not_sum_past_the_limit() {
        let mut scanner = FrameScanner::new(1000);
        let mut bytes = frame(0x01, 600);
        let first = bytes.len();
        bytes.extend(header(0x80, 401));
        assert_eq!(scanner.scan(&bytes), Err((first, Violation::TooBig)));
    }

    #[test]
    fn protocol_breaches_are_refused() {
        let cases: [Vec<u8>; 5] = [
            header(0xC1, 1),   // RSV1 without an extension
            header(0x83, 1),   // reserved opcode
            header(0x09, 1),   // fragmented ping
            header(0x89, 200), // control frame over 125 bytes
            header(0x80, 1),   // continuation with no message
        ];
        for bytes in cases {
            let mut scanner = FrameScanner::new(1000);
            assert_eq!(
                scanner.scan(&bytes),
                Err((0, Violation::Protocol)),
                "{bytes:02x?}"
            );
        }
        let mut scanner = FrameScanner::new(1000);
        let mut bytes = frame(0x01, 10);
        let first = bytes.len();
        bytes.extend(frame(0x81, 10)); // a new message inside a fragmented one
        assert_eq!(scanner.scan(&bytes), Err((first, Violation::Protocol)));
    }

    #[test]
    fn the_stream_passes_valid_frames_then_reports() {
        let mut bytes = frame(0x81, 5);
        let valid = bytes.len();
        bytes.extend(header(0x81, 1 << 40));
        let inner = futures_util::stream::iter(vec![Ok(Bytes::from(bytes))]);
        let (mut guard, seen) = FrameGuard::new(inner, 1000);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut next = || Pin::new(&mut guard).poll_next(&mut cx);
        assert!(matches!(next(), Poll::Ready(Some(Ok(b))) if b.len() == valid));
        assert_eq!(seen.get(), None);
        assert!(matches!(next(), Poll::Ready(Some(Err(_)))));
        assert_eq!(seen.get(), Some(Violation::TooBig));
        assert!(matches!(next(), Poll::Ready(None)));
    }
}
