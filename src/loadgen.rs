//! `keyledger bench http`: a load generator for the activation endpoint.
//!
//! It only talks to loopback addresses, sends a bounded number of requests for a bounded
//! time, and stops by itself. Without `--url` it builds a temporary ledger with one large
//! MAK, starts `keyledger serve` on it as a child process, and stops that server after.

use crate::output::outln;
use std::io::BufRead;
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::BenchHttp;
use keyledger_ledger::store::location::SIGNING_KEY_ENV;

const OWN_KEY: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";
const OWN_ORG: &str = "loadgen-org";

/// The result of a run.
#[derive(Debug, serde::Serialize)]
pub struct LoadReport {
    /// Request i named machine `{machine_prefix}-{i}`.
    pub machine_prefix: String,
    pub concurrency: usize,
    pub requests: u64,
    pub activated: u64,
    pub refused: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// With `--peer`: the trivial axum handler under the same load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerReport>,
}

/// The trivial handler's run beside keyledger's (`--peer`).
#[derive(Debug, serde::Serialize)]
pub struct PeerReport {
    pub requests_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// keyledger's requests a second over the handler's.
    pub ratio: f64,
}

/// Without `--url`, the server it starts writes to a temporary redb file, or, when `data`
/// is a PostgreSQL URL, to that database (which must hold no ledger yet).
pub fn run(args: &BenchHttp, data: &keyledger_ledger::Location) -> Result<ExitCode> {
    if args.concurrency == 0 || args.requests == 0 {
        bail!("--concurrency and --requests must be at least 1");
    }
    if let Some(prefix) = &args.machine_prefix {
        let fits = (1..=64).contains(&prefix.len())
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !fits {
            bail!("--machine-prefix {prefix:?}: expected 1 to 64 letters, digits, '.', '_' or '-'");
        }
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && (0.001..=10_000_000.0).contains(&rate)) {
            bail!("--rate {rate}: expected requests a second, from 0.001 to 10000000");
        }
    }
    let (url, key, org, server) = match &args.url {
        Some(url) => {
            check_loopback(url)?;
            let key = args
                .product_key
                .clone()
                .expect("clap requires --product-key with --url");
            (
                url.clone(),
                key,
                args.org.clone().expect("clap requires --org with --url"),
                None,
            )
        }
        None => {
            let (url, server) = own_server(data)?;
            (url, OWN_KEY.to_owned(), OWN_ORG.to_owned(), Some(server))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(load(&url, &key, &org, args));
    if let Some(server) = server {
        server.stop()?;
    }
    let mut report = report?;
    if args.peer {
        let theirs = runtime.block_on(load_peer(&key, &org, args))?;
        report.peer = Some(PeerReport {
            requests_per_second: theirs.requests_per_second,
            latency_ms_p50: theirs.latency_ms_p50,
            latency_ms_p99: theirs.latency_ms_p99,
            ratio: report.requests_per_second / theirs.requests_per_second.max(f64::MIN_POSITIVE),
        });
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{} requests in {:.1} s at concurrency {}: {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} activated, {} refused, {} errors; machines {}-0..",
            report.requests, report.seconds, report.concurrency, report.requests_per_second,
            report.latency_ms_p50, report.latency_ms_p99, report.latency_ms_max,
            report.activated, report.refused, report.errors, report.machine_prefix
        );
        if let Some(peer) = &report.peer {
            outln!(
                "peer (a trivial axum handler, same client): {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms; keyledger at {:.2}x",
                peer.requests_per_second, peer.latency_ms_p50, peer.latency_ms_p99, peer.ratio
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The same load on the trivial handler of `--peer`, started for the run and stopped after.
async fn load_peer(key: &str, org: &str, args: &BenchHttp) -> Result<LoadReport> {
    let peer = crate::loadgen_peer::Peer::start()?;
    load(&peer.url, key, org, args).await
}

/// `url` without its scheme, and whether it asks for TLS.
fn split_scheme(url: &str) -> Result<(&str, bool)> {
    match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => Ok((rest, false)),
        (_, Some(rest)) => Ok((rest, true)),
        _ => bail!("--url must start with http:// or https://"),
    }
}

fn check_loopback(url: &str) -> Result<()> {
    let host = split_scheme(url)?.0.split(['/', ':']).next().unwrap_or("");
    match host {
        "localhost" | "[" => Ok(()),
        h if h
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        _ => bail!("--url must name a loopback address (127.0.0.0/8 or localhost); got {host:?}"),
    }
}

async fn load(url: &str, key: &str, org: &str, args: &BenchHttp) -> Result<LoadReport> {
    let (authority, secure) = split_scheme(url.trim_end_matches('/'))?;
    let authority = authority.to_owned();
    let tls = match secure {
        true => Some(Tls::for_authority(&authority, args.cacert.as_deref())?),
        false => None,
    };
    // Pre-escaped JSON strings: each request's body is then one `format!`.
    let (key, org) = (serde_json::to_string(key)?, serde_json::to_string(org)?);
    // Every client connects first; the clock starts when all are connected, so the run
    // measures activations, not a burst of connection set-ups.
    let ready = Arc::new(tokio::sync::Barrier::new(args.concurrency + 1));
    let plan = Arc::new(Plan {
        authority,
        tls,
        key,
        org,
        prefix: args
            .machine_prefix
            .clone()
            .unwrap_or_else(|| format!("lg-{:x}", rand::random::<u64>())),
        limit: args.requests,
        duration: Duration::from_secs(args.duration),
        interval: args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        next: AtomicU64::new(0),
        start: std::sync::OnceLock::new(),
    });
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(client(Arc::clone(&plan), Arc::clone(&ready))))
        .collect();
    ready.wait().await;
    let started = Instant::now();
    let mut histogram = latency_histogram();
    let mut counts = [0u64; 3];
    for task in tasks {
        let (h, c) = task.await?;
        histogram
            .add(h)
            .expect("histograms of the same precision add");
        for (total, n) in counts.iter_mut().zip(c) {
            *total += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = counts.iter().sum();
    Ok(LoadReport {
        machine_prefix: plan.prefix.clone(),
        concurrency: args.concurrency,
        requests,
        activated: counts[0],
        refused: counts[1],
        errors: counts[2],
        seconds,
        requests_per_second: requests as f64 / seconds,
        latency_ms_p50: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        latency_ms_p99: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        latency_ms_max: histogram.max() as f64 / 1000.0,
        peer: None,
    })
}

/// What every client of one run shares: where to send, what, how many, how fast.
struct Plan {
    authority: String,
    /// For an `https://` server: how to open a TLS session to it.
    tls: Option<Tls>,
    /// The key and org as JSON strings.
    key: String,
    org: String,
    /// Request i's machine is `{prefix}-{i}` (checked: no character needs escaping).
    prefix: String,
    limit: u64,
    duration: Duration,
    /// With `--rate`: request i is sent no earlier than `i × interval` after the start.
    interval: Option<Duration>,
    /// The next request's number, taken by whichever client is free.
    next: AtomicU64,
    /// When the first client passed the barrier.
    start: std::sync::OnceLock<Instant>,
}

/// One simulated client: connects, waits for the others, then sends requests until the
/// plan's count or time runs out; its latencies and its counts of activated, refused and
/// failed requests.
async fn client(
    plan: Arc<Plan>,
    ready: Arc<tokio::sync::Barrier>,
) -> (hdrhistogram::Histogram<u64>, [u64; 3]) {
    let mut histogram = latency_histogram();
    let mut counts = [0u64; 3];
    let mut connection = connect(&plan).await.ok();
    ready.wait().await;
    let t0 = *plan.start.get_or_init(Instant::now);
    let deadline = t0 + plan.duration;
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.limit || Instant::now() >= deadline {
            break;
        }
        if let Some(interval) = plan.interval {
            let due = t0 + interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            tokio::time::sleep_until(due.into()).await;
        }
        let (key, org, prefix) = (&plan.key, &plan.org, &plan.prefix);
        let body = format!(
            r#"{{"product_key":{key},"org":{org},"method":"online","machines":["{prefix}-{i}"]}}"#
        );
        let sent = Instant::now();
        let outcome = match post(&mut connection, &plan, body).await {
            Ok(200..=299) => 0,
            Ok(400..=499) => 1,
            Ok(_) => 2,
            Err(_) => {
                connection = None;
                2
            }
        };
        histogram.saturating_record((sent.elapsed().as_micros() as u64).max(1));
        counts[outcome] += 1;
    }
    (histogram, counts)
}

/// One keep-alive HTTP/1.1 connection of one simulated client. The load generator shares
/// the cores with the server it measures, so it spends as little as it can per request:
/// the request is one preformatted write, the response is parsed in place (httparse, as
/// inside hyper) and only its status is kept.
struct Connection {
    stream: Box<dyn Stream>,
    received: Vec<u8>,
    request: Vec<u8>,
}

/// A connection's bytes: plain TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// How the clients open TLS sessions to an `https://` server.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
}

impl Tls {
    /// For the host of `authority` (`HOST:PORT`), trusting `cacert`'s CAs or the web's roots.
    fn for_authority(authority: &str, cacert: Option<&std::path::Path>) -> Result<Tls> {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow::anyhow!("--url: {host:?} is not a server name: {e}"))?;
        let config = crate::tls_client::client_config(cacert)?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(config),
            name,
        })
    }
}

async fn connect(plan: &Plan) -> Result<Connection> {
    let tcp = tokio::net::TcpStream::connect(&plan.authority).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match &plan.tls {
        None => Box::new(tcp),
        Some(tls) => Box::new(tls.connector.connect(tls.name.clone(), tcp).await?),
    };
    Ok(Connection {
        stream,
        received: Vec::with_capacity(4096),
        request: Vec::with_capacity(512),
    })
}

/// One activation over this client's connection (opened on first use); its status code.
async fn post(connection: &mut Option<Connection>, plan: &Plan, body: String) -> Result<u16> {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = &plan.authority;
    if connection.is_none() {
        *connection = Some(connect(plan).await?);
    }
    let conn = connection.as_mut().expect("connected above");
    conn.request.clear();
    write!(
        conn.request,
        "POST /v1/activations HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    conn.stream.write_all(&conn.request).await?;
    // A TLS stream may hold the records back until flushed (plain TCP: a no-op).
    conn.stream.flush().await?;
    loop {
        if let Some((status, used)) = parse_response(&conn.received)? {
            conn.received.drain(..used);
            return Ok(status);
        }
        if conn.stream.read_buf(&mut conn.received).await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

/// A complete response at the start of `bytes`: its status and its length in bytes.
fn parse_response(bytes: &[u8]) -> Result<Option<(u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(bytes)? else {
        return Ok(None);
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .context("a response without Content-Length")?;
    let length: usize = std::str::from_utf8(length.value)?.trim().parse()?;
    let status = response.code.context("a response without a status")?;
    Ok((bytes.len() >= head + length).then_some((status, head + length)))
}

/// Latencies in microseconds, 1 µs to 60 s, three significant figures.
fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("the bounds are valid")
}

/// A `keyledger serve` child on a temporary ledger holding one large MAK.
struct OwnServer {
    child: Child,
    _dir: tempfile::TempDir,
}

fn own_server(data: &keyledger_ledger::Location) -> Result<(String, OwnServer)> {
    let dir = tempfile::tempdir()?;
    let (path, data_arg) = match data {
        keyledger_ledger::Location::Postgres(url) => (data.clone(), url.expose().to_owned()),
        keyledger_ledger::Location::File(_) => {
            let file = dir.path().join("loadgen.redb");
            (
                keyledger_ledger::Location::File(file.clone()),
                file.display().to_string(),
            )
        }
    };
    let at = "2026-01-01T00:00:00Z";
    let mut engine = keyledger_ledger::init(
        &path,
        keyledger_core::Principal::new("loadgen")?,
        at.parse()?,
    )?;
    let setup = [
        json!({"type": "register_org", "at": at, "actor": "loadgen", "org": OWN_ORG, "name": "Load generator"}),
        json!({"type": "register_license_id", "at": at, "actor": "loadgen", "license_id": "V-LOAD", "org": OWN_ORG,
               "program": "select", "agreement_number": "LOAD"}),
        json!({"type": "register_product", "at": at, "actor": "loadgen", "product": "win11-pro", "name": "W11",
               "family": "windows_client", "version": "11", "edition": "pro", "key_requirement": "vl_key"}),
        json!({"type": "issue_key", "at": at, "actor": "loadgen", "license_id": "V-LOAD", "product": "win11-pro",
               "kind": "mak", "limit": keyledger_core::decide::COUNT_MAX, "product_key": OWN_KEY}),
    ];
    let commands = setup
        .into_iter()
        .map(keyledger_ledger::wire::command_from_value)
        .collect::<Result<Vec<_>, _>>()?;
    let answers = engine
        .run_batch(&[keyledger_ledger::Submission::new(commands)])
        .remove(0)?;
    anyhow::ensure!(
        answers.iter().all(|a| a.ok),
        "load generator set-up was refused: {answers:?}"
    );
    drop(engine);
    let said = dir.path().join("serve.log");
    let mut serve = Process::new(std::env::current_exe()?);
    serve
        .arg("--data")
        .arg(&data_arg)
        // A throwaway ledger: its checkpoint key is made here, pinned by nobody.
        .args(["serve", "--listen", "127.0.0.1:0", "--create-signing-key"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&said)?);
    // A PostgreSQL ledger keeps its key in a file the variable names: unless the caller
    // named one, the throwaway key lives with the throwaway server.
    if data.is_postgres() && std::env::var_os(SIGNING_KEY_ENV).is_none_or(|v| v.is_empty()) {
        serve.env(SIGNING_KEY_ENV, dir.path().join("checkpoint.ed25519"));
    }
    let mut child = serve.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.wait();
        let said = std::fs::read_to_string(&said).unwrap_or_default();
        bail!("the server did not start: {}", said.trim());
    };
    let url = url.to_owned();
    Ok((url, OwnServer { child, _dir: dir }))
}

impl OwnServer {
    fn stop(mut self) -> Result<()> {
        Process::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn responses_are_complete_only_with_their_whole_body() {
        let whole = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        let head = whole.len() - 11;
        assert_eq!(parse_response(&whole[..head - 2]).unwrap(), None);
        assert_eq!(parse_response(&whole[..whole.len() - 1]).unwrap(), None);
        assert_eq!(parse_response(whole).unwrap(), Some((422, whole.len())));
        // A second response behind the first is left for the next call.
        let two = [&whole[..], &whole[..]].concat();
        assert_eq!(parse_response(&two).unwrap(), Some((422, whole.len())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"not http at all\r\n\r\n").is_err());
    }
}
