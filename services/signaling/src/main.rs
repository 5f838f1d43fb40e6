//! The `vc-signaling` command: run a node, or mint a join token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vc_signaling::auth::Authenticator;
use vc_signaling::config::{AuthMode, Settings, CONFIG_FILE_ENV};
use vc_signaling::startup::Application;

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
    Serve,
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
    /// container health checks, where there is no curl).
    HealthCheck {
        /// Port to check; defaults to server.port.
        #[arg(long)]
        port: Option<u16>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_process_env(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
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
            vc_protocol::validate_room(&room).map_err(|e| anyhow::anyhow!("room name {e}"))?;
            let token = Authenticator::new(&settings.auth)
                .mint(&room, &user, name.as_deref(), ttl)
                .context("minting the token")?;
            println!("{token}");
            Ok(())
        }
        Command::PrintConfig => {
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Command::HealthCheck { port } => health_check(port.unwrap_or(settings.server.port)),
    }
}

fn health_check(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        anyhow::bail!("GET /healthz answered {status:?}");
    }
    Ok(())
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        // Inside the runtime: the OTLP exporter's gRPC channel lives on it.
        let _telemetry = vc_signaling::telemetry::init(&settings.telemetry);
        let app = Application::build(settings).await?;
        app.run_until_stopped().await.context("serving")
    })
}
