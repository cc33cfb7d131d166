//! Where a ledger is: the `--data` value (or `KEYLEDGER_DATA`). A `postgres://` or
//! `postgresql://` URL (libpq's URL syntax: several `host:port` pairs, `dbname`, `user`,
//! `password`, `target_session_attrs`, ...) is a PostgreSQL database; anything else is the
//! path of a redb file.

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

impl PgUrl {
    pub fn parse(url: &str) -> Result<PgUrl> {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| Error::BadLocation(format!("{}: {e}", redact(url))))?;
        Ok(PgUrl(url.to_owned()))
    }

    pub fn config(&self) -> tokio_postgres::Config {
        self.0.parse().expect("checked when the URL was parsed")
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
}
