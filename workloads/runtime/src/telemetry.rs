//! Structured logging set-up.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::args::{LogArgs, LogColor, LogFormat};

/// Install the global tracing subscriber, writing to stdout; a bad filter falls back to `info`
/// with a warning.
pub fn init(args: &LogArgs) {
    let (filter, bad_filter) = match EnvFilter::try_new(&args.log_filter) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    // `try_init` fails only when a subscriber is already set (e.g. in tests): keep that one.
    let terminal = std::io::stdout().is_terminal();
    let _ = subscriber(args, filter, std::io::stdout, terminal).try_init();
    if let Some(error) = bad_filter {
        tracing::warn!(filter = %args.log_filter, %error, "invalid log filter, using `info`");
    }
}

/// Whether log lines carry ANSI colours: `auto` colours only a terminal, and `NO_COLOR`
/// (<https://no-color.org>, any non-empty value) turns `auto` off.
pub fn use_ansi(color: LogColor, terminal: bool, no_color: bool) -> bool {
    match color {
        LogColor::Always => true,
        LogColor::Never => false,
        LogColor::Auto => terminal && !no_color,
    }
}

/// The subscriber `init` installs, writing to `writer`; `terminal`: whether that is a terminal.
fn subscriber<W>(
    args: &LogArgs,
    filter: EnvFilter,
    writer: W,
    terminal: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = args.log_format == LogFormat::Text && use_ansi(args.log_color, terminal, no_color);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match args.log_format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    /// A log destination that is not a terminal (like the demo's log file).
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(argv: &[&str], terminal: bool) -> String {
        let cli = Cli::parse_from(std::iter::once("bin").chain(argv.iter().copied()));
        let buffer = Buffer::default();
        let sub = subscriber(&cli.log, EnvFilter::new("info"), buffer.clone(), terminal);
        tracing::subscriber::with_default(sub, || tracing::info!(region = "de", "hello"));
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_logs_to_a_file_carry_no_ansi_colours() {
        let line = logged(&[], false);
        assert!(line.contains("hello"), "{line}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(!logged(&["--log-color", "never"], true).contains('\u{1b}'));
        assert!(logged(&["--log-color", "always"], false).contains('\u{1b}'));
    }

    #[test]
    fn auto_colours_only_a_terminal_without_no_color() {
        assert!(use_ansi(LogColor::Auto, true, false));
        assert!(!use_ansi(LogColor::Auto, false, false));
        assert!(!use_ansi(LogColor::Auto, true, true));
        assert!(use_ansi(LogColor::Always, false, true));
        assert!(!use_ansi(LogColor::Never, true, false));
    }
}
