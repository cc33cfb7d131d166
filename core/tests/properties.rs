//! Invariants of decide/apply under random command sequences.
//!
//! Method: proptest draws hundreds of operations (activations of MAK, ESU MAK and KMS keys
//! by orgs inside and outside the ownership structure, KMS client contacts, requests and
//! grants, blocks, OSA redemptions, time moving forward and sometimes backwards) against a
//! catalog with several keys. After every step it checks the limits of R9 and R13 and that
//! a refusal changed nothing but what its recorded event says; at the end, that replaying
//! the events into a fresh `State` gives an equal state.

use crate::harness;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::state::MachineFacts;
use keyledger_core::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Activate {
        key: usize,
        org: usize,
        proxy: bool,
        machines: Vec<u8>,
    },
    KmsHost {
        key: usize,
        org: usize,
        host: u8,
    },
    KmsClient {
        host: u8,
        client: u8,
        family: u8,
    },
    RequestAndGrant {
        key: usize,
        amount: u8,
    },
    Block {
        key: usize,
    },
    Redeem {
        tenant: u8,
    },
    Advance {
        hours: u16,
    },
    Regress,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3usize, any::<bool>(), prop::collection::vec(0..40u8, 1..6))
            .prop_map(|(key, org, proxy, machines)| Op::Activate { key, org, proxy, machines }),
        3 => (0..2usize, 0..3usize, 0..9u8).prop_map(|(key, org, host)| Op::KmsHost { key, org, host }),
        4 => (0..9u8, 0..40u8, 0..3u8).prop_map(|(host, client, family)| Op::KmsClient { host, client, family }),
        1 => (0..4usize, 0..20u8).prop_map(|(key, amount)| Op::RequestAndGrant { key, amount }),
        1 => (0..6usize).prop_map(|key| Op::Block { key }),
        1 => (0..3u8).prop_map(|tenant| Op::Redeem { tenant }),
        2 => (0..24 * 20u16).prop_map(|hours| Op::Advance { hours }),
        1 => Just(Op::Regress),
    ]
}

const ORGS: [&str; 3] = ["contoso", "contoso-east", "fabrikam"];

struct World {
    h: Harness,
    /// MAK, MAK, ESU MAK, MAK under another license ID; then the two KMS keys; then OSA.
    macs: Vec<(KeyId, ProductKeyText)>,
    kms: Vec<(KeyId, ProductKeyText)>,
    osa: ProductKeyText,
    requests: u32,
}

fn world() -> World {
    let mut h = Harness::with_catalog();
    h.role("adam-admin", "V-SELECT", Role::Administrator);
    h.role("adam-admin", "V-EA", Role::Administrator);
    let esu = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(6)
        .coverage("2026-01-10T00:00:00Z", "2026-03-01T00:00:00Z");
    let macs = vec![
        h.mak("V-SELECT", "win11-pro", 5),
        h.mak("V-SELECT", "ws2022-std", 12),
        h.issue(esu),
        h.mak("V-EA", "win11-pro", 3),
    ];
    let kms = vec![
        h.kms_key("V-SELECT", "ws2022-std"),
        h.kms_key("V-SELECT", "office-2021"),
    ];
    let (_, osa) = h.issue(issue_spec("V-EA", "office-2021", KeyKind::Osa).limit(50));
    World {
        h,
        macs,
        kms,
        osa,
        requests: 0,
    }
}

impl World {
    fn body(&mut self, op: &Op) -> Option<(String, CommandBody)> {
        let vamt = "vamt".to_owned();
        Some(match op {
            Op::Activate {
                key,
                org,
                proxy,
                machines,
            } => {
                let names: Vec<MachineId> = machines
                    .iter()
                    .map(|m| MachineId::new(format!("m-{m}")).unwrap())
                    .collect();
                let (method, names) = if *proxy {
                    (ActivationMethod::Proxy, names)
                } else {
                    (ActivationMethod::Online, names[..1].to_vec())
                };
                (
                    vamt,
                    activate(&self.macs[*key].1, ORGS[*org], method, names),
                )
            }
            Op::KmsHost { key, org, host } => (
                vamt,
                kms_host(&self.kms[*key].1, ORGS[*org], &format!("host-{host}")),
            ),
            Op::KmsClient {
                host,
                client,
                family,
            } => {
                let family = ClientFamily::ALL[usize::from(*family)];
                (
                    vamt,
                    kms_client(&format!("host-{host}"), &format!("c-{client}"), family),
                )
            }
            Op::RequestAndGrant { key, amount } => return self.request(*key, *amount),
            Op::Block { key } => {
                let all: Vec<KeyId> = self.macs.iter().chain(&self.kms).map(|k| k.0).collect();
                let body = CommandBody::BlockKey(BlockKey { key_id: all[*key] });
                (OPERATOR.to_owned(), body)
            }
            Op::Redeem { tenant } => {
                let body = CommandBody::RedeemOsa(RedeemOsa {
                    product_key: self.osa.clone(),
                    tenant: TenantId::new(format!("tenant-{tenant}")).unwrap(),
                });
                (vamt, body)
            }
            Op::Advance { .. } | Op::Regress => return None,
        })
    }

    /// Requests a MAK increase; the grant is run right after by the operator.
    fn request(&mut self, key: usize, amount: u8) -> Option<(String, CommandBody)> {
        self.requests += 1;
        let (id, text) = &self.macs[key];
        let k = self.h.key(*id).clone();
        let body = CommandBody::RequestMakIncrease(RequestMakIncrease {
            request_id: RequestId::new(format!("rq-{}", self.requests)).unwrap(),
            license_id: k.license_id.clone(),
            authorization_number: None,
            product: k.product.clone(),
            key_last5: text.last5(),
            activations_needed: u64::from(amount),
            justification: "growth".into(),
        });
        Some(("adam-admin".to_owned(), body))
    }
}

fn check_limits(state: &State) {
    for key in state.keys() {
        assert!(
            key.used() <= key.total(),
            "R9: key {} used {} > {}",
            key.id,
            key.used(),
            key.total()
        );
        if let Some(kms) = &key.kms {
            assert!(
                kms.hosts.len() as u64 <= kms.hosts_limit(),
                "R13: key {} hosts",
                key.id
            );
            assert!(
                kms.hosts.values().all(|n| *n <= kms.per_host_max),
                "R13: per host"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_refusals_change_nothing_and_replay_is_identical(ops in prop::collection::vec(op(), 100..400)) {
        let mut w = world();
        for op in &ops {
            match op {
                Op::Advance { hours } => {
                    let now = w.h.now.plus(Span::seconds(i64::from(*hours) * 3600));
                    w.h.now = now;
                }
                Op::Regress => w.h.now = w.h.now.minus(Span::seconds(1)),
                _ => {}
            }
            let Some((actor, body)) = w.body(op) else { continue };
            let before = w.h.state.clone();
            let events_before = w.h.events.len();
            let result = w.h.run(&actor, body);
            if result.is_err() {
                let mut expected = before;
                for recorded in &w.h.events[events_before..] {
                    let recorded_refusal = matches!(recorded.body, EventBody::ActivationRefused { .. });
                    prop_assert!(recorded_refusal, "only refusals are recorded");
                    expected.apply(recorded);
                }
                prop_assert!(w.h.events.len() <= events_before + 1);
                prop_assert_eq!(&expected, &w.h.state);
            } else if let Op::RequestAndGrant { amount, .. } = op {
                let id = RequestId::new(format!("rq-{}", w.requests)).unwrap();
                let grant = CommandBody::GrantRequest(GrantRequest { request_id: id, amount: u64::from(*amount).max(1) });
                w.h.ok(OPERATOR, grant);
            }
            // A time regression leaves the clock where the log is.
            if let Some(newest) = w.h.state.newest_at() {
                w.h.now = w.h.now.max(newest);
            }
            check_limits(&w.h.state);
        }
        let mut replayed = State::default();
        for event in &w.h.events {
            replayed.apply(event);
        }
        prop_assert_eq!(&replayed, &w.h.state);
        // A writer resumes from books alone (a snapshot): the state they make, indexes
        // and all, equals the fold of the events that made them (machine facts on disk).
        let mut on_disk = State::default();
        on_disk.machine_facts = MachineFacts::on_disk();
        for event in &w.h.events {
            on_disk.apply(event);
        }
        let resumed = State::from_books(replayed.books().clone(), MachineFacts::on_disk());
        prop_assert_eq!(resumed, on_disk);
    }
}
