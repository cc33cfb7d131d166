//! Golden byte vectors: the record bytes of one event of every type, and the chain head over
//! them, exactly as this build writes them. The log is forever, so a change of any byte here
//! fails until docs/format.md, the format version and `golden/records.hex` change together.
//!
//! To write the fixture after a deliberate format change: `KEYLEDGER_BLESS=1 cargo test -p
//! keyledger-ledger --test ledger golden::`, then review the diff.

use keyledger_core::event::{ActivationAttempt, Coverage};
use keyledger_core::*;
use keyledger_ledger::chain::{link, GENESIS};
use keyledger_ledger::codec::{decode_record, encode_record};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/records.hex");

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn id<T: TryFrom<String>>(text: &str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(text.to_owned()).unwrap()
}

/// One event of every type, with every optional field set in some and absent in others.
fn samples() -> Vec<Event> {
    let coverage = Coverage {
        start: ts("2026-01-01T00:00:00Z"),
        end: ts("2027-01-01T00:00:00Z"),
    };
    let bodies = vec![
        EventBody::OperatorAdded {
            principal: id("olga"),
        },
        EventBody::OrgRegistered {
            org: id("contoso-east"),
            name: "Contoso East".into(),
            parent: Some(id("contoso")),
        },
        EventBody::LicenseIdRegistered {
            license_id: id("V1234567"),
            org: id("contoso"),
            program: Program::OpenLicense,
            agreement_number: "AGR-1".into(),
            authorization_number: Some("AUTH-9".into()),
            purchase_account: None,
        },
        EventBody::ProductRegistered {
            product: id("ws2022-std"),
            name: "Windows Server 2022 Standard".into(),
            family: Family::WindowsServer,
            version: "2022".into(),
            edition: "standard".into(),
            key_requirement: KeyRequirement::VlKey,
        },
        EventBody::PurchaseRecorded {
            license_id: id("V1234567"),
            product: id("ws2022-std"),
            quantity: 40,
        },
        EventBody::KeyIssued {
            key_id: KeyId(1),
            license_id: id("V1234567"),
            product: id("ws2022-std"),
            kind: KeyKind::EsuMak,
            limit: 500,
            hosts_max: 0,
            per_host_max: 0,
            coverage: Some(coverage),
            fingerprint: Fingerprint([0x5a; 32]),
            last5: Last5::parse("6789B").unwrap(),
        },
        EventBody::KeyBlocked { key_id: KeyId(1) },
        EventBody::EsuOrdered {
            order_id: id("esu-1"),
            license_id: id("V1234567"),
            product: id("ws2022-std"),
            coverage,
        },
        EventBody::MachinesActivated {
            key_id: KeyId(1),
            org: id("contoso"),
            method: ActivationMethod::Proxy,
            machines: vec![id("pc-1"), id("pc-2")],
            already_active: 3,
        },
        EventBody::KmsHostActivated {
            key_id: KeyId(2),
            org: id("contoso"),
            host: id("kms-1"),
            activation: 2,
        },
        EventBody::KmsClientContacted {
            host: id("kms-1"),
            client: id("pc-9"),
            family: ClientFamily::WindowsClient,
            count: 24,
            status: ActivationStatus::PendingThreshold,
        },
        EventBody::OsaRedeemed {
            key_id: KeyId(3),
            tenant: id("contoso.onmicrosoft.com"),
        },
        EventBody::ActivationRefused {
            key_id: Some(KeyId(1)),
            attempt: ActivationAttempt::Mak {
                org: id("contoso"),
                method: ActivationMethod::Online,
                machines: 1,
            },
            code: RefusalCode::InsufficientActivations,
            remaining: Some(0),
        },
        EventBody::MakIncreaseRequested {
            request_id: id("rq-1"),
            license_id: id("V1234567"),
            product: id("ws2022-std"),
            key_id: KeyId(1),
            activations_needed: 100,
            justification: "new branch".into(),
        },
        EventBody::KmsRequested {
            request_id: id("rq-2"),
            license_id: id("V1234567"),
            product: id("ws2022-std"),
            reason: KmsRequestReason::AdditionalHosts,
            key_id: Some(KeyId(2)),
            host_activations_needed: 2,
            justification: "second site".into(),
        },
        EventBody::RequestGranted {
            request_id: id("rq-1"),
            amount: 100,
        },
        EventBody::RequestDenied {
            request_id: id("rq-2"),
            reason: "not needed".into(),
        },
        EventBody::RoleAssigned {
            principal: id("rita"),
            license_id: id("V1234567"),
            role: Role::ProductKeyReader,
        },
        EventBody::RoleRevoked {
            principal: id("rita"),
            license_id: id("V1234567"),
            role: Role::ProductKeyReader,
        },
        EventBody::KeysDisclosed {
            key_ids: vec![KeyId(1), KeyId(2)],
            channel: DisclosureChannel::Export,
            export_digest: Some(Digest([0xd1; 32])),
        },
        EventBody::KeyTextRetired {
            key_id: KeyId(2),
            reason: "posted publicly".to_owned(),
        },
        EventBody::ExternalCountRecorded {
            key_id: KeyId(1),
            source: "microsoft-activation-service".to_owned(),
            remaining: 112,
            observed_at: ts("2026-03-01T08:00:00Z"),
            note: Some("VAMT refresh remaining count".to_owned()),
            ledger_remaining: 120,
        },
        EventBody::MachinesAlreadyActive {
            key_id: KeyId(1),
            org: id("contoso"),
            method: ActivationMethod::Proxy,
            machines: vec![id("pc-1"), id("pc-2")],
        },
        EventBody::StreamsCommitted {
            size: 23,
            streams: 9,
            root: keyledger_core::Digest([0x5a; 32]),
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            at: ts("2026-03-01T09:30:00.5Z").plus(Span::seconds(i as i64)),
            actor: id("olga"),
            body,
        })
        .collect()
}

fn render() -> String {
    let mut out = String::new();
    let mut head = GENESIS;
    for (i, event) in samples().iter().enumerate() {
        let record = encode_record(event);
        head = link(&head, i as u64 + 1, &record);
        out.push_str(&format!(
            "{} {}\n",
            event.body.type_name(),
            hex::encode(&record)
        ));
    }
    out.push_str(&format!("chain_head {}\n", hex::encode(head)));
    out
}

/// The list of kinds is core's (`EventKind::ALL`, which the compiler keeps complete): a new
/// event without a golden sample fails here.
#[test]
fn every_event_kind_has_a_golden_record_in_variant_order() {
    let kinds: Vec<EventKind> = samples().iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds,
        EventKind::ALL,
        "add a sample for each new event kind, in variant order"
    );
}

const EVENTS_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events.jsonl");

/// The `event` JSON that exports and proof files carry, one sample of every kind a line:
/// public contract as much as the record bytes.
#[test]
fn event_json_of_every_kind_matches_the_golden_file() {
    let rendered: String = samples()
        .iter()
        .map(|e| keyledger_ledger::wire::event_to_json(e).to_string() + "\n")
        .collect();
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(EVENTS_FIXTURE, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(EVENTS_FIXTURE).expect("golden/events.jsonl exists");
    assert_eq!(golden.lines().count(), EventKind::ALL.len());
    for (want, got) in golden.lines().zip(rendered.lines()) {
        assert_eq!(
            got, want,
            "event JSON changed: it is public API (docs/api.md)"
        );
    }
    // Each line reads back as its event.
    for (line, event) in golden.lines().zip(samples()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["type"], event.body.type_name());
    }
}

#[test]
fn record_bytes_and_chain_head_match_the_golden_file() {
    let rendered = render();
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(FIXTURE, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(FIXTURE).expect("golden/records.hex exists");
    for (want, got) in golden.lines().zip(rendered.lines()) {
        assert_eq!(
            got, want,
            "record bytes changed: bump the format version (docs/format.md)"
        );
    }
    assert_eq!(golden.lines().count(), rendered.lines().count());
}

#[test]
fn golden_records_decode_to_the_same_events() {
    let golden = std::fs::read_to_string(FIXTURE).expect("golden/records.hex exists");
    let events: Vec<Event> = golden
        .lines()
        .filter(|l| !l.starts_with("chain_head"))
        .map(|l| decode_record(&hex::decode(l.split_once(' ').unwrap().1).unwrap()).unwrap())
        .collect();
    assert_eq!(events, samples());
}

/// Variants of fields inside an event that arrived after the event itself: each must keep
/// its bytes and JSON as well (`golden/attempts.txt`: name, record hex, event JSON).
const ATTEMPTS_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/attempts.txt");

fn attempt_samples() -> Vec<(&'static str, Event)> {
    let refused = |attempt| Event {
        at: ts("2026-03-02T10:00:00Z"),
        actor: id("activation-client"),
        body: EventBody::ActivationRefused {
            key_id: Some(KeyId(1)),
            attempt,
            code: RefusalCode::InsufficientActivations,
            remaining: Some(1),
        },
    };
    vec![(
        "mak_machines",
        refused(ActivationAttempt::MakMachines {
            org: id("contoso"),
            method: ActivationMethod::Proxy,
            machines: vec![id("pc-7"), id("pc-8")],
        }),
    )]
}

#[test]
fn nested_variants_keep_their_bytes_and_json() {
    let rendered: String = attempt_samples()
        .iter()
        .map(|(name, event)| {
            let json = keyledger_ledger::wire::event_to_json(event);
            format!("{name} {} {json}\n", hex::encode(encode_record(event)))
        })
        .collect();
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(ATTEMPTS_FIXTURE, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(ATTEMPTS_FIXTURE).expect("golden/attempts.txt exists");
    assert_eq!(
        rendered, golden,
        "record bytes or event JSON changed (docs/format.md)"
    );
    for (line, (_, event)) in golden.lines().zip(attempt_samples()) {
        let record = hex::decode(line.split(' ').nth(1).unwrap()).unwrap();
        assert_eq!(decode_record(&record).unwrap(), event);
    }
}

#[test]
fn the_record_layout_is_the_documented_one() {
    // OperatorAdded{principal:"olga"} at 2026-03-01T09:30:00.5Z by "olga":
    // version 1 | at: zigzag varint i64 | actor: len 4 "olga" | variant 0 | principal: len 4 "olga"
    let record = encode_record(&samples()[0]);
    assert_eq!(record[0], 1, "format version byte");
    assert_eq!(
        record[1], 0xfd,
        "a varint i64 over u32 range starts with the 0xfd marker"
    );
    let micros = ts("2026-03-01T09:30:00.5Z").unix_micros();
    let zigzag = (micros << 1) ^ (micros >> 63);
    assert_eq!(&record[2..10], &(zigzag as u64).to_le_bytes());
    assert_eq!(&record[10..15], b"\x04olga");
    assert_eq!(record[15], 0, "EventBody variant index");
    assert_eq!(&record[16..], b"\x04olga");
}

/// Blocks of both formats, as written when each was introduced: they must read back to the
/// golden records forever. (Only reading is locked: LZ4 output may differ between compressor
/// versions, which is harmless because the chain covers the records, not the container.)
const BLOCK_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/blocks.hex");

fn sample_block() -> (Vec<Vec<u8>>, keyledger_ledger::chain::ChainHash) {
    let records: Vec<Vec<u8>> = samples().iter().map(encode_record).collect();
    let mut head = GENESIS;
    for (i, record) in records.iter().enumerate() {
        head = link(&head, i as u64 + 1, record);
    }
    (records, head)
}

#[test]
fn golden_blocks_of_both_formats_read_back_to_the_golden_records() {
    use keyledger_ledger::block::{Block, BlockWriter, BLOCK_FORMAT_LZ4, BLOCK_FORMAT_STORED};
    let (records, head) = sample_block();
    if std::env::var_os("KEYLEDGER_BLESS_BLOCKS").is_some() {
        let mut lz4 = BlockWriter::new(1);
        records.iter().for_each(|r| lz4.push(r));
        let mut stored = BlockWriter::new(1);
        stored.push(&records[0]);
        let first_head = link(&GENESIS, 1, &records[0]);
        let text = format!(
            "lz4 {}\nstored {}\n",
            hex::encode(lz4.finish(&head)),
            hex::encode(stored.finish(&first_head))
        );
        std::fs::write(BLOCK_FIXTURE, text).unwrap();
    }
    let golden = std::fs::read_to_string(BLOCK_FIXTURE).expect("golden/blocks.hex exists");
    let mut lines = golden
        .lines()
        .map(|l| hex::decode(l.split_once(' ').unwrap().1).unwrap());
    let (lz4, stored) = (lines.next().unwrap(), lines.next().unwrap());
    assert_eq!(lz4[0], BLOCK_FORMAT_LZ4);
    let block = Block::parse(&lz4).unwrap();
    // The golden block holds the samples of when it was written: event kinds added since
    // then are golden records, not in it.
    let held = block.len();
    assert!(held >= 20 && held <= records.len(), "{held} records");
    assert_eq!(
        block.records().map(<[u8]>::to_vec).collect::<Vec<_>>(),
        records[..held]
    );
    let head_then = records[..held]
        .iter()
        .enumerate()
        .fold(GENESIS, |h, (i, r)| link(&h, i as u64 + 1, r));
    assert_eq!((block.first_seq, block.head), (1, head_then));
    if held == records.len() {
        assert_eq!(block.head, head);
    }
    assert_eq!(stored[0], BLOCK_FORMAT_STORED);
    // The stored layout, byte by byte: format, first seq, count, length, record, head.
    assert_eq!(&stored[1..9], &1u64.to_le_bytes());
    assert_eq!(&stored[9..13], &1u32.to_le_bytes());
    assert_eq!(&stored[13..17], &(records[0].len() as u32).to_le_bytes());
    assert_eq!(&stored[17..17 + records[0].len()], records[0].as_slice());
    assert_eq!(
        &stored[17 + records[0].len()..],
        &link(&GENESIS, 1, &records[0])
    );
    let block = Block::parse(&stored).unwrap();
    assert_eq!(block.record(0), records[0].as_slice());
}

const CONSUMER_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/consumer.json");

/// A durable consumer's stored record (both stores keep these bytes): public contract, and
/// records written by earlier builds must keep reading.
#[test]
fn a_consumer_record_matches_the_golden_file_and_reads_back() {
    use keyledger_ledger::consumer::Consumer;
    let mut consumer = Consumer::new(
        "siem",
        Some("V3000003"),
        &["keys_disclosed".to_owned(), "activation_refused".to_owned()],
        keyledger_core::Timestamp::parse("2026-12-02T07:09:10.057889Z").unwrap(),
    )
    .unwrap();
    consumer.position = 70;
    consumer.reset_at = Some(keyledger_core::Timestamp::parse("2026-12-02T08:00:00Z").unwrap());
    let rendered = String::from_utf8(consumer.to_bytes()).unwrap() + "\n";
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(CONSUMER_FIXTURE, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(CONSUMER_FIXTURE).expect("golden/consumer.json exists");
    assert_eq!(
        rendered, golden,
        "the consumer record changed: it is stored (docs/format.md, `consumers`)"
    );
    let read = Consumer::from_bytes("siem", golden.trim_end().as_bytes()).unwrap();
    assert_eq!(read, consumer);
    assert_eq!(
        read.types,
        ["activation_refused", "keys_disclosed"],
        "kept sorted"
    );
}

const WEBHOOK_CONSUMER_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/consumer-webhook.json"
);

/// A webhook consumer's record, with one failed and one delivered attempt kept.
#[test]
fn a_webhook_consumer_record_matches_the_golden_file_and_reads_back() {
    use keyledger_ledger::consumer::{Attempt, Consumer, DeliveryState, Signing, Webhook};
    let at = |text| keyledger_core::Timestamp::parse(text).unwrap();
    let mut consumer = Consumer::new("tickets", None, &[], at("2026-12-02T07:00:00Z")).unwrap();
    let mut webhook = Webhook::new(
        "https://hooks.example.com/keyledger",
        Signing::HmacSha256,
        Some(format!("klwh_{}", "ab".repeat(32))),
        Some(500),
    )
    .unwrap();
    webhook.record(Attempt {
        at: at("2026-12-02T07:01:00Z"),
        after: 0,
        through: 12,
        events: 12,
        status: Some(503),
        latency_ms: 41,
        error: Some("HTTP 503".into()),
    });
    webhook.record(Attempt {
        at: at("2026-12-02T07:01:02Z"),
        after: 0,
        through: 12,
        events: 12,
        status: Some(200),
        latency_ms: 7,
        error: None,
    });
    consumer.webhook = Some(webhook);
    consumer.position = 12;
    let rendered = String::from_utf8(consumer.to_bytes()).unwrap() + "\n";
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(WEBHOOK_CONSUMER_FIXTURE, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(WEBHOOK_CONSUMER_FIXTURE)
        .expect("golden/consumer-webhook.json exists");
    assert_eq!(
        rendered, golden,
        "the webhook consumer record changed: it is stored (docs/format.md, `consumers`)"
    );
    let read = Consumer::from_bytes("tickets", golden.trim_end().as_bytes()).unwrap();
    assert_eq!(read, consumer);
    let webhook = read.webhook.as_ref().unwrap();
    assert_eq!(
        (
            webhook.failures,
            webhook.attempts_total,
            webhook.delivered_total
        ),
        (0, 2, 1),
        "a delivery clears the failures"
    );
    assert_eq!(webhook.state, DeliveryState::Active);
    assert!(read.redacted().webhook.unwrap().secret.is_none());
}

#[test]
fn a_webhook_keeps_its_newest_attempts_and_counts_its_failures() {
    use keyledger_ledger::consumer::{Attempt, Signing, Webhook, ATTEMPTS_KEPT};
    let mut webhook = Webhook::new("http://127.0.0.1:9/x", Signing::Ed25519, None, None).unwrap();
    for n in 0..(ATTEMPTS_KEPT as u64 + 3) {
        webhook.record(Attempt {
            at: keyledger_core::Timestamp::parse("2026-12-02T07:00:00Z").unwrap(),
            after: n,
            through: n + 1,
            events: 1,
            status: None,
            latency_ms: 1,
            error: Some("connection refused".into()),
        });
    }
    assert_eq!(webhook.attempts.len(), ATTEMPTS_KEPT);
    assert_eq!(webhook.attempts[0].after, 3, "the three oldest were let go");
    assert_eq!(webhook.failures, ATTEMPTS_KEPT as u32 + 3);
    assert_eq!(webhook.attempts_total, ATTEMPTS_KEPT as u64 + 3);
    assert_eq!(webhook.secret, None, "ed25519 keeps no secret");
    for bad in [
        "ftp://x/y",
        "http://",
        "http:///path",
        "https://user:pw@host/",
        "http://host/a b",
        "hooks.example.com",
    ] {
        assert!(
            Webhook::new(bad, Signing::Ed25519, None, None).is_err(),
            "{bad:?} is refused"
        );
    }
    assert!(Webhook::new("http://h/", Signing::HmacSha256, None, None).is_err());
    assert!(Webhook::new("http://h/", Signing::Ed25519, None, Some(0)).is_err());
    assert!(Webhook::new("http://h/", Signing::Ed25519, None, Some(10_001)).is_err());
}

const ALERT_FEED_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/consumer-alerts.json"
);

/// An alert feed's record: a webhook consumer with the ids its receiver was told are raised.
#[test]
fn an_alert_feed_record_matches_the_golden_file_and_reads_back() {
    use keyledger_ledger::consumer::{Consumer, Signing, Webhook};
    let at = |text| keyledger_core::Timestamp::parse(text).unwrap();
    let mut consumer =
        Consumer::new("admins", Some("V100"), &[], at("2026-12-02T07:00:00Z")).unwrap();
    assert!(consumer.feed_alerts().is_err(), "a webhook first");
    consumer.webhook =
        Some(Webhook::new("http://127.0.0.1:8099/alerts", Signing::Ed25519, None, None).unwrap());
    consumer.feed_alerts().unwrap();
    consumer.alerts.as_mut().unwrap().raised = vec![
        "mak_low_remaining/V100/key:1".into(),
        "request_pending_long/V100/request:r1".into(),
    ];
    consumer.position = 40;
    let rendered = String::from_utf8(consumer.to_bytes()).unwrap() + "\n";
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(ALERT_FEED_FIXTURE, &rendered).unwrap();
    }
    let golden =
        std::fs::read_to_string(ALERT_FEED_FIXTURE).expect("golden/consumer-alerts.json exists");
    assert_eq!(
        rendered, golden,
        "the alert feed record changed: it is stored"
    );
    let mut read = Consumer::from_bytes("admins", golden.trim_end().as_bytes()).unwrap();
    assert_eq!(read, consumer);
    read.rewind(0, at("2026-12-02T08:00:00Z"));
    assert!(
        read.alerts.unwrap().raised.is_empty(),
        "a redelivery tells every raised alert again"
    );
}

/// The change feed writes each logged event straight to bytes; they are the bytes of the
/// JSON object it stands for, so the stream, webhooks and consumer pages stay one format.
#[test]
fn a_logged_event_is_written_as_the_json_object_it_stands_for() {
    for (i, event) in samples().iter().enumerate() {
        let (prev, hash) = ([i as u8; 32], [0xa0 ^ i as u8; 32]);
        let seq = u64::MAX - i as u64;
        let mut written = Vec::new();
        keyledger_ledger::wire::write_logged_event(&mut written, seq, &prev, &hash, event);
        let expected = serde_json::json!({
            "seq": seq,
            "prev": hex::encode(prev),
            "hash": hex::encode(hash),
            "event": keyledger_ledger::wire::event_to_json(event),
        })
        .to_string();
        assert_eq!(String::from_utf8(written).unwrap(), expected, "sample {i}");
    }
}

const SAVED_FILTER_FIXTURE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/saved-filter.hex");

/// A saved filter of two parts (8 then 16 pairs; 12 pairs put in) bound to seq 42, and the
/// pairs it was made of.
fn sample_saved_filter() -> (Vec<u8>, Vec<keyledger_ledger::machines::PairRow>) {
    use keyledger_ledger::activated::ActivatedFilter;
    let hasher = keyledger_ledger::machines::MachineHasher([7; 16]);
    let pairs: Vec<_> = (0..12)
        .map(|i| {
            hasher.pair(
                KeyId(i % 3),
                &MachineId::new(format!("golden-{i}")).unwrap(),
            )
        })
        .collect();
    let mut filter = ActivatedFilter::new(8);
    pairs.iter().for_each(|pair| filter.insert(*pair));
    let at = keyledger_ledger::Head {
        seq: 42,
        hash: [0xAB; 32],
    };
    (
        keyledger_ledger::saved_filter::encode(&filter, at, &hasher),
        pairs,
    )
}

/// The saved filter's bytes (docs/format.md, "Saved filter", version 1) are a contract: a
/// filter saved by this build must be read by the next, or refused by its version byte.
#[test]
fn a_saved_filter_matches_the_golden_file_and_reads_back() {
    let (bytes, pairs) = sample_saved_filter();
    if std::env::var_os("KEYLEDGER_BLESS").is_some() {
        std::fs::write(SAVED_FILTER_FIXTURE, format!("{}\n", hex::encode(&bytes))).unwrap();
    }
    let golden = std::fs::read_to_string(SAVED_FILTER_FIXTURE).expect("golden/saved-filter.hex");
    assert_eq!(hex::encode(&bytes), golden.trim());
    let (filter, bound) = keyledger_ledger::saved_filter::decode(&[&bytes]).unwrap();
    assert_eq!((bound.head.seq, bound.head.hash), (42, [0xAB; 32]));
    let hasher = keyledger_ledger::machines::MachineHasher([7; 16]);
    assert_eq!(bound.key_check, hasher.key_check());
    assert_eq!((filter.parts(), filter.len()), (2, 12));
    assert!(pairs.iter().all(|pair| filter.may_contain(*pair)));
    assert_eq!(&bytes[..5], b"KLAF\x01", "magic, then version 1");
}
