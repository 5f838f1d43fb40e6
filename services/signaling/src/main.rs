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
    /// Print the effective settings (secrets redacted) and exit.
    PrintConfig,
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
            println!("{settings:#?}");
            Ok(())
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    vc_signaling::telemetry::init(&settings.telemetry);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await.context("serving")
    })
}
