//! Histories: which events belong to a license ID's or a key's history (the one rule,
//! [`Projections::subjects`]) and reading them a page at a time from the index beside the log.
//!
//! The read models keep no list of seqs: a history grows with every event, and a decade of
//! activations would not fit in memory. The log's history index ([`HistorySource`]: rows
//! for every license ID, key, request, contacted KMS host and disclosed key an event names,
//! `EventBody::named`) gives candidates; a page merges the candidates of every name the
//! history is made of, reads those events and keeps the ones the rule puts in it. So a page
//! costs in proportion to the page and the number of names, never to the history.

use std::collections::BTreeSet;

use keyledger_core::catalog::KmsLine;
use keyledger_core::state::RequestKind;
use keyledger_core::{Event, EventBody, HostId, KeyId, LicenseId, Named};

use crate::model::Projections;

/// The log's history index and its events (the binary's store; a map in tests).
pub trait HistorySource {
    /// Why the source could not be read.
    type Error;
    /// Candidates for the events naming `named` after seq `after`: ascending, at most
    /// `limit` and fewer only when there are no more, every such event among them (a shared
    /// hash may add others).
    fn named_seqs(
        &self,
        named: &Named<'_>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, Self::Error>;
    /// The events at `seqs` (ascending, each in the log).
    fn events(&self, seqs: &[u64]) -> Result<Vec<(u64, Event)>, Self::Error>;
}

/// Whose history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Of<'a> {
    /// Every event about the license ID or one of its keys, and every disclosure of its keys'
    /// text (F4).
    License(&'a LicenseId),
    /// Every event about the key (not the disclosures of its text).
    Key(KeyId),
    /// The disclosures of the license ID's keys' text (R1, R2: who saw its keys).
    Disclosures(&'a LicenseId),
}

/// The histories an event belongs to: its license IDs (a key's events are its license ID's
/// too; a disclosure is every license ID's whose keys it showed) and its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subjects {
    /// The license IDs whose history the event belongs to.
    pub licenses: BTreeSet<LicenseId>,
    /// The key whose history it belongs to, if one.
    pub key: Option<KeyId>,
}

/// Candidates read from each name a round.
const ROUND: usize = 256;

impl Projections {
    /// The histories the event at `seq` belongs to: the history rule, asked by the fold (for
    /// daily counts) and by every history read (to keep the index's candidates that belong).
    /// Exact at any later point of the log: a request's license ID and key never change, and
    /// a KMS client's contact belongs to the key its host served for that line at `seq`.
    pub fn subjects(&self, seq: u64, body: &EventBody) -> Subjects {
        // What the event names in its own fields (`EventBody::named`, the index's rows),
        // resolved: a request to its license ID and key, a contacted host to the key it
        // served, a key (or a disclosed one) to its license ID too.
        let mut subjects = Subjects::default();
        for named in body.named() {
            let key = match named {
                Named::License(id) => {
                    subjects.licenses.insert(id.clone());
                    None
                }
                Named::Key(key) => Some(key),
                Named::Request(id) => self.books.requests.get(id).and_then(|request| {
                    subjects.licenses.insert(request.license_id.clone());
                    request_key(&request.kind)
                }),
                Named::KmsHost(host) => match body {
                    EventBody::KmsClientContacted { family, .. } => {
                        self.key_served(host, family.kms_line(), seq)
                    }
                    _ => None,
                },
                Named::Disclosure(key) => {
                    subjects.licenses.extend(self.license_of(key));
                    None
                }
            };
            if let Some(key) = key {
                subjects.licenses.extend(self.license_of(key));
                subjects.key = Some(key);
            }
        }
        subjects
    }

    fn license_of(&self, key: KeyId) -> Option<LicenseId> {
        self.books.keys.get(key).map(|k| k.license_id.clone())
    }

    /// The key `host` served for `line` just before `seq` (the last activation of the host
    /// for that line before it).
    pub fn key_served(&self, host: &HostId, line: KmsLine, seq: u64) -> Option<KeyId> {
        self.kms_served
            .get(host)?
            .iter()
            .rev()
            .find(|(at, served_line, _)| *at < seq && *served_line == line)
            .map(|(_, _, key)| *key)
    }

    /// Whether the event at `seq` is in `of`'s history.
    pub fn in_history(&self, of: Of<'_>, seq: u64, body: &EventBody) -> bool {
        let subjects = self.subjects(seq, body);
        match of {
            Of::License(id) => subjects.licenses.contains(id),
            Of::Key(key) => subjects.key == Some(key),
            Of::Disclosures(id) => {
                matches!(body, EventBody::KeysDisclosed { .. }) && subjects.licenses.contains(id)
            }
        }
    }

    /// The names whose index rows hold every event of `of`'s history (`None`: no such
    /// license ID or key).
    pub fn history_names(&self, of: Of<'_>) -> Option<Vec<Named<'_>>> {
        match of {
            Of::Key(key) => {
                let license = &self.books.keys.get(key)?.license_id;
                Some(self.key_names(key, self.license_views.get(license)?))
            }
            Of::License(id) => {
                let view = self.license_views.get(id)?;
                let (id, _) = self.license_views.get_key_value(id)?;
                let mut names = vec![Named::License(id)];
                names.extend(view.requests.iter().map(Named::Request));
                for key in &view.keys {
                    names.extend(self.key_names(*key, view));
                    names.push(Named::Disclosure(*key));
                }
                names.sort_unstable();
                names.dedup();
                Some(names)
            }
            Of::Disclosures(id) => {
                let view = self.license_views.get(id)?;
                Some(view.keys.iter().map(|k| Named::Disclosure(*k)).collect())
            }
        }
    }

    /// A key's own rows, its requests' (grants and denials name only the request) and those
    /// of every KMS host it served (a contact names only its host).
    fn key_names<'a>(&'a self, key: KeyId, view: &'a crate::model::LicenseView) -> Vec<Named<'a>> {
        let mut names = vec![Named::Key(key)];
        names.extend(
            view.requests
                .iter()
                .filter(|r| {
                    self.books
                        .requests
                        .get(*r)
                        .is_some_and(|request| request_key(&request.kind) == Some(key))
                })
                .map(Named::Request),
        );
        names.extend(
            self.kms_served
                .iter()
                .filter(|(_, served)| served.iter().any(|(_, _, k)| *k == key))
                .map(|(host, _)| Named::KmsHost(host)),
        );
        names
    }

    /// At most `limit` events of `of`'s history with seqs in `from..=until`, in order (`None`:
    /// no such license ID or key). Each round reads up to `ROUND` candidates of every name
    /// past the last seq settled, and settles the candidates up to the lowest last seq of a
    /// name whose round came back full (past it, that name may hold more).
    pub fn history_page<S: HistorySource>(
        &self,
        source: &S,
        of: Of<'_>,
        from: u64,
        until: u64,
        limit: usize,
    ) -> Result<Option<Vec<(u64, Event)>>, S::Error> {
        self.history_page_in_rounds(source, of, (from, until, limit), ROUND)
    }

    /// [`Projections::history_page`] reading `round` candidates a name a round (tests make
    /// it small, so that a page takes many rounds).
    #[doc(hidden)]
    pub fn history_page_in_rounds<S: HistorySource>(
        &self,
        source: &S,
        of: Of<'_>,
        (from, until, limit): (u64, u64, usize),
        round: usize,
    ) -> Result<Option<Vec<(u64, Event)>>, S::Error> {
        assert!(round > 0, "a round reads at least one candidate");
        let Some(names) = self.history_names(of) else {
            return Ok(None);
        };
        let until = until.min(self.last_seq);
        let mut page = Vec::new();
        let mut after = from.saturating_sub(1);
        while page.len() < limit && after < until {
            let mut settled = until;
            let mut candidates = Vec::new();
            for named in &names {
                let seqs = source.named_seqs(named, after, round)?;
                if seqs.len() == round {
                    settled = settled.min(*seqs.last().expect("a full round"));
                }
                candidates.extend(seqs);
            }
            candidates.retain(|seq| *seq <= settled);
            candidates.sort_unstable();
            candidates.dedup();
            for (seq, event) in source.events(&candidates)? {
                if page.len() < limit && self.in_history(of, seq, &event.body) {
                    page.push((seq, event));
                }
            }
            after = settled;
        }
        Ok(Some(page))
    }
}

fn request_key(kind: &RequestKind) -> Option<KeyId> {
    match kind {
        RequestKind::MakIncrease { key_id, .. } => Some(*key_id),
        RequestKind::Kms { key_id, .. } => *key_id,
    }
}
