//! Builds a node from its settings and runs it until it is told to stop.
//!
//! `Application::build` binds the listener first (port 0 picks a free one), so
//! tests can spawn a node and learn its address before it serves.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{dev::Server, web, App, HttpServer};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::bus::memory::{MemoryBus, MemoryHistory, MemoryStreams};
use crate::bus::Bus;
use crate::config::Settings;
use crate::envelope::EnvelopeSink;
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::origin::OriginPolicy;
use crate::presence::{memory::MemoryPresence, Presence};
use crate::redis_backend::{RedisBackend, RedisSetupError};
use crate::rooms::Rooms;
use crate::router::Router;
use crate::routes;
use crate::tls::{self, CertStore, KeyPairFiles, Reloader, SelfSigned, TlsError};
use crate::vocabulary::NodeId;

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on its own listener, when `server.metrics_address` is set.
    metrics_server: Option<(u16, Server)>,
    node: Arc<Node>,
    redis: Option<Arc<RedisBackend>>,
    /// Watches `tls.cert_file` and `tls.key_file` once serving.
    reloader: Option<Reloader>,
    self_signed: Option<SelfSigned>,
    stop: Arc<Notify>,
}

/// Asks a running [`Application`] to drain and stop, as SIGTERM does.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Notify>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.notify_one();
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let node_id = node_id(&settings);
        let metrics = Arc::new(Metrics::new(node_id.as_str()));
        let router = Arc::new(Router::new(&node_id, Arc::clone(&metrics)));
        let lifecycle = Lifecycle::new();
        // The router is where both buses deliver: registered as the bus's sink.
        let sink: Arc<dyn EnvelopeSink> = Arc::clone(&router) as Arc<dyn EnvelopeSink>;
        let (bus, presence, redis): (Arc<dyn Bus>, Arc<dyn Presence>, _) = if settings.uses_redis()
        {
            let backend =
                RedisBackend::connect(&node_id, &settings, sink, Arc::clone(&metrics)).await?;
            (backend.bus(), backend.presence(), Some(Arc::new(backend)))
        } else {
            let history = Arc::new(MemoryHistory::new(settings.chat.history));
            let streams = Arc::new(MemoryStreams::new(&settings.replay, settings.resume.window));
            (
                Arc::new(MemoryBus::new(
                    sink,
                    Arc::clone(&history),
                    Arc::clone(&streams),
                )),
                Arc::new(MemoryPresence::with(history, streams)),
                None,
            )
        };
        let rooms = Rooms::start(
            node_id.clone(),
            Arc::clone(&settings),
            router,
            bus,
            presence,
            Arc::clone(&metrics),
            &lifecycle,
        );
        if let Some(backend) = &redis {
            backend.start(rooms.publisher(), rooms.held_seats(), &lifecycle);
        }
        let node = Arc::new(Node {
            id: node_id,
            settings: Arc::clone(&settings),
            rooms,
            lifecycle,
            metrics,
        });

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?
            .port();
        let TlsSetup {
            store: cert_store,
            reloader,
            self_signed,
        } = tls_setup(&settings, &node.metrics)?;
        let data = web::Data::from(Arc::clone(&node));
        let origins = web::Data::new(OriginPolicy::new(&settings.server.allowed_origins));
        let metrics_here = settings.server.metrics_address.is_empty();
        let mut server = HttpServer::new(move || {
            let app = App::new()
                .app_data(data.clone())
                .app_data(origins.clone())
                .route("/ws", web::get().to(routes::ws::upgrade))
                .route("/healthz", web::get().to(routes::health::healthz))
                .route("/readyz", web::get().to(routes::health::readyz))
                .route(
                    "/api/rooms/{room}",
                    web::get().to(routes::rooms::head_count),
                );
            let app = if metrics_here {
                app.route("/metrics", web::get().to(routes::metrics::metrics))
            } else {
                app
            };
            app.route("/", web::get().to(routes::web_client::index))
                .route("/r/{room}", web::get().to(routes::web_client::index))
                .route("/{path:.*}", web::get().to(routes::web_client::asset))
        })
        // Signaling is small frames, each one awaited by a browser: Nagle's
        // algorithm would hold them back behind the previous frame's ACK, which
        // the browser delays by up to 40 ms.
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = match cert_store {
            Some(store) => {
                let config = tls::server_config(store, tls::provider())?;
                server.listen_rustls_0_23(listener, config)
            }
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();
        let metrics_server = if metrics_here {
            None
        } else {
            Some(metrics_listener(&node, &settings.server.metrics_address)?)
        };
        info!(
            node = %node.id,
            port,
            bus = if settings.uses_redis() { "redis" } else { "in-process" },
            scheme = if settings.tls.enabled() { "https" } else { "http" },
            allocator = crate::allocator::NAME,
            "listening"
        );
        Ok(Self {
            port,
            server,
            metrics_server,
            node,
            redis,
            reloader,
            self_signed,
            stop: Arc::new(Notify::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener, if there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    /// The certificate made at start with `tls.self_signed`.
    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.self_signed.as_ref()
    }

    pub fn node(&self) -> Arc<Node> {
        Arc::clone(&self.node)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.stop))
    }

    /// Serves until SIGTERM, SIGINT or the shutdown handle, then drains and stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            metrics_server,
            node,
            redis,
            reloader,
            stop,
            ..
        } = self;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        let interval = node.settings.tls.reload_interval;
        let reloading = reloader
            .filter(|_| !interval.is_zero())
            .map(|reloader| tokio::spawn(reloader.run(interval, node.lifecycle.subscribe())));
        let metrics_server = metrics_server.map(|(_, metrics)| {
            let handle = metrics.handle();
            tokio::spawn(metrics);
            handle
        });
        let _reloading = AbortOnDrop(reloading);
        tokio::select! {
            result = &mut server => return result.map_err(std::io::Error::other)?,
            () = stop.notified() => info!("shutdown requested"),
            () = termination_signal() => info!("termination signal received"),
        }
        shut_down(&node).await;
        if let Some(redis) = redis {
            redis.deregister().await;
        }
        handle.stop(true).await;
        if let Some(metrics) = metrics_server {
            metrics.stop(false).await;
        }
        server.await.map_err(std::io::Error::other)?
    }
}

/// Stops a background task when the server future that owns it ends, however
/// it ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The main listener's certificate, when it speaks TLS.
#[derive(Default)]
struct TlsSetup {
    store: Option<Arc<CertStore>>,
    /// With certificate files: what watches them.
    reloader: Option<Reloader>,
    /// With `tls.self_signed`: the certificate made at start.
    self_signed: Option<SelfSigned>,
}

/// The certificate of the main listener, if it speaks TLS: from the files
/// (with their reloader), or made now for this machine.
fn tls_setup(settings: &Settings, metrics: &Arc<Metrics>) -> Result<TlsSetup, StartupError> {
    let tls = &settings.tls;
    if tls.self_signed {
        let names = tls::machine_names(&tls.self_signed_names);
        let cert = SelfSigned::generate(names, &tls::provider())?;
        info!(names = ?cert.names, fingerprint = %cert.fingerprint, "self-signed TLS certificate made");
        return Ok(TlsSetup {
            store: Some(Arc::new(CertStore::new(cert.key.clone()))),
            reloader: None,
            self_signed: Some(cert),
        });
    }
    if tls.cert_file.is_empty() {
        return Ok(TlsSetup::default());
    }
    let reloader = Reloader::start(
        KeyPairFiles::from_settings(tls),
        tls::provider(),
        Arc::clone(metrics),
    )?;
    Ok(TlsSetup {
        store: Some(reloader.store()),
        reloader: Some(reloader),
        self_signed: None,
    })
}

/// `/metrics` alone on `addr`: one worker, since a scrape is rare and cheap.
fn metrics_listener(node: &Arc<Node>, addr: &str) -> Result<(u16, Server), StartupError> {
    let bind_error = |source| StartupError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    let data = web::Data::from(Arc::clone(node));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(routes::metrics::metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(bind_error)?
    .run();
    info!(port, "metrics listening");
    Ok((port, server))
}

/// Drain (only with a fleet to move to), then close every socket with 1001 and
/// let the background tasks finish, within `server.shutdown_timeout`.
async fn shut_down(node: &Node) {
    let settings = &node.settings;
    let life = &node.lifecycle;
    if settings.uses_redis() && !settings.drain.timeout.is_zero() {
        life.advance(Phase::Draining);
        info!(sessions = life.sessions(), "draining");
        life.sessions_ended_within(settings.drain.timeout).await;
    }
    life.advance(Phase::Stopping);
    info!(sessions = life.sessions(), "closing sockets");
    let stopping = Instant::now();
    let limit = settings.server.shutdown_timeout;
    life.sessions_ended_within(limit).await;
    if !life
        .tasks_ended_within(limit.saturating_sub(stopping.elapsed()))
        .await
    {
        warn!("background tasks still running at the shutdown timeout");
    }
}

async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without signal handlers the node can still be stopped by its handle.
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The configured id (settings validation refused one that does not parse;
/// none is empty), or the host name plus a random suffix.
fn node_id(settings: &Settings) -> NodeId {
    if let Ok(id) = NodeId::parse(&settings.node.id) {
        return id;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    NodeId::for_host(&host)
}
