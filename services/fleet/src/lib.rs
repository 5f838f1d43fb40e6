//! Starts a Video Caller fleet on loopback, for tests and scripts in any
//! language: a Redis of its own (one standalone `redis-server` or a
//! three-shard Redis Cluster), or none, and N signaling nodes, each on a free
//! port, each given exactly the `VC_*` settings asked for. Everything it
//! starts is killed when the value that owns it is dropped, and (on Linux)
//! when the launching process dies.
//!
//! Rust tests use the library ([`Fleet`], or [`Redis`] and [`Node`] on their
//! own); everything else runs the `vc-fleet` binary, which prints the fleet's
//! addresses as one JSON line and takes commands on stdin (docs/testing.md,
//! "One fleet launcher").
//!
//! ```no_run
//! use vc_fleet::{Backing, Fleet, Logs, NodeSpec, RedisChoice};
//! # fn main() -> Result<(), vc_fleet::FleetError> {
//! let nodes = ["a", "b"].map(|id| NodeSpec::new(id, "target/debug/vc-signaling").set("VC_RESUME__WINDOW", "3s"));
//! let mut fleet = Fleet::start(RedisChoice::Own { backing: Backing::Standalone, port: None }, nodes.into(), Logs::Discard)?;
//! println!("{}", fleet.nodes[0].ws_url());
//! fleet.nodes[1].kill();
//! # Ok(())
//! # }
//! ```

mod child;
pub mod control;
mod error;
mod fleet;
mod logs;
mod node;
mod probe;
mod redis;

pub use error::FleetError;
pub use fleet::{Description, Fleet, NodeDescription, RedisChoice, RedisDescription};
pub use logs::Logs;
pub use node::{Node, NodeSpec, Readiness};
pub use probe::{free_port, wait_until};
pub use redis::{Backing, Data, Redis};
