//! Where a ledger is: the `--data` value (or `KEYLEDGER_DATA`). A `postgres://` or
//! `postgresql://` URL (libpq's URL syntax: several `host:port` pairs, `dbname`, `user`,
//! `password`, `target_session_attrs`, ...) is a PostgreSQL database; anything else is the
//! path of a redb file.
//!
//! libpq's TLS parameters are honoured as libpq does: `sslmode` (`disable`, `prefer` (the
//! default), `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of CA
//! certificates, or `system` for the web's roots). tokio-postgres knows only the first
//! three modes and no `sslrootcert`, so [`PgUrl`] takes them out of what it hands it and
//! keeps them in a [`PgTls`] for the store's connector.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variable that names the checkpoint signing key file. A redb ledger's
/// key defaults to a file beside it; a PostgreSQL ledger has no "beside", and its key is
/// kept out of the database on purpose (whoever can write the tables must not also be able
/// to sign checkpoints over them), so it must be named.
pub const SIGNING_KEY_ENV: &str = "KEYLEDGER_SIGNING_KEY";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Postgres(PgUrl),
}

/// A PostgreSQL connection URL, checked by `tokio-postgres`'s parser. `Display` hides the
/// password, so it can be printed in messages and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

/// How a connection is protected: libpq's `sslmode`, after its own rule that `require`
/// with an `sslrootcert` checks the certificate's chain as `verify-ca` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Clear text only.
    Disable,
    /// TLS if the server offers it, clear text if not; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, and the certificate must chain to one of `sslrootcert`'s CAs.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

/// Where the CA certificates that `verify-ca` and `verify-full` trust come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file (`sslrootcert=PATH`), read at every connection so that a renewed CA
    /// bundle is taken up without a restart.
    File(PathBuf),
    /// The web's roots (`sslrootcert=system`), for a managed database whose certificate a
    /// public CA signed.
    System,
}

/// A URL's TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub roots: Option<RootCerts>,
}

impl PgUrl {
    pub fn parse(url: &str) -> Result<PgUrl> {
        let (rest, _) =
            split_tls(url).map_err(|e| Error::BadLocation(format!("{}: {e}", redact(url))))?;
        rest.parse::<tokio_postgres::Config>()
            .map_err(|e| Error::BadLocation(format!("{}: {e}", redact(url))))?;
        Ok(PgUrl(url.to_owned()))
    }

    /// The connection settings tokio-postgres takes (the TLS parameters it does not know
    /// are in [`PgUrl::tls`]).
    pub fn config(&self) -> tokio_postgres::Config {
        let (rest, _) = split_tls(&self.0).expect("checked when the URL was parsed");
        rest.parse().expect("checked when the URL was parsed")
    }

    /// The URL's TLS settings.
    pub fn tls(&self) -> PgTls {
        split_tls(&self.0)
            .expect("checked when the URL was parsed")
            .1
    }

    /// One URL per server the URL names (`host1:port1,host2:port2` in its authority), in
    /// order, each otherwise the same; a URL of one server is its own list.
    pub fn servers(&self) -> Vec<PgUrl> {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return vec![self.clone()];
        };
        let start = scheme_end + 3;
        let end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| start + i);
        let authority = &url[start..end];
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        if !hosts.contains(',') {
            return vec![self.clone()];
        }
        hosts
            .split(',')
            .map(|host| PgUrl(format!("{}{userinfo}{host}{}", &url[..start], &url[end..])))
            .collect()
    }

    /// The URL with its password, to hand to a child process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// The URL without `sslrootcert` and with `sslmode` as tokio-postgres knows it (`verify-*`
/// become `require`: TLS or no connection; the connector does the checking), and the TLS
/// settings taken out.
fn split_tls(url: &str) -> std::result::Result<(String, PgTls), String> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((
            url.to_owned(),
            PgTls {
                mode: SslMode::Prefer,
                roots: None,
            },
        ));
    };
    let (mut mode, mut roots) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match key {
            "sslmode" => {
                mode = Some(match &*value {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other}: expected disable, prefer, require, verify-ca or \
                             verify-full"
                        ))
                    }
                });
            }
            "sslrootcert" if value.is_empty() => return Err("sslrootcert is empty".to_owned()),
            "sslrootcert" if value == "system" => roots = Some(RootCerts::System),
            "sslrootcert" => roots = Some(RootCerts::File(PathBuf::from(&*value))),
            _ => kept.push(pair),
        }
    }
    let mode = match (mode.unwrap_or(SslMode::Prefer), &roots) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => {
            let name = if mode == SslMode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            };
            return Err(format!(
                "sslmode={name} needs sslrootcert=FILE (the PEM file of the CA certificates \
                 that signed the server's), or sslrootcert=system for the web's roots"
            ));
        }
        (mode, _) => mode,
    };
    kept.push(match mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "sslmode=require",
    });
    Ok((format!("{head}?{}", kept.join("&")), PgTls { mode, roots }))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; `password=` query
/// parameters likewise.
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = authority_start + colon + 1;
                out.replace_range(from..authority_start + at, "***");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let from = i + "password=".len();
        let to = out[from..].find('&').map_or(out.len(), |j| from + j);
        out.replace_range(from..to, "***");
    }
    out
}

impl Location {
    pub fn parse(text: &str) -> Result<Location> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Location::Postgres(PgUrl::parse(text)?));
        }
        if text.is_empty() {
            return Err(Error::BadLocation("--data is empty".to_owned()));
        }
        Ok(Location::File(PathBuf::from(text)))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// The file of the checkpoint signing key: `$KEYLEDGER_SIGNING_KEY` when set, else
    /// `FILE.ed25519` beside a redb file; a PostgreSQL ledger needs the variable.
    pub fn signing_key_path(&self) -> Result<PathBuf> {
        if let Some(path) = std::env::var_os(SIGNING_KEY_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        match self {
            Location::File(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".ed25519");
                Ok(PathBuf::from(name))
            }
            Location::Postgres(url) => Err(Error::BadLocation(format!(
                "{url}: a PostgreSQL ledger's checkpoint signing key is a file of its own, kept \
                 out of the database; set {SIGNING_KEY_ENV}=PATH (`init` creates it there)"
            ))),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl std::str::FromStr for Location {
    type Err = Error;
    fn from_str(text: &str) -> Result<Location> {
        Location::parse(text)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::File(path.to_owned())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::File(path)
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::File(path.clone())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

impl From<PgUrl> for Location {
    fn from(url: PgUrl) -> Location {
        Location::Postgres(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_postgres_and_anything_else_a_file() {
        let pg = Location::parse("postgres://kl:pw@127.0.0.1:5432,127.0.0.1:5433/ledger").unwrap();
        assert!(pg.is_postgres());
        assert_eq!(
            pg.to_string(),
            "postgres://kl:***@127.0.0.1:5432,127.0.0.1:5433/ledger"
        );
        assert_eq!(
            Location::parse("ledger.redb").unwrap(),
            Location::File(PathBuf::from("ledger.redb"))
        );
        assert!(matches!(
            Location::parse("postgres://h/db?sslmode=nonsense"),
            Err(Error::BadLocation(_))
        ));
        let Location::Postgres(url) = &pg else {
            unreachable!()
        };
        let servers: Vec<String> = url
            .servers()
            .iter()
            .map(|u| u.expose().to_owned())
            .collect();
        assert_eq!(
            servers,
            [
                "postgres://kl:pw@127.0.0.1:5432/ledger",
                "postgres://kl:pw@127.0.0.1:5433/ledger"
            ]
        );
        assert_eq!(
            redact("postgresql:///db?host=/tmp&password=hunter2&user=u"),
            "postgresql:///db?host=/tmp&password=***&user=u"
        );
    }

    fn tls_of(url: &str) -> PgTls {
        PgUrl::parse(url).unwrap().tls()
    }

    #[test]
    fn sslmode_and_sslrootcert_are_libpqs() {
        let none = tls_of("postgres://u@h/db");
        assert_eq!((none.mode, none.roots), (SslMode::Prefer, None));
        assert_eq!(
            tls_of("postgres://u@h/db?sslmode=disable").mode,
            SslMode::Disable
        );
        assert_eq!(
            tls_of("postgres://u@h/db?sslmode=require").mode,
            SslMode::Require
        );
        // libpq: `require` with a root certificate checks the chain.
        let url = "postgres://u@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem";
        let require = tls_of(url);
        assert_eq!(require.mode, SslMode::VerifyCa);
        assert_eq!(
            require.roots,
            Some(RootCerts::File(PathBuf::from("/etc/ca.pem")))
        );
        let full = PgUrl::parse(
            "postgres://u@h1:1,h2:2/db?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=system",
        )
        .unwrap();
        assert_eq!(full.tls().mode, SslMode::VerifyFull);
        assert_eq!(full.tls().roots, Some(RootCerts::System));
        // tokio-postgres sees `require` (TLS or nothing) and no sslrootcert; the rest is kept.
        let config = full.config();
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(full.servers().len(), 2);
        assert_eq!(full.servers()[1].tls().mode, SslMode::VerifyFull);
    }

    #[test]
    fn a_tls_setting_that_cannot_be_honoured_is_refused() {
        for (url, why) in [
            (
                "postgres://h/db?sslmode=verify-full",
                "sslmode=verify-full needs sslrootcert=FILE",
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                "sslmode=verify-ca needs sslrootcert=FILE",
            ),
            (
                "postgres://h/db?sslmode=allow",
                "sslmode=allow: expected disable, prefer",
            ),
            (
                "postgres://h/db?sslmode=require&sslrootcert=",
                "sslrootcert is empty",
            ),
            ("postgres://h/db?sslcert=c.pem", "sslcert"),
        ] {
            let err = PgUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
