//! The `vc-signaling` command: run a node, or mint a join token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vc_signaling::auth::Authenticator;
use vc_signaling::config::{AuthMode, Settings, CONFIG_FILE_ENV};
use vc_signaling::startup::Application;
use vc_signaling::tls::SelfSigned;

#[derive(Parser)]
#[command(version, about = "Video Caller signaling node")]
struct Cli {
    /// TOML config file; environment variables VC_<SECTION>__<KEY> override it.
    #[arg(long, env = CONFIG_FILE_ENV, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default).
    Serve {
        /// For calls between machines of a local network: listen on every
        /// interface over HTTPS with a self-signed certificate for this
        /// machine's addresses (tls.self_signed), and print the URLs to open.
        #[arg(long)]
        lan: bool,
    },
    /// Print a join token for a room, signed with auth.jwt_secret.
    MintToken {
        #[arg(long)]
        room: String,
        /// The identity (`sub`) the token grants.
        #[arg(long)]
        user: String,
        /// Display name the node will use instead of the client's.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 15m, 1h, 2days.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print the effective settings as JSON (secrets redacted) and exit.
    PrintConfig,
    /// Exit 0 if the node on this host answers GET /healthz with 200 (for
    /// container health checks, where there is no curl). Speaks HTTPS when the
    /// node does (tls settings), accepting its certificate as it is.
    HealthCheck {
        /// Port to check; defaults to server.port.
        #[arg(long)]
        port: Option<u16>,
        /// Speak HTTPS even where the settings do not say so (a node started
        /// with `serve --lan`).
        #[arg(long)]
        https: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::from_process_env(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve { lan: false }) {
        Command::Serve { lan } => {
            if lan {
                settings.tls.self_signed = true;
                settings.server.host = "0.0.0.0".into();
                settings
                    .validate()
                    .context("--lan makes its own certificate")?;
            }
            serve(settings)
        }
        Command::MintToken {
            room,
            user,
            name,
            ttl,
        } => {
            if settings.auth.mode != AuthMode::Jwt {
                anyhow::bail!(
                    "auth.mode is not \"jwt\": set VC_AUTH__MODE=jwt and VC_AUTH__JWT_SECRET"
                );
            }
            vc_protocol::RoomName::parse(&room).map_err(|e| anyhow::anyhow!("room name {e}"))?;
            let token = Authenticator::new(&settings.auth)
                .mint(&room, &user, name.as_deref(), ttl)
                .context("minting the token")?;
            println!("{token}");
            Ok(())
        }
        Command::PrintConfig => {
            // Secrets serialize as markers, never as their values.
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
        Command::HealthCheck { port, https } => health_check(
            port.unwrap_or(settings.server.port),
            https || settings.tls.enabled(),
        ),
    }
}

fn health_check(port: u16, tls: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut stream: Box<dyn ReadWrite> = if tls {
        let config = vc_signaling::tls::probe_client_config()?;
        let server = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), server)
            .context("starting TLS")?;
        Box::new(rustls::StreamOwned::new(connection, stream))
    } else {
        Box::new(stream)
    };
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .with_context(|| format!("asking {addr}"))?;
    // Up to the end of the stream, or of what arrived before an error (a TLS
    // peer that closes without close_notify): the status line is all it needs.
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if response.is_empty() => {
                return Err(e).with_context(|| format!("reading from {addr}"))
            }
            Err(_) => break,
        }
    }
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        anyhow::bail!("GET /healthz answered {status:?}");
    }
    Ok(())
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        // Inside the runtime: the OTLP exporter's gRPC channel lives on it.
        let _telemetry = vc_signaling::telemetry::init(&settings.telemetry);
        let host = settings.server.host.clone();
        let app = Application::build(settings).await?;
        if let Some(cert) = app.self_signed() {
            print_lan_help(cert, &host, app.port());
        }
        app.run_until_stopped().await.context("serving")
    })
}

/// What a person needs to call from another machine: where to go, and how to
/// recognise this node's certificate when the browser warns about it.
fn print_lan_help(cert: &SelfSigned, host: &str, port: u16) {
    let urls = cert.urls(host, port);
    let mut text =
        String::from("\nVideo Caller is serving HTTPS with a self-signed certificate.\n");
    if urls.remote.is_empty() {
        text.push_str("This machine has no address other machines can reach.\n");
    } else {
        text.push_str("Open one of these in a browser on another machine of this network:\n");
        for url in &urls.remote {
            text.push_str(&format!("  {url}\n"));
        }
    }
    text.push_str("On this machine:\n");
    for url in &urls.local {
        text.push_str(&format!("  {url}\n"));
    }
    text.push_str(&format!(
        "The browser warns that the certificate is not trusted. Its SHA-256 fingerprint is\n  {}\n\
         If the certificate the browser shows has this fingerprint, accept it \
         (Chromium: Advanced, then Proceed; Firefox: Advanced, then Accept the Risk and Continue).\n",
        cert.fingerprint
    ));
    println!("{text}");
}
