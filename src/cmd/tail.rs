//! `tail`: a terminal on a running server's event stream (`GET /v1/events/stream`). It reads
//! the Server-Sent Events, prints each event as `log` does, and after a dropped connection
//! reconnects with `Last-Event-ID`, so no event is missed or shown twice.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::output::outln;

/// What to follow and how to show it.
#[derive(Debug)]
pub struct Follow {
    pub url: String,
    pub token: String,
    pub from: u64,
    pub license_id: Option<String>,
    pub jsonl: bool,
    pub count: Option<u64>,
}

/// How long to wait before reconnecting after the stream ends.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub fn tail(follow: &Follow) -> Result<ExitCode> {
    let mut last: Option<u64> = None;
    let mut shown = 0u64;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    if !follow.jsonl {
        outln!(
            "{:>8}  {:<27}  {:<16}  {:<24}  summary",
            "seq",
            "at",
            "actor",
            "type"
        );
    }
    loop {
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
                std::thread::sleep(RECONNECT_AFTER);
                continue;
            }
        };
        if response.status() != 200 {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            bail!(
                "{} answered {}: {}",
                follow.url,
                response.status(),
                body.trim()
            );
        }
        let mut reader = std::io::BufReader::new(response.into_body().into_reader());
        // Lines are written as they come, and flushed whenever what arrived is shown: a
        // terminal sees each event at once, a file under load gets them in large writes.
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
                Ok(0) | Err(_) => break,
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
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            let seq = match (kind.as_str(), id.take()) {
                ("event", Some(seq)) => seq,
                _ => bail!("the server ended the stream: {data}"),
            };
            last = Some(seq);
            if follow.jsonl {
                // Passed through as the server wrote it: the reader need not parse it.
                out.line(format_args!("{data}"))?;
            } else {
                let message: serde_json::Value =
                    serde_json::from_str(data).context("a stream message is not JSON")?;
                show(&mut out, &message)?;
            }
            shown += 1;
            if follow.count.is_some_and(|count| shown >= count) {
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        out.flush()?;
        eprintln!(
            "keyledger: the stream ended; resuming after seq {}",
            last.unwrap_or(0)
        );
        std::thread::sleep(RECONNECT_AFTER);
    }
}

fn show(out: &mut crate::output::Stdout, message: &serde_json::Value) -> Result<()> {
    let event = &message["event"];
    let text = |field: &str| event[field].as_str().unwrap_or("").to_owned();
    out.line(format_args!(
        "{:>8}  {:<27}  {:<16}  {:<24}  {}",
        message["seq"].as_u64().unwrap_or(0),
        text("at"),
        text("actor"),
        text("type"),
        super::read::summary(event)
    ))?;
    Ok(())
}
