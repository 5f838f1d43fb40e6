//! Every setting of the node, in one typed struct.
//!
//! Layers, later ones winning: the defaults of [`Settings::default`], an optional
//! TOML file, then environment variables `VC_<SECTION>__<KEY>` (for example
//! `VC_SERVER__PORT=9000`, `VC_ICE__STUN_URLS=stun:a:3478,stun:b:3478`). Unknown
//! keys and values of the wrong type fail start-up with a message naming the key,
//! so that a typo in a Helm value never silently falls back to a default.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Prefix of the node's environment variables.
pub const ENV_PREFIX: &str = "VC";
/// Environment variable naming the optional config file (not itself a setting).
pub const CONFIG_FILE_ENV: &str = "VC_CONFIG_FILE";

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 4] = [
    "ice.stun_urls",
    "ice.turn_urls",
    "server.allowed_origins",
    "tls.self_signed_names",
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub node: NodeSettings,
    pub rooms: RoomSettings,
    pub limits: LimitSettings,
    pub chat: ChatSettings,
    pub heartbeat: HeartbeatSettings,
    pub resume: ResumeSettings,
    pub replay: ReplaySettings,
    pub outage: OutageSettings,
    pub auth: AuthSettings,
    pub ice: IceSettings,
    pub redis: RedisSettings,
    pub drain: DrainSettings,
    pub telemetry: TelemetrySettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one (tests).
    pub port: u16,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Longest a shutdown waits for sockets to close before exiting anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Pages allowed to open sockets, besides the node's own origin: `*`, exact
    /// origins (`https://call.example.org`), or host names (any scheme and port).
    pub allowed_origins: Vec<String>,
    /// `host:port` of a separate listener for `/metrics`, so that it need not be
    /// public behind the load balancer; empty serves it on the main listener.
    pub metrics_address: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            workers: 0,
            shutdown_timeout: Duration::from_secs(5),
            allowed_origins: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            metrics_address: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Stable id of this node in logs, health output and presence. Empty: the host
    /// name plus a random suffix, generated at start.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    /// Most peers in one room, across the cluster.
    pub capacity: usize,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self { capacity: 8 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest text frame accepted; larger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Sustained messages per second per session (token bucket refill).
    pub messages_per_second: f64,
    /// Token bucket size: messages a session may send in a burst.
    pub message_burst: u32,
    /// Client-caused errors within `abuse_window` that close the socket with 1008.
    pub abuse_strikes: u32,
    #[serde(with = "humantime_serde")]
    pub abuse_window: Duration,
    /// Messages queued for a session that does not read; when full the session is
    /// closed with 1013.
    pub outbound_queue: usize,
    /// Longest chat text accepted, in bytes of UTF-8 after normalization.
    pub max_chat_bytes: usize,
    /// Sustained room-wide messages (chat, call state, reactions) per second per
    /// session: their own token bucket, on top of `messages_per_second`.
    pub broadcasts_per_second: f64,
    /// Room-wide messages a session may send in a burst.
    pub broadcast_burst: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            messages_per_second: 50.0,
            message_burst: 200,
            abuse_strikes: 20,
            abuse_window: Duration::from_secs(10),
            outbound_queue: 256,
            max_chat_bytes: 2000,
            broadcasts_per_second: 2.0,
            broadcast_burst: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Chat messages kept per room for people who join later; 0 keeps none.
    pub history: usize,
    /// Kept messages older than this are no longer handed to joiners, and a room
    /// quiet this long loses its history.
    #[serde(with = "humantime_serde")]
    pub history_max_age: Duration,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            history: 50,
            history_max_age: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// How often the node pings each socket.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A socket silent for this long (no pong, no message) is closed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeSettings {
    /// How long a seat is kept after its socket drops, for `resume`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for ResumeSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
        }
    }
}

/// The per-seat buffer a resume replays from: what each seat was sent, bounded
/// by count and bytes, kept at most `resume.window` past the seat's last frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// Frames kept per seat, the latest ones.
    pub buffer_messages: usize,
    /// Bytes of frames kept per seat (the latest frame is kept whatever its size).
    pub buffer_bytes: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            buffer_messages: 512,
            buffer_bytes: 262_144,
        }
    }
}

/// What a node keeps of its sessions' messages for other nodes while Redis is
/// away, to publish when it is back: bounded by count, bytes and age.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutageSettings {
    /// Messages kept, for all sessions of the node together; 0 keeps none (the
    /// node refuses them with `unavailable` at once).
    pub queue_messages: usize,
    /// Bytes of messages kept, for all sessions of the node together.
    pub queue_bytes: usize,
    /// A kept message still not published after this long is dropped, and its
    /// sender told.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for OutageSettings {
    fn default() -> Self {
        Self {
            queue_messages: 10_000,
            queue_bytes: 16 * 1024 * 1024,
            max_wait: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone may join any room: local development.
    #[default]
    None,
    /// Joins need an HS256 JWT granting the room.
    Jwt,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// HS256 shared secret, at least 32 bytes, when `mode = "jwt"`.
    pub jwt_secret: Secret,
    /// Expected `iss` claim; empty accepts any issuer.
    pub issuer: String,
    /// Clock skew tolerated on `exp`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceSettings {
    /// STUN URLs handed to browsers, e.g. `stun:stun.example.org:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to browsers with per-join credentials.
    pub turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn `static-auth-secret`).
    pub turn_secret: Secret,
    /// Lifetime of minted TURN credentials.
    #[serde(with = "humantime_serde")]
    pub turn_ttl: Duration,
}

impl Default for IceSettings {
    fn default() -> Self {
        Self {
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: Secret::default(),
            turn_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`; empty runs the in-process bus (a single node).
    pub url: RedisUrl,
    /// Use Redis 7 sharded pub/sub (SSUBSCRIBE/SPUBLISH), for Redis Cluster.
    pub sharded: bool,
    /// `url` names one seed node of a Redis Cluster; commands follow slots.
    pub cluster: bool,
    /// How often this node refreshes its liveness key and sweeps dead nodes.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node whose liveness key is older than this is dead; its peers are removed.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
    /// Longest wait before retrying a lost Redis connection.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: RedisUrl::default(),
            sharded: false,
            cluster: false,
            heartbeat_interval: Duration::from_secs(3),
            node_ttl: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainSettings {
    /// On SIGTERM, longest wait for clients to move to other nodes before the
    /// remaining sockets are closed. Skipped without Redis: no node could take them.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,vc_signaling=debug`. `RUST_LOG`
    /// overrides it when set.
    pub log_level: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first. With `key_file`, the main listener speaks
    /// HTTPS and WSS; empty (with `self_signed` off) serves plain HTTP.
    pub cert_file: String,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// How often both files are read again; a changed pair is served to new
    /// connections. 0 reads them at start only.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Make a self-signed certificate at start for `localhost`, the host name and
    /// every address of this machine (development and calls on a LAN).
    pub self_signed: bool,
    /// Further names or addresses the self-signed certificate covers.
    pub self_signed_names: Vec<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            reload_interval: Duration::from_secs(10),
            self_signed: false,
            self_signed_names: Vec::new(),
        }
    }
}

impl TlsSettings {
    /// Whether the main listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.self_signed || !self.cert_file.is_empty()
    }
}

/// What a set secret shows instead of its value.
const REDACTED: &str = "<redacted>";
/// What an empty secret shows, and reads back as.
const UNSET: &str = "<unset>";

/// A secret setting (`auth.jwt_secret`, `ice.turn_secret`). It cannot be logged
/// or printed by accident: `Debug` and `Serialize` show `"<redacted>"` when it is
/// set and `"<unset>"` when it is empty, never the value, which only
/// [`ExposeSecret::expose_secret`] gives, where it is used (signing and checking
/// tokens, minting TURN credentials). Read from files and the environment like
/// any string; `"<unset>"` reads back as empty, so that the defaults layer of
/// [`Settings::load`], itself serialized, stays empty.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// Whether the secret has a value.
    pub fn is_set(&self) -> bool {
        !self.0.expose_secret().is_empty()
    }

    fn marker(&self) -> &'static str {
        if self.is_set() {
            REDACTED
        } else {
            UNSET
        }
    }
}

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.into())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.marker())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.marker())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secret = SecretString::deserialize(deserializer)?;
        if secret.expose_secret() == UNSET {
            return Ok(Self::default());
        }
        Ok(Self(secret))
    }
}

/// `redis.url`. Reads as the whole URL (with [`RedisUrl::as_str`], or as a
/// `&str`), which connecting needs; `Debug`, `Display` and `Serialize` show it
/// with its user and password replaced by `<redacted>`, so that logs and
/// `print-config` never carry them.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as configured, credentials included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with any credentials replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        match self
            .0
            .split_once("://")
            .and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host)))
        {
            Some((scheme, host)) => format!("{scheme}://{REDACTED}@{host}"),
            None => self.0.clone(),
        }
    }
}

impl std::ops::Deref for RedisUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RedisUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for RedisUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl Settings {
    /// Loads defaults, then `file` if given, then `VC_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("VC_") && k != CONFIG_FILE_ENV)
            .collect();
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment and the file it names, if any.
    pub fn from_process_env(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(file, std::env::vars())
    }

    /// Checks what types alone cannot, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        }
        if !(2..=64).contains(&self.rooms.capacity) {
            return bad("rooms.capacity", "must be between 2 and 64");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.limits.max_frame_bytes) {
            return bad(
                "limits.max_frame_bytes",
                "must be between 1024 and 16777216",
            );
        }
        if !(self.limits.messages_per_second > 0.0 && self.limits.messages_per_second.is_finite()) {
            return bad("limits.messages_per_second", "must be a positive number");
        }
        if self.limits.message_burst == 0 {
            return bad("limits.message_burst", "must be at least 1");
        }
        if self.limits.abuse_strikes == 0 {
            return bad("limits.abuse_strikes", "must be at least 1");
        }
        if self.limits.outbound_queue < 8 {
            return bad("limits.outbound_queue", "must be at least 8");
        }
        // A text at the limit must fit in one frame even with every character
        // escaped in JSON (a quote, a backslash or a newline doubles), with room
        // for the rest of the message.
        if self.limits.max_chat_bytes == 0
            || self
                .limits
                .max_chat_bytes
                .saturating_mul(2)
                .saturating_add(64)
                > self.limits.max_frame_bytes
        {
            return bad(
                "limits.max_chat_bytes",
                "must be at least 1, and 2 × limits.max_chat_bytes + 64 at most limits.max_frame_bytes",
            );
        }
        if !(self.limits.broadcasts_per_second > 0.0
            && self.limits.broadcasts_per_second.is_finite())
        {
            return bad("limits.broadcasts_per_second", "must be a positive number");
        }
        if self.limits.broadcast_burst == 0 {
            return bad("limits.broadcast_burst", "must be at least 1");
        }
        if self.chat.history > 500 {
            return bad("chat.history", "must be at most 500");
        }
        if self.chat.history_max_age < Duration::from_secs(1) {
            return bad("chat.history_max_age", "must be at least 1s");
        }
        if !(1..=100_000).contains(&self.replay.buffer_messages) {
            return bad("replay.buffer_messages", "must be between 1 and 100000");
        }
        if self.replay.buffer_bytes < 1024 {
            return bad("replay.buffer_bytes", "must be at least 1024");
        }
        if self.outage.queue_messages > 1_000_000 {
            return bad("outage.queue_messages", "must be at most 1000000");
        }
        if self.outage.queue_messages > 0 && self.outage.queue_bytes < 65_536 {
            return bad("outage.queue_bytes", "must be at least 65536");
        }
        if self.outage.max_wait < Duration::from_secs(1) {
            return bad("outage.max_wait", "must be at least 1s");
        }
        if self.heartbeat.interval.is_zero() {
            return bad("heartbeat.interval", "must be positive");
        }
        if self.heartbeat.timeout <= self.heartbeat.interval {
            return bad(
                "heartbeat.timeout",
                "must be longer than heartbeat.interval",
            );
        }
        if self.auth.mode == AuthMode::Jwt && self.auth.jwt_secret.expose_secret().len() < 32 {
            return bad(
                "auth.jwt_secret",
                "must be at least 32 bytes when auth.mode is \"jwt\"",
            );
        }
        if !self.ice.turn_urls.is_empty() && !self.ice.turn_secret.is_set() {
            return bad("ice.turn_secret", "must be set when ice.turn_urls is");
        }
        for url in &self.ice.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return bad(
                    "ice.stun_urls",
                    format!("\"{url}\" is not a stun: or stuns: URL"),
                );
            }
        }
        for url in &self.ice.turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return bad(
                    "ice.turn_urls",
                    format!("\"{url}\" is not a turn: or turns: URL"),
                );
            }
        }
        if self.ice.turn_ttl < Duration::from_secs(60) {
            return bad("ice.turn_ttl", "must be at least 60s");
        }
        if !self.redis.url.is_empty()
            && !self.redis.url.starts_with("redis://")
            && !self.redis.url.starts_with("rediss://")
        {
            return bad("redis.url", "must start with redis:// or rediss://");
        }
        if self.redis.node_ttl <= self.redis.heartbeat_interval {
            return bad(
                "redis.node_ttl",
                "must be longer than redis.heartbeat_interval",
            );
        }
        if !self.node.id.is_empty() && crate::vocabulary::NodeId::parse(&self.node.id).is_err() {
            return bad("node.id", "must be 1 to 64 of [A-Za-z0-9_-]");
        }
        if !self.server.metrics_address.is_empty()
            && self
                .server
                .metrics_address
                .to_socket_addrs()
                .map_or(true, |mut a| a.next().is_none())
        {
            return bad(
                "server.metrics_address",
                format!("\"{}\" is not a host:port", self.server.metrics_address),
            );
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return bad(
                "tls.key_file",
                "tls.cert_file and tls.key_file are set together or not at all",
            );
        }
        if self.tls.self_signed && !self.tls.cert_file.is_empty() {
            return bad(
                "tls.self_signed",
                "cannot be on while tls.cert_file is set: choose one certificate",
            );
        }
        if !self.tls.self_signed_names.is_empty() && !self.tls.self_signed {
            return bad("tls.self_signed_names", "needs tls.self_signed = true");
        }
        for name in &self.tls.self_signed_names {
            if name.parse::<std::net::IpAddr>().is_err()
                && rustls::pki_types::DnsName::try_from(name.as_str()).is_err()
            {
                return bad(
                    "tls.self_signed_names",
                    format!("\"{name}\" is neither an IP address nor a DNS name"),
                );
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level) {
            return bad("telemetry.log_level", e.to_string());
        }
        Ok(())
    }

    /// Whether a Redis bus is configured (a fleet) or the in-process bus runs.
    pub fn uses_redis(&self) -> bool {
        !self.redis.url.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[]).expect("defaults load");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.rooms.capacity, 8);
        assert_eq!(s.limits.max_frame_bytes, 65536);
        assert_eq!(s.limits.max_chat_bytes, 2000);
        assert_eq!(s.chat.history, 50);
        assert!(!s.uses_redis());
    }

    #[test]
    fn environment_overrides_with_lists_and_durations() {
        let s = load(&[
            ("VC_SERVER__PORT", "9001"),
            ("VC_ROOMS__CAPACITY", "4"),
            ("VC_RESUME__WINDOW", "2s 500ms"),
            ("VC_ICE__STUN_URLS", "stun:a:3478,stun:b:3478"),
            ("VC_NODE__ID", "123"),
            ("VC_CONFIG_FILE", "/ignored"),
            ("OTHER", "x"),
        ])
        .expect("loads");
        assert_eq!(s.server.port, 9001);
        assert_eq!(s.rooms.capacity, 4);
        assert_eq!(s.resume.window, Duration::from_millis(2500));
        assert_eq!(s.ice.stun_urls, vec!["stun:a:3478", "stun:b:3478"]);
        assert_eq!(s.node.id, "123");
    }

    #[test]
    fn tls_from_the_environment() {
        let s = load(&[
            ("VC_TLS__CERT_FILE", "/etc/vc/tls.crt"),
            ("VC_TLS__KEY_FILE", "/etc/vc/tls.key"),
            ("VC_TLS__RELOAD_INTERVAL", "1m"),
        ])
        .expect("loads");
        assert!(s.tls.enabled());
        assert_eq!(s.tls.reload_interval, Duration::from_secs(60));
        let s = load(&[
            ("VC_TLS__SELF_SIGNED", "true"),
            ("VC_TLS__SELF_SIGNED_NAMES", "call.lan,10.1.2.3"),
        ])
        .expect("loads");
        assert!(s.tls.enabled());
        assert_eq!(s.tls.self_signed_names, vec!["call.lan", "10.1.2.3"]);
        assert!(!load(&[]).expect("defaults").tls.enabled());
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("vc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("node.toml");
        std::fs::write(&path, "[rooms]\ncapacity = 3\n[server]\nport = 7000\n").expect("write");
        let s = Settings::load(
            Some(&path),
            [("VC_SERVER__PORT".to_string(), "7001".to_string())],
        )
        .expect("loads");
        assert_eq!(s.rooms.capacity, 3);
        assert_eq!(s.server.port, 7001);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn errors_name_the_key() {
        let err = load(&[("VC_SERVER__PORT", "eighty")]).expect_err("bad port");
        assert!(err.to_string().contains("server.port"), "{err}");
        let err = load(&[("VC_SERVER__PROT", "80")]).expect_err("typo");
        assert!(err.to_string().contains("prot"), "{err}");
        let err = load(&[("VC_ROOMS__CAPACITY", "1")]).expect_err("too small");
        assert!(err.to_string().contains("rooms.capacity"), "{err}");
        let err = load(&[("VC_LIMITS__MAX_CHAT_BYTES", "40000")]).expect_err("too big");
        assert!(err.to_string().contains("limits.max_chat_bytes"), "{err}");
        let err = load(&[("VC_CHAT__HISTORY", "501")]).expect_err("too many");
        assert!(err.to_string().contains("chat.history"), "{err}");
        let err = load(&[("VC_CHAT__HISTORY_MAX_AGE", "0s")]).expect_err("no age");
        assert!(err.to_string().contains("chat.history_max_age"), "{err}");
        let err = load(&[("VC_AUTH__MODE", "jwt")]).expect_err("no secret");
        assert!(err.to_string().contains("auth.jwt_secret"), "{err}");
        let err = load(&[("VC_AUTH__MODE", "ldap")]).expect_err("bad mode");
        assert!(err.to_string().contains("auth.mode"), "{err}");
        let err = load(&[("VC_ICE__TURN_URLS", "turn:x:3478")]).expect_err("no secret");
        assert!(err.to_string().contains("ice.turn_secret"), "{err}");
        let err = load(&[("VC_TLS__CERT_FILE", "/c.pem")]).expect_err("no key");
        assert!(err.to_string().contains("tls.key_file"), "{err}");
        let err = load(&[
            ("VC_TLS__CERT_FILE", "/c.pem"),
            ("VC_TLS__KEY_FILE", "/k.pem"),
            ("VC_TLS__SELF_SIGNED", "true"),
        ])
        .expect_err("two certificates");
        assert!(err.to_string().contains("tls.self_signed"), "{err}");
        let err = load(&[
            ("VC_TLS__SELF_SIGNED", "true"),
            ("VC_TLS__SELF_SIGNED_NAMES", "call.lan,not a name"),
        ])
        .expect_err("bad name");
        assert!(err.to_string().contains("tls.self_signed_names"), "{err}");
    }

    fn with_secrets() -> Settings {
        load(&[
            ("VC_AUTH__MODE", "jwt"),
            ("VC_AUTH__JWT_SECRET", "super-secret-value-of-32-bytes!!"),
            ("VC_ICE__TURN_URLS", "turn:t:3478"),
            ("VC_ICE__TURN_SECRET", "turn-secret"),
            ("VC_REDIS__URL", "redis://vc:hunter2@redis.internal:6379/0"),
        ])
        .expect("loads")
    }

    #[test]
    fn secrets_load_from_the_environment_and_are_read_explicitly() {
        let s = with_secrets();
        assert_eq!(
            s.auth.jwt_secret.expose_secret(),
            "super-secret-value-of-32-bytes!!"
        );
        assert_eq!(s.ice.turn_secret.expose_secret(), "turn-secret");
        assert_eq!(
            s.redis.url.as_str(),
            "redis://vc:hunter2@redis.internal:6379/0"
        );
        // The defaults layer is serialized too: its empty secrets stay empty.
        let defaults = load(&[]).expect("defaults");
        assert!(!defaults.auth.jwt_secret.is_set());
        assert!(!defaults.ice.turn_secret.is_set());
        assert!(!defaults.uses_redis());
    }

    #[test]
    fn secrets_do_not_leak_into_debug_output() {
        let shown = format!("{:?}", with_secrets());
        for secret in ["super-secret", "turn-secret", "hunter2", "vc:"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("jwt_secret: <redacted>"), "{shown}");
        assert!(
            shown.contains(r#"url: "redis://<redacted>@redis.internal:6379/0""#),
            "{shown}"
        );
        let shown = format!("{:?}", Settings::default());
        assert!(shown.contains("turn_secret: <unset>"), "{shown}");
    }

    #[test]
    fn secrets_do_not_leak_into_serialized_settings() {
        let printed = serde_json::to_value(with_secrets()).expect("serializes");
        assert_eq!(printed["auth"]["jwt_secret"], "<redacted>");
        assert_eq!(printed["ice"]["turn_secret"], "<redacted>");
        assert_eq!(
            printed["redis"]["url"],
            "redis://<redacted>@redis.internal:6379/0"
        );
        let printed = serde_json::to_value(Settings::default()).expect("serializes");
        assert_eq!(printed["auth"]["jwt_secret"], "<unset>");
        assert_eq!(printed["redis"]["url"], "");
    }

    #[test]
    fn redis_urls_without_credentials_show_as_they_are() {
        let url = RedisUrl::from("redis://redis.internal:6379/0");
        assert_eq!(url.to_string(), "redis://redis.internal:6379/0");
        let url = RedisUrl::from("rediss://:pw@h:6380");
        assert_eq!(url.to_string(), "rediss://<redacted>@h:6380");
        assert_eq!(&*url, "rediss://:pw@h:6380");
    }
}
