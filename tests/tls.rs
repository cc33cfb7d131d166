//! TLS on the service, through the real binary: `serve --tls-cert --tls-key` with a test
//! CA's certificate answers over https to a client that trusts that CA (and to no other),
//! refuses plain HTTP on its port, takes a renewed certificate on SIGHUP without a restart,
//! marks the console's cookies `Secure`, and `tail` and `bench http` reach it with `--cacert`.

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A test CA: its certificate in PEM (what clients trust) and what signs its leaves.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1, and its key, as PEM files in `dir`.
    fn leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, &self.pem).unwrap();
        file
    }
}

/// A client that trusts `ca_pem` alone.
fn client_trusting(ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|item| match item.unwrap() {
            ureq::tls::PemItem::Certificate(cert) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), ureq::Error> {
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

#[test]
fn serve_speaks_https_with_its_certificate_refuses_plain_http_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (
        TestCa::new("keyledger test CA 1"),
        TestCa::new("keyledger test CA 2"),
    );
    let (cert, key) = first_ca.leaf(dir.path(), "server");
    let server = support::Server::start_with(
        1_000,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let https = server.url.replace("127.0.0.1", "localhost");

    let trusting_first = client_trusting(&first_ca.pem);
    let (status, body) = get(&trusting_first, &format!("{https}/healthz")).unwrap();
    assert_eq!(status, 200, "{body}");
    // A client that trusts another CA refuses the server's certificate.
    let trusting_second = client_trusting(&second_ca.pem);
    assert!(get(&trusting_second, &format!("{https}/healthz")).is_err());

    // Plain HTTP on the TLS port is never answered in clear text.
    let address = server.url.trim_start_matches("https://");
    let mut plain = std::net::TcpStream::connect(address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A renewed certificate (from another CA here) is taken on SIGHUP, without a restart.
    let (renewed_cert, renewed_key) = second_ca.leaf(dir.path(), "renewed");
    std::fs::copy(&renewed_cert, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    let pid = server.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    // Fresh clients: a pooled connection (or a resumed session) would not show a new
    // certificate.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(
        &client_trusting(&second_ca.pem),
        &format!("{https}/healthz"),
    )
    .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(get(&client_trusting(&first_ca.pem), &format!("{https}/healthz")).is_err());
    assert_eq!(server.pid().to_string(), pid, "the same process serves");

    // The console's cookies are Secure over TLS.
    let mut sign_in = trusting_second
        .get(format!("{https}/ui/sign-in"))
        .call()
        .unwrap();
    let cookies: Vec<String> = sign_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let _ = sign_in.body_mut().read_to_string();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("Secure")),
        "{cookies:?}"
    );

    // tail reaches it with --cacert.
    let ca_file = second_ca.write(dir.path(), "ca");
    let tail = support::keyledger_command(&server.data)
        .args([
            "tail",
            "--url",
            &https,
            "--cacert",
            ca_file.to_str().unwrap(),
        ])
        .args([
            "--token",
            &server.token("olga"),
            "--from",
            "1",
            "--count",
            "2",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tail.stdout);
    assert!(
        tail.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    assert!(said.contains("operator_added"), "{said}");
}

#[test]
fn bench_http_loads_an_https_server_it_trusts_by_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("keyledger test CA");
    let (cert, key) = ca.leaf(dir.path(), "server");
    let server = support::Server::start_with(
        1_000_000,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let https = server.url.replace("127.0.0.1", "localhost");
    let ca_file = ca.write(dir.path(), "ca");
    let bench = support::keyledger_command(&server.data)
        .args([
            "bench",
            "http",
            "--url",
            &https,
            "--cacert",
            ca_file.to_str().unwrap(),
        ])
        .args(["--product-key", support::MAK, "--org", "contoso"])
        .args(["--requests", "200", "--concurrency", "4", "--json"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bench.stdout);
    assert!(
        bench.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(report["activated"], 200, "{report}");
}
