//! Structured logging set-up.

use tracing_subscriber::EnvFilter;

use crate::args::{LogArgs, LogFormat};

/// Install the global tracing subscriber; a bad filter falls back to `info` with a warning.
pub fn init(args: &LogArgs) {
    let (filter, bad_filter) = match EnvFilter::try_new(&args.log_filter) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only when a subscriber is already set (e.g. in tests): keep that one.
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Some(error) = bad_filter {
        tracing::warn!(filter = %args.log_filter, %error, "invalid log filter, using `info`");
    }
}
