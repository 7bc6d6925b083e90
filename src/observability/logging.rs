//! tracing subscriber setup from `--log-format` and `--log-level`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validates a tracing filter such as `info,rds_csi=debug`.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("expected a tracing filter such as info or info,rds_csi=debug ({e})"))
}

/// Installs the global subscriber (logs go to stderr). Safe to call once per process.
pub fn init(format: LogFormat, level: &str) {
    // Colours only on a terminal: `kubectl logs` and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    install(format, level, std::io::stderr, ansi);
}

/// [`init`] with another destination, without colours (tests read the driver's log lines
/// as a log collector would).
pub fn init_with_writer<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    install(format, level, writer, false);
}

fn install<W>(format: LogFormat, level: &str, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
