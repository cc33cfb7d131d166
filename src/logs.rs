//! Where diagnostics go: `tracing` events on stderr, as the plain lines a person reads
//! (the default: each event's message alone, as keyledger always printed them) or, with
//! `serve --log-format json`, one JSON object a line for a log pipeline, with the event's
//! fields and its request span (method, route, status, latency, principal; never a token or
//! key text). Levels and targets come from `RUST_LOG` (default `info`); the service's one
//! line a request (target `keyledger::access`) is on by default in JSON only.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Each event's message, as a line a person reads.
    #[default]
    Text,
    /// One JSON object a line: time, level, target, message, fields and the request's span.
    Json,
}

/// The target of the service's line a request.
pub const ACCESS: &str = "keyledger::access";

/// Installs the subscriber for this process (once; a second call changes nothing).
pub fn init(format: LogFormat) {
    let default = match format {
        LogFormat::Text => format!("info,{ACCESS}=off"),
        LogFormat::Json => "info".to_owned(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let installed = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .event_format(MessageOnly)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // Already installed (tests that run commands in one process): keep the first.
    drop(installed);
}

/// The text format: the message alone, as the line keyledger prints.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(writer, "{}", message.0)
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}
