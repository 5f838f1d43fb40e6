//! The Video Caller signaling node.
//!
//! Where a message goes, module by module: it enters at [`routes::ws`], is read
//! and checked by its [`session`], applied by [`rooms`] (seats in [`presence`]),
//! published as an [`envelope`] through the [`publisher`] onto the [`bus`], and
//! delivered to the receiving socket's [`outbox`] by the [`router`] of whichever
//! node holds it. `docs/architecture.md` tells the story.

pub mod allocator;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod envelope;
#[cfg(test)]
pub mod faults;
pub mod frame_guard;
#[doc(hidden)]
pub mod fuzzing;
pub mod held_seats;
pub mod ice;
pub mod ids;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod outage_queue;
pub mod outbox;
pub mod presence;
pub mod publisher;
pub mod ratelimit;
pub mod redis_backend;
pub mod rooms;
pub mod router;
pub mod routes;
pub mod seat_timers;
pub mod session;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod vocabulary;
