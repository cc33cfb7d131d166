//! `tail`: a terminal on a running server's event stream (`GET /v1/events/stream`). It reads
//! the Server-Sent Events, prints each event as `log` does, and after a dropped connection
//! reconnects with `Last-Event-ID`, so no event is missed or shown twice.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{TailArgs, TailFormat};
use crate::output::outln;

/// How long to wait before reconnecting after the stream ends.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub fn tail(follow: &TailArgs) -> Result<ExitCode> {
    let agent = crate::tls_client::agent(follow.cacert.as_deref())?;
    if follow.format == TailFormat::Table {
        outln!("{}", super::read::table_header());
    }
    let mut progress = Progress::default();
    loop {
        if let Some(body) = connect(&agent, follow, progress.last)? {
            if show_messages(body, follow, &mut progress)? {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "keyledger: the stream ended; resuming after seq {}",
                progress.last.unwrap_or(0)
            );
        }
        std::thread::sleep(RECONNECT_AFTER);
    }
}

/// Where the follow is: the last seq shown (resumed from) and how many were shown.
#[derive(Debug, Default)]
struct Progress {
    last: Option<u64>,
    shown: u64,
}

/// Opens the stream after `last`; `None` when the server cannot be reached (retry), an
/// error when it refuses (a bad token, a license ID the caller may not read).
fn connect(
    agent: &ureq::Agent,
    follow: &TailArgs,
    last: Option<u64>,
) -> Result<Option<ureq::Body>> {
    let url = format!("{}/v1/events/stream", follow.url.trim_end_matches('/'));
    let mut request = agent
        .get(&url)
        .query("from", follow.from.to_string())
        .header("Authorization", format!("Bearer {}", follow.token))
        .header("Accept", "text/event-stream");
    if let Some(license) = &follow.license_id {
        request = request.query("license_id", license);
    }
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let mut response = match request.call() {
        Ok(response) => response,
        Err(err) => {
            eprintln!("keyledger: {}: {err}; retrying", follow.url);
            return Ok(None);
        }
    };
    if response.status() != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let status = response.status();
        bail!("{} answered {status}: {}", follow.url, body.trim());
    }
    Ok(Some(response.into_body()))
}

/// Shows the stream's messages until it ends (`false`: reconnect) or `--count` events were
/// shown (`true`).
fn show_messages(body: ureq::Body, follow: &TailArgs, progress: &mut Progress) -> Result<bool> {
    let mut reader = std::io::BufReader::new(body.into_reader());
    // Lines are written as they come, and flushed whenever what arrived is shown: a terminal
    // sees each event at once, a file under load gets them in large writes.
    let mut out = crate::output::Stdout::lock();
    // One message: `event:`, `id:`, then `data:` lines (docs/api.md).
    let (mut kind, mut id) = (String::new(), None::<u64>);
    let mut line = String::new();
    loop {
        if reader.buffer().is_empty() {
            out.flush()?;
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(false),
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = line.strip_prefix("event:") {
            kind = name.trim().to_owned();
            continue;
        }
        if let Some(seq) = line.strip_prefix("id:") {
            id = seq.trim().parse().ok();
            continue;
        }
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        let seq = match (kind.as_str(), id.take()) {
            ("event", Some(seq)) => seq,
            _ => bail!("the server ended the stream: {data}"),
        };
        progress.last = Some(seq);
        match follow.format {
            // Passed through as the server wrote it: the reader need not parse it.
            TailFormat::Jsonl => out.line(format_args!("{data}"))?,
            TailFormat::Table => {
                let message: serde_json::Value =
                    serde_json::from_str(data).context("a stream message is not JSON")?;
                let row = super::read::table_row(seq, &message["event"]);
                out.line(format_args!("{row}"))?;
            }
        }
        progress.shown += 1;
        if follow.count.is_some_and(|count| progress.shown >= count) {
            out.flush()?;
            return Ok(true);
        }
    }
}
