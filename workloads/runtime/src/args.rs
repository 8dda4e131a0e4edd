//! Flags the binaries share (flatten into their own clap struct): [`LogArgs`] everywhere,
//! [`RuntimeArgs`] in the workloads.

use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// When text log lines carry ANSI colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogColor {
    /// Only when stdout is a terminal and `NO_COLOR` is unset (never in a pod or a log file).
    Auto,
    Always,
    Never,
}

/// Logging flags of every binary (the workloads and the operator).
#[derive(Clone, Debug, Args)]
pub struct LogArgs {
    /// Log output format.
    #[arg(long, env = "SILO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter in `tracing` env-filter syntax (e.g. `info,silo_relay=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// ANSI colours in text logs: `auto` (only on a terminal), `always` or `never`.
    #[arg(long, env = "SILO_LOG_COLOR", value_enum, default_value = "auto")]
    pub log_color: LogColor,
}

/// Flags every workload binary shares: logging, the directory reload and the drain.
#[derive(Clone, Debug, Args)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub log: LogArgs,

    /// How often the region directory file (SENTRY_REGION_CONFIG) is checked for changes.
    #[arg(long, env = "SILO_DIRECTORY_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub directory_reload_interval: Duration,

    /// Longest time to finish in-flight work after SIGTERM before exiting.
    #[arg(long, env = "SILO_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Parse `250ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {value:?}: expected e.g. 500ms, 5s, 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {value:?}: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("x").is_err());
    }
}
