//! A whole fleet: its Redis (or none, or someone else's) and its nodes, and
//! the description of it that the binary prints.

use std::time::Duration;

use serde::Serialize;

use crate::{Backing, Data, FleetError, Node, NodeSpec, Redis};

/// Which Redis the nodes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisChoice {
    /// None: each node runs on its in-process bus.
    None,
    /// One of the fleet's own, on this port or a free one.
    Own { backing: Backing, port: Option<u16> },
    /// One that runs already (a standalone server at this URL).
    External(String),
}

/// Redis and nodes, stopped together when dropped.
#[derive(Debug)]
pub struct Fleet {
    pub redis: Option<Redis>,
    external_redis: Option<String>,
    pub nodes: Vec<Node>,
}

impl Fleet {
    /// Starts the Redis, then every node (each pointed at it), in order.
    pub fn start(
        redis: RedisChoice,
        nodes: Vec<NodeSpec>,
        logs: crate::Logs,
    ) -> Result<Fleet, FleetError> {
        let (own, external) = match redis {
            RedisChoice::None => (None, None),
            RedisChoice::Own { backing, port } => {
                (Some(Redis::start_with(backing, port, logs)?), None)
            }
            RedisChoice::External(url) => (None, Some(url)),
        };
        let redis_env = match (&own, &external) {
            (Some(redis), _) => redis.node_env(),
            (None, Some(url)) => vec![("VC_REDIS__URL".to_owned(), url.clone())],
            (None, None) => Vec::new(),
        };
        let mut fleet = Fleet {
            redis: own,
            external_redis: external,
            nodes: Vec::with_capacity(nodes.len()),
        };
        for mut spec in nodes {
            // The Redis settings first: the spec's own may override them.
            let mut env = redis_env.clone();
            env.append(&mut spec.env);
            spec.env = env;
            fleet.nodes.push(Node::start(spec)?);
        }
        Ok(fleet)
    }

    pub fn node(&self, id: &str) -> Result<&Node, FleetError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| FleetError::UnknownNode(id.to_owned()))
    }

    pub fn node_mut(&mut self, id: &str) -> Result<&mut Node, FleetError> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| FleetError::UnknownNode(id.to_owned()))
    }

    pub fn redis_mut(&mut self) -> Result<&mut Redis, FleetError> {
        self.redis.as_mut().ok_or(FleetError::NoRedis)
    }

    /// Kills and restarts the fleet's Redis with or without its keys.
    pub fn restart_redis(&mut self, data: Data) -> Result<(), FleetError> {
        self.redis_mut()?.restart(data)
    }

    /// Stops every node with SIGTERM (SIGKILL after `grace`), then Redis.
    pub fn stop(&mut self, grace: Duration) {
        for node in &mut self.nodes {
            node.terminate();
        }
        for node in &mut self.nodes {
            node.stop(grace);
        }
        if let Some(redis) = &mut self.redis {
            redis.kill();
        }
    }

    /// What runs where, as the binary prints it.
    pub fn describe(&self) -> Description {
        let redis = match (&self.redis, &self.external_redis) {
            (Some(redis), _) => Some(RedisDescription {
                mode: Some(redis.backing()),
                url: redis.url(),
                ports: redis.ports().to_vec(),
                pids: redis.pids(),
            }),
            (None, Some(url)) => Some(RedisDescription {
                mode: None,
                url: url.clone(),
                ports: Vec::new(),
                pids: Vec::new(),
            }),
            (None, None) => None,
        };
        Description {
            redis,
            nodes: self.nodes.iter().map(NodeDescription::of).collect(),
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Nodes first, so that none sees its Redis vanish; SIGKILL is enough.
        self.nodes.clear();
        self.redis = None;
    }
}

/// The fleet's addresses, one JSON object.
#[derive(Debug, Serialize)]
pub struct Description {
    pub redis: Option<RedisDescription>,
    pub nodes: Vec<NodeDescription>,
}

#[derive(Debug, Serialize)]
pub struct RedisDescription {
    /// `standalone` or `cluster`; absent for a Redis the fleet does not own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Backing>,
    /// The seed URL the nodes are given.
    pub url: String,
    pub ports: Vec<u16>,
    pub pids: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct NodeDescription {
    pub id: String,
    pub port: u16,
    /// Base URL of its HTTP endpoints and pages.
    pub http: String,
    /// Its WebSocket endpoint.
    pub ws: String,
    /// Where its Prometheus metrics are.
    pub metrics: String,
    pub pid: Option<u32>,
}

impl NodeDescription {
    pub fn of(node: &Node) -> NodeDescription {
        // A separate metrics listener when the node was given one.
        let metrics = node
            .spec()
            .env
            .iter()
            .rev()
            .find(|(k, v)| k == "VC_SERVER__METRICS_ADDRESS" && !v.is_empty())
            .map(|(_, address)| format!("http://{address}/metrics"))
            .unwrap_or_else(|| format!("{}/metrics", node.http_url()));
        NodeDescription {
            id: node.id.clone(),
            port: node.port,
            http: node.http_url(),
            ws: node.ws_url(),
            metrics,
            pid: node.pid(),
        }
    }
}
