//! Read models are rebuilt identically however they are reached, and their edge cases hold.
//! Method: histories are produced by running random commands through the real rules (core's
//! test harness); projections are folded from those events, snapshotted at every split
//! point, decoded and caught up, and compared by digest with a fold from zero.

use crate::harness;

use harness::*;
use keyledger_core::event::CoveragePhase;
use keyledger_core::*;
use keyledger_projections::history::{HistorySource, Of};
use keyledger_projections::{license_report, snapshot, Projections};
use proptest::prelude::*;

fn fold(events: &[Event]) -> Projections {
    let mut p = Projections::default();
    for (i, event) in events.iter().enumerate() {
        p.apply(i as u64 + 1, event);
    }
    p
}

/// A history from random activations, KMS traffic, grants, blocks and time steps.
fn history(ops: &[(u8, u8, u8)]) -> Vec<Event> {
    let mut h = Harness::with_catalog();
    h.role("adam", "V-SELECT", Role::Administrator);
    let (_, mak) = h.mak("V-SELECT", "win11-pro", 6);
    let esu = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(4)
        .coverage("2026-01-05T00:00:00Z", "2026-02-01T00:00:00Z");
    let (_, esu) = h.issue(esu);
    let (_, kms) = h.kms_key("V-SELECT", "ws2022-std");
    let mut requests = 0;
    for &(op, a, b) in ops {
        match op % 6 {
            0 => drop(h.run(
                "vamt",
                online(
                    &mak,
                    ["contoso", "fabrikam"][usize::from(a % 2)],
                    &format!("m{b}"),
                ),
            )),
            1 => drop(h.run("vamt", online(&esu, "contoso", &format!("s{b}")))),
            2 => drop(h.run("kms", kms_host(&kms, "contoso", &format!("h{}", a % 8)))),
            3 => drop(h.run(
                "kms",
                kms_client(
                    &format!("h{}", a % 8),
                    &format!("c{b}"),
                    ClientFamily::ALL[usize::from(b % 3)],
                ),
            )),
            4 => {
                requests += 1;
                let id = format!("rq{requests}");
                let body = command::CommandBody::RequestMakIncrease(command::RequestMakIncrease {
                    request_id: RequestId::new(id.clone()).unwrap(),
                    license_id: LicenseId::new("V-SELECT").unwrap(),
                    authorization_number: None,
                    product: ProductId::new("win11-pro").unwrap(),
                    key_last5: mak.last5(),
                    activations_needed: u64::from(a) + 1,
                    justification: "growth".into(),
                });
                if h.run("adam", body).is_ok() && b % 2 == 0 {
                    let grant = command::CommandBody::GrantRequest(command::GrantRequest {
                        request_id: RequestId::new(id).unwrap(),
                        amount: u64::from(b % 5) + 1,
                    });
                    h.ok(OPERATOR, grant);
                }
            }
            _ => h.now = h.now.plus(Span::seconds(i64::from(a) * 3600 * 6)),
        }
    }
    h.events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_and_catch_up_equal_a_rebuild_from_zero_at_every_split(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 20..120),
    ) {
        let events = history(&ops);
        let whole = snapshot::digest(&fold(&events));
        for split in 0..=events.len() {
            let bytes = snapshot::encode(&fold(&events[..split]), &[split as u8; 32]);
            let (mut p, chain) = snapshot::decode_bound(&bytes).unwrap();
            prop_assert_eq!(chain, [split as u8; 32], "the header's chain hash");
            for (i, event) in events.iter().enumerate().skip(split) {
                p.apply(i as u64 + 1, event);
            }
            prop_assert_eq!(snapshot::digest(&p), whole, "split at {}", split);
        }
    }

    #[test]
    fn as_of_n_from_a_snapshot_equals_a_fresh_fold_of_the_first_n(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 20..80),
        snap in any::<prop::sample::Index>(), n in any::<prop::sample::Index>(),
    ) {
        let events = history(&ops);
        let snap = snap.index(events.len());
        let n = snap + n.index(events.len() - snap + 1);
        let mut p = snapshot::decode(&snapshot::encode(&fold(&events[..snap]), &[0; 32])).unwrap();
        for (i, event) in events.iter().enumerate().take(n).skip(snap) {
            p.apply(i as u64 + 1, event);
        }
        prop_assert_eq!(p, fold(&events[..n]));
    }
}

#[test]
fn a_damaged_snapshot_is_refused_not_used() {
    let events = history(&[(0, 0, 1), (2, 1, 0), (3, 1, 2)]);
    let bytes = snapshot::encode(&fold(&events), &[7; 32]);
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        snapshot::decode(&flipped),
        Err(snapshot::SnapshotError::Digest)
    );
    let mut version = bytes.clone();
    version[0] = snapshot::SNAPSHOT_FORMAT_VERSION + 1;
    assert_eq!(
        snapshot::decode(&version),
        Err(snapshot::SnapshotError::Version(
            snapshot::SNAPSHOT_FORMAT_VERSION + 1
        ))
    );
    assert_eq!(
        snapshot::decode(&bytes[..10]),
        Err(snapshot::SnapshotError::Truncated(10))
    );
}

fn lid() -> LicenseId {
    LicenseId::new("V-SELECT").unwrap()
}

#[test]
fn r12_esu_coverage_flips_exactly_at_start_and_end() {
    let mut h = Harness::with_catalog();
    let spec = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(4)
        .coverage("2026-06-01T00:00:00Z", "2027-06-01T00:00:00Z");
    h.issue(spec);
    let p = fold(&h.events);
    let phase = |t: &str| license_report(&p, &lid(), ts(t)).unwrap().keys[0].esu_coverage;
    assert_eq!(
        phase("2026-05-31T23:59:59.999999Z"),
        Some(CoveragePhase::NotStarted)
    );
    assert_eq!(phase("2026-06-01T00:00:00Z"), Some(CoveragePhase::Active));
    assert_eq!(
        phase("2027-05-31T23:59:59.999999Z"),
        Some(CoveragePhase::Active)
    );
    assert_eq!(phase("2027-06-01T00:00:00Z"), Some(CoveragePhase::Ended));
}

#[test]
fn r14_a_kms_client_contact_expires_30_days_after_it_was_made() {
    let mut h = Harness::with_catalog();
    let (_, kms) = h.kms_key("V-SELECT", "ws2022-std");
    h.ok("kms", kms_host(&kms, "contoso", "h1"));
    h.at("2026-01-10T12:00:00Z");
    for i in 0..5 {
        h.ok(
            "kms",
            kms_client("h1", &format!("srv{i}"), ClientFamily::WindowsServer),
        );
    }
    let p = fold(&h.events);
    let host = &p.books.kms_hosts[&HostId::new("h1").unwrap()];
    assert_eq!(host.windows.count_at(ts("2026-02-09T11:59:59Z")), 5);
    assert_eq!(host.windows.count_at(ts("2026-02-09T12:00:00Z")), 0);
    let report = |t: &str| license_report(&p, &lid(), ts(t)).unwrap().kms_hosts[0].clone();
    assert!(report("2026-02-01T00:00:00Z").windows_server_threshold_met);
    assert!(!report("2026-02-01T00:00:00Z").windows_client_threshold_met);
    assert!(!report("2026-02-10T00:00:00Z").windows_server_threshold_met);
}

#[test]
fn r19_a_grant_raises_remaining_from_zero_in_the_report() {
    let mut h = Harness::with_catalog();
    let (_, mak) = h.mak("V-SELECT", "win11-pro", 1);
    h.role("adam", "V-SELECT", Role::Administrator);
    h.ok("vamt", online(&mak, "contoso", "pc-1"));
    h.refused("vamt", online(&mak, "contoso", "pc-2"));
    let remaining = |h: &Harness| {
        license_report(&fold(&h.events), &lid(), h.now)
            .unwrap()
            .keys[0]
            .clone()
    };
    let before = remaining(&h);
    assert_eq!((before.used, before.remaining), (1, 0));
    assert_eq!(before.refusals.get("insufficient_activations"), Some(&1));
    let request = command::CommandBody::RequestMakIncrease(command::RequestMakIncrease {
        request_id: RequestId::new("rq").unwrap(),
        license_id: lid(),
        authorization_number: None,
        product: ProductId::new("win11-pro").unwrap(),
        key_last5: mak.last5(),
        activations_needed: 10,
        justification: "more laptops".into(),
    });
    h.ok("adam", request);
    let grant = command::CommandBody::GrantRequest(command::GrantRequest {
        request_id: RequestId::new("rq").unwrap(),
        amount: 10,
    });
    h.ok(OPERATOR, grant);
    let after = remaining(&h);
    assert_eq!((after.total, after.remaining, after.granted), (11, 10, 10));
    let report = license_report(&fold(&h.events), &lid(), h.now).unwrap();
    assert_eq!(report.requests[0].requested_by, "adam");
    let outcome = serde_json::to_value(&report.requests[0]).unwrap();
    assert_eq!(outcome["outcome"], "granted");
    assert_eq!(outcome["decided_by"], OPERATOR);
}

#[test]
fn r01_disclosure_holders_at_a_past_seq_follow_role_history() {
    let mut h = Harness::with_catalog();
    h.role("rita", "V-SELECT", Role::ProductKeyReader);
    let assigned_at = h.events.len() as u64;
    let revoke = command::CommandBody::RevokeRole(command::RevokeRole {
        principal: principal("rita"),
        license_id: lid(),
        role: Role::ProductKeyReader,
    });
    h.ok(OPERATOR, revoke);
    h.role("vic", "V-SELECT", Role::KeyViewer);
    let p = fold(&h.events);
    assert_eq!(
        p.disclosure_holders_at(&lid(), assigned_at),
        vec![(principal("rita"), vec![Role::ProductKeyReader])]
    );
    assert!(
        p.disclosure_holders_at(&lid(), p.last_seq).is_empty(),
        "viewers cannot see text"
    );
}

/// The log's history index as this test keeps it: every event under every name it names
/// (`EventBody::named`, the rows the ledger writes), with no shared hashes.
struct Log<'a>(&'a [Event]);

impl HistorySource for Log<'_> {
    type Error = std::convert::Infallible;

    fn named_seqs(
        &self,
        named: &Named<'_>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, Self::Error> {
        Ok((1..=self.0.len() as u64)
            .filter(|seq| *seq > after && self.0[*seq as usize - 1].body.named().contains(named))
            .take(limit)
            .collect())
    }

    fn events(&self, seqs: &[u64]) -> Result<Vec<(u64, Event)>, Self::Error> {
        Ok(seqs
            .iter()
            .map(|s| (*s, self.0[*s as usize - 1].clone()))
            .collect())
    }
}

/// Every seq of `of`'s history by the rule alone, asked of every event of the log.
fn whole_history(p: &Projections, events: &[Event], of: Of<'_>) -> Vec<u64> {
    (1..=events.len() as u64)
        .filter(|seq| p.in_history(of, *seq, &events[*seq as usize - 1].body))
        .collect()
}

fn page_seqs(
    p: &Projections,
    events: &[Event],
    of: Of<'_>,
    from: u64,
    until: u64,
    limit: usize,
) -> Vec<u64> {
    let page = p
        .history_page(&Log(events), of, from, until, limit)
        .unwrap()
        .unwrap();
    page.into_iter().map(|(seq, _)| seq).collect()
}

#[test]
fn a_history_holds_the_events_of_a_license_id_and_of_a_key() {
    let mut h = Harness::with_catalog();
    let (key, mak) = h.mak("V-SELECT", "win11-pro", 2);
    h.ok("vamt", online(&mak, "contoso", "pc-1"));
    h.mak("V-EA", "win11-pro", 2);
    let p = fold(&h.events);
    let seqs = page_seqs(&p, &h.events, Of::Key(key), 1, u64::MAX, 100);
    assert_eq!(seqs.len(), 2);
    for seq in &seqs {
        let body = &h.events[*seq as usize - 1].body;
        assert!(
            matches!(body, EventBody::KeyIssued { key_id, .. } | EventBody::MachinesActivated { key_id, .. } if *key_id == key)
        );
    }
    let license = page_seqs(&p, &h.events, Of::License(&lid()), 1, u64::MAX, 1000);
    assert!(
        license.contains(&seqs[1]),
        "a key's activations are its license ID's"
    );
    assert!(
        !license.contains(&(h.events.len() as u64)),
        "the EA key is not"
    );
    assert!(p
        .history_page(&Log(&h.events), Of::Key(KeyId(999)), 1, 9, 9)
        .unwrap()
        .is_none());
}

/// A grant names only its request and a KMS client's contact only its host; both belong to
/// the key (and license ID) they are about, a contact to the key its host served then.
#[test]
fn grants_and_kms_contacts_are_in_their_keys_history() {
    let ops: Vec<(u8, u8, u8)> = (0u8..60).map(|i| (i % 5, i, i.wrapping_mul(7))).collect();
    let events = history(&ops);
    let p = fold(&events);
    let kms = p
        .books
        .keys
        .iter()
        .find(|(_, k)| k.kind == KeyKind::KmsHost)
        .unwrap()
        .0;
    let mak = p
        .books
        .keys
        .iter()
        .find(|(_, k)| k.kind == KeyKind::Mak)
        .unwrap()
        .0;
    let of_kms = page_seqs(&p, &events, Of::Key(kms), 1, u64::MAX, 10_000);
    let of_mak = page_seqs(&p, &events, Of::Key(mak), 1, u64::MAX, 10_000);
    let (mut contacts, mut grants) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        match &event.body {
            EventBody::KmsClientContacted { .. } => {
                contacts += 1;
                assert!(of_kms.contains(&seq), "contact at {seq}");
            }
            EventBody::RequestGranted { .. } => {
                grants += 1;
                assert!(of_mak.contains(&seq), "grant at {seq}");
            }
            _ => {}
        }
    }
    assert!(
        contacts > 0 && grants > 0,
        "{contacts} contacts, {grants} grants"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// F13 (hardening): a page of a history is the slice of the whole history the rule
    /// gives, for any window and limit, though it reads only the index's candidates from
    /// `from` on; and pages walked end to end are the whole (license ID, key, disclosures).
    #[test]
    fn f13_a_history_page_is_a_slice_of_the_whole(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 20..120),
        from in 1u64..120,
        span in 0u64..120,
        limit in 1usize..30,
        round in 1usize..6,
    ) {
        let events = history(&ops);
        let p = fold(&events);
        let license = lid();
        let mut whose = vec![Of::License(&license), Of::Disclosures(&license)];
        whose.extend(p.books.keys.iter().map(|(id, _)| Of::Key(id)));
        for of in whose {
            let whole = whole_history(&p, &events, of);
            let until = from + span;
            let expected: Vec<u64> = whole.iter().copied()
                .filter(|s| (from..=until).contains(s)).take(limit).collect();
            prop_assert_eq!(&page_seqs(&p, &events, of, from, until, limit), &expected, "{:?}", of);
            let in_rounds = p.history_page_in_rounds(&Log(&events), of, (from, until, limit), round)
                .unwrap().unwrap();
            let in_rounds: Vec<u64> = in_rounds.into_iter().map(|(seq, _)| seq).collect();
            prop_assert_eq!(in_rounds, expected, "{:?} in rounds of {}", of, round);
            let mut walked = Vec::new();
            let mut next = 1;
            loop {
                let page = page_seqs(&p, &events, of, next, u64::MAX, limit);
                let Some(last) = page.last() else { break };
                next = last + 1;
                walked.extend(page);
            }
            prop_assert_eq!(walked, whole, "{:?}", of);
        }
    }
}

/// Key export rows are typed (issue 14): the file and the JSON come from the same rows, so an
/// organization name holding a tab or a quote is quoted in the file and exact in the JSON.
#[test]
fn key_export_rows_survive_names_the_file_must_quote() {
    let mut h = Harness::new();
    let body = CommandBody::RegisterOrg(command::RegisterOrg {
        org: OrgId::new("tabby").unwrap(),
        name: "Tab\tand \"quote\" Ltd".into(),
        parent: None,
    });
    h.ok(OPERATOR, body);
    h.license("V-T", "tabby", Program::Select, None, None);
    h.product(
        "win11-pro",
        Family::WindowsClient,
        "11",
        "pro",
        KeyRequirement::VlKey,
    );
    h.role("rita", "V-T", Role::ProductKeyReader);
    let (_, text) = h.mak("V-T", "win11-pro", 3);
    let p = fold(&h.events);
    let export = keyledger_projections::keys::export_keys(
        &p,
        &keyledger_projections::keys::ExportScope::All,
        &principal("rita"),
        |_, _| Ok(Some(text.reveal().to_owned())),
    )
    .unwrap();
    assert_eq!(export.rows[0].organization, "Tab\tand \"quote\" Ltd");
    let (read, bad) = keyledger_projections::keys::read_key_export(&export.tsv[..]).unwrap();
    assert!(bad.is_empty());
    assert_eq!(read[0].1, export.rows[0]);
    let json = serde_json::to_value(&export.rows).unwrap();
    assert_eq!(json[0]["Organization name"], "Tab\tand \"quote\" Ltd");
    assert_eq!(json[0]["Product key"], text.reveal());
}

/// `golden/snapshot-v9.hex`: the snapshot (format 9) of a fixed history with KMS traffic,
/// grants and time steps. Snapshot bytes are a stored format: a change must bump
/// `SNAPSHOT_FORMAT_VERSION` and bless a new golden (`KEYLEDGER_BLESS=1`), and a snapshot of
/// another version is refused (its reader folds from the log instead).
#[test]
fn the_snapshot_format_matches_its_golden_file() {
    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/snapshot-v9.hex");
    let ops: Vec<(u8, u8, u8)> = (0u8..48).map(|i| (i % 6, i.wrapping_mul(3), i)).collect();
    let p = fold(&history(&ops));
    assert!(!p.kms_served.is_empty(), "the history has KMS hosts");
    let bytes = snapshot::encode(&p, &[9; 32]);
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(GOLDEN, hex::encode(&bytes) + "\n").unwrap();
    }
    let golden = hex::decode(std::fs::read_to_string(GOLDEN).unwrap().trim()).unwrap();
    assert_eq!(golden[0], snapshot::SNAPSHOT_FORMAT_VERSION);
    assert_eq!(
        hex::encode(&bytes),
        hex::encode(&golden),
        "snapshot bytes changed"
    );
    assert_eq!(snapshot::decode_bound(&golden).unwrap(), (p, [9; 32]));
    let mut older = golden.clone();
    older[0] = 8;
    assert!(
        snapshot::decode_bound(&older).is_err(),
        "a format-8 snapshot is refused"
    );
}
