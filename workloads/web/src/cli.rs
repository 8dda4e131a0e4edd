//! Command line and environment of the `web` binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use silo_runtime::RuntimeArgs;
use silo_runtime::args::parse_duration;

/// The silo web API (organizations, projects, keys, issues, events, rules, relay configs).
#[derive(Debug, Parser)]
#[command(name = "web", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub cross: crate::control::CrossSiloArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit (run as a Job before a rollout).
    Migrate,
    /// Print the region directory this pod reads (`SENTRY_REGION_CONFIG`) as JSON and exit:
    /// `kubectl exec deploy/web -- web regions` in an image without a shell.
    Regions,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL: postgres://user:password@host:port/database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Largest number of database connections.
    #[arg(long, env = "SILO_WEB_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "SILO_WEB_DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_acquire_timeout: Duration,

    /// A pooled connection idle at least this long is pinged before use, so one that died
    /// while idle is replaced instead of failing a request (`0s`: ping before every use).
    #[arg(long, env = "SILO_WEB_DATABASE_PING_AFTER_IDLE", default_value = "1s", value_parser = parse_duration)]
    pub database_ping_after_idle: Duration,

    /// How long start-up (migrations, bootstrap token) waits for an unreachable database.
    #[arg(long, env = "SILO_WEB_DATABASE_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub database_wait: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, env = "SILO_WEB_LISTEN", default_value = "0.0.0.0:9000")]
    pub listen: SocketAddr,

    /// Separate address for /healthz, /readyz and /metrics; when unset they are served on
    /// the API address.
    #[arg(long, env = "SILO_WEB_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Public base URL of the relay SDKs send events to; DSNs are built from it.
    #[arg(
        long,
        env = "SILO_RELAY_PUBLIC_URL",
        default_value = "http://localhost:3000"
    )]
    pub relay_public_url: String,

    /// Secret the region's relays sign project-config requests with. Without it every relay
    /// request is refused.
    #[arg(long, env = "RELAY_SHARED_SECRET", hide_env_values = true)]
    pub relay_secret: Option<String>,

    /// Public base URL of this API, for Link headers and permalinks (default: the request's
    /// Host header).
    #[arg(long, env = "SILO_WEB_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A token stored at start-up with every scope, so operators and tests can make the
    /// first API calls. Storing it again is harmless.
    #[arg(long, env = "SILO_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Apply pending migrations before serving.
    #[arg(long, env = "SILO_WEB_MIGRATE_ON_START", default_value_t = true, action = ArgAction::Set)]
    pub migrate_on_start: bool,
}

impl ServeArgs {
    /// Check values clap cannot: the relay URL must be an absolute http(s) URL without
    /// credentials or query.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.relay_public_url;
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                format!("--relay-public-url {url:?} must start with http:// or https://")
            })?;
        if rest.is_empty() || rest.contains(['@', '?', '#']) {
            return Err(format!(
                "--relay-public-url {url:?} must be scheme://host[:port][/path] without \
                 credentials, query or fragment"
            ));
        }
        if let Some(public) = &self.public_url
            && !(public.starts_with("http://") || public.starts_with("https://"))
        {
            return Err(format!(
                "--public-url {public:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_an_env_var() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || arg.is_positional() {
                continue;
            }
            assert!(arg.get_env().is_some(), "flag --{id} has no env var");
        }
    }

    #[test]
    fn parses_migrate_and_validates_urls() {
        let cli = Cli::try_parse_from([
            "web",
            "--database-url",
            "postgres://x@localhost/db",
            "--relay-public-url",
            "http://relay:3000",
            "migrate",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert!(cli.serve.validate().is_ok());
        let mut bad = cli.serve.clone();
        bad.relay_public_url = "relay:3000".into();
        assert!(bad.validate().unwrap_err().contains("http://"));
        bad.relay_public_url = "http://u:p@relay".into();
        assert!(bad.validate().is_err());
    }
}
