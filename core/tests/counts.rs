//! Hardening, finding 1 of issue 13: every count a command carries is bounded by
//! `COUNT_MAX`, counts that combine are refused past it (never wrapped), and no command of
//! any numeric value reaches an assertion of `State::apply`.
//!
//! The proptest drives command sequences whose numeric fields are drawn from edge values
//! (0, 1, limits, u32::MAX, u64::MAX - 1, u64::MAX) and checks, after every step, that
//! nothing panicked and that every key has `used <= total` and a KMS key no more hosts than
//! its limit. It runs in CI with the rest of `cargo test`.

use crate::harness;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::decide::COUNT_MAX;
use keyledger_core::*;
use proptest::prelude::*;

fn request_increase(h: &mut Harness, key: KeyId, id: &str, needed: u64) -> Result<(), RefusalCode> {
    let last5 = h.key(key).last5;
    let body = CommandBody::RequestMakIncrease(RequestMakIncrease {
        request_id: RequestId::new(id).unwrap(),
        license_id: LicenseId::new("V-SELECT").unwrap(),
        authorization_number: None,
        product: ProductId::new("win11-pro").unwrap(),
        key_last5: last5,
        activations_needed: needed,
        justification: "more machines".to_owned(),
    });
    h.run("adam-admin", body).map(drop).map_err(|r| r.code())
}

fn grant(id: &str, amount: u64) -> CommandBody {
    CommandBody::GrantRequest(GrantRequest {
        request_id: RequestId::new(id).unwrap(),
        amount,
    })
}

fn select_admin() -> Harness {
    let mut h = Harness::with_catalog();
    h.role("adam-admin", "V-SELECT", Role::Administrator);
    h.ok(
        OPERATOR,
        CommandBody::AddOperator(AddOperator {
            principal: principal("owen-operator"),
        }),
    );
    h
}

#[test]
fn finding1_a_limit_of_u64_max_is_invalid_so_a_grant_cannot_wrap_the_total() {
    let mut h = select_admin();
    for limit in [u64::MAX, u64::MAX - 1, COUNT_MAX + 1] {
        let spec = issue_spec("V-SELECT", "win11-pro", KeyKind::Mak).limit(limit);
        let body = CommandBody::IssueKey(IssueKey {
            product_key: Some(key_text(900 + limit % 7)),
            ..spec
        });
        let refusal = h.run(OPERATOR, body).unwrap_err();
        assert_eq!(refusal.code(), RefusalCode::Invalid, "limit {limit}");
        assert_eq!(
            refusal.to_string(),
            format!("limit is {limit}; at most 1000000000 is allowed")
        );
    }
    // The largest allowed limit, one machine, then a grant of 1: refused, not wrapped.
    let (key, text) = h.mak("V-SELECT", "win11-pro", COUNT_MAX);
    h.ok("vamt", online(&text, "contoso", "m1"));
    assert_eq!(request_increase(&mut h, key, "RQ-1", 1), Ok(()));
    let refusal = h.run(OPERATOR, grant("RQ-1", 1)).unwrap_err();
    assert_eq!(refusal.code(), RefusalCode::CountOverMaximum);
    assert_eq!(
        refusal.to_string(),
        format!("the activation total of key {key} would reach 1000000001; counts are at most 1000000000")
    );
    assert_eq!((h.key(key).used(), h.key(key).total()), (1, COUNT_MAX));
    // Re-activating m1 is the step that used to panic at the R9 assertion.
    h.ok("vamt", online(&text, "contoso", "m1"));
    assert_eq!(h.key(key).used(), 1);
}

#[test]
fn finding1_grant_amounts_over_the_maximum_are_invalid() {
    let mut h = select_admin();
    let (key, _) = h.mak("V-SELECT", "win11-pro", 10);
    assert_eq!(
        request_increase(&mut h, key, "RQ-1", u64::MAX),
        Err(RefusalCode::Invalid)
    );
    assert_eq!(request_increase(&mut h, key, "RQ-1", 5), Ok(()));
    for amount in [0, COUNT_MAX + 1, u64::MAX] {
        assert_eq!(
            h.refused(OPERATOR, grant("RQ-1", amount)),
            RefusalCode::Invalid
        );
    }
    h.ok(OPERATOR, grant("RQ-1", COUNT_MAX - 10));
    assert_eq!(h.key(key).total(), COUNT_MAX);
}

#[test]
fn finding1_purchases_that_would_pass_the_maximum_are_refused_not_wrapped() {
    let mut h = select_admin();
    let purchase = |quantity| {
        CommandBody::RecordPurchase(RecordPurchase {
            license_id: LicenseId::new("V-SELECT").unwrap(),
            product: ProductId::new("win11-pro").unwrap(),
            quantity,
        })
    };
    assert_eq!(
        h.refused(OPERATOR, purchase(u64::MAX)),
        RefusalCode::Invalid
    );
    h.ok(OPERATOR, purchase(COUNT_MAX - 1));
    assert_eq!(
        h.refused(OPERATOR, purchase(2)),
        RefusalCode::CountOverMaximum
    );
    h.ok(OPERATOR, purchase(1));
    let license = LicenseId::new("V-SELECT").unwrap();
    let product = ProductId::new("win11-pro").unwrap();
    assert_eq!(h.state.purchased(&license, &product), COUNT_MAX);
}

#[test]
fn finding1_an_additional_hosts_grant_of_u64_max_cannot_lower_the_host_limit() {
    let mut h = select_admin();
    h.role("rita-reader", "V-SELECT", Role::ProductKeyReader);
    let (key, _) = h.kms_key("V-SELECT", "ws2022-std");
    assert_eq!(h.key(key).kms.as_ref().unwrap().hosts_limit(), 6);
    let request = CommandBody::RequestKms(RequestKms {
        request_id: RequestId::new("RQ-K").unwrap(),
        license_id: LicenseId::new("V-SELECT").unwrap(),
        product: ProductId::new("ws2022-std").unwrap(),
        reason: KmsRequestReason::AdditionalHosts,
        host_activations_needed: 2,
        justification: "two more hosts".to_owned(),
    });
    h.ok("rita-reader", request);
    assert_eq!(
        h.refused(OPERATOR, grant("RQ-K", u64::MAX)),
        RefusalCode::Invalid
    );
    assert_eq!(
        h.refused(OPERATOR, grant("RQ-K", COUNT_MAX)),
        RefusalCode::CountOverMaximum
    );
    assert_eq!(h.key(key).kms.as_ref().unwrap().hosts_limit(), 6);
    h.ok(OPERATOR, grant("RQ-K", 2));
    assert_eq!(h.key(key).kms.as_ref().unwrap().hosts_limit(), 8);
}

#[test]
fn finding1_kms_host_bounds_over_the_maximum_are_invalid() {
    let mut h = select_admin();
    for (hosts, per_host) in [(u32::MAX, 10), (6, u32::MAX), (0, 10), (6, 0)] {
        let spec = IssueKey {
            hosts: Some(hosts),
            per_host: Some(per_host),
            product_key: Some(key_text(77)),
            ..issue_spec("V-SELECT", "ws2022-std", KeyKind::KmsHost)
        };
        let code = h.refused(OPERATOR, CommandBody::IssueKey(spec));
        assert_eq!(
            code,
            RefusalCode::Invalid,
            "hosts {hosts} per_host {per_host}"
        );
    }
}

/// Edge values for every numeric field.
fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(COUNT_MAX - 1),
        Just(COUNT_MAX),
        Just(COUNT_MAX + 1),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX - 1),
        Just(u64::MAX),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    IssueMak { limit: u64 },
    IssueKms { hosts: u64, per_host: u64 },
    Activate { key: u8, machine: u8 },
    KmsHost { key: u8, host: u8 },
    RequestMak { key: u8, needed: u64 },
    RequestHosts { needed: u64 },
    Grant { request: u8, amount: u64 },
    Purchase { quantity: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => edge().prop_map(|limit| Op::IssueMak { limit }),
        1 => (edge(), edge()).prop_map(|(hosts, per_host)| Op::IssueKms { hosts, per_host }),
        3 => (0..8u8, 0..4u8).prop_map(|(key, machine)| Op::Activate { key, machine }),
        1 => (0..8u8, 0..12u8).prop_map(|(key, host)| Op::KmsHost { key, host }),
        1 => (0..8u8, edge()).prop_map(|(key, needed)| Op::RequestMak { key, needed }),
        1 => edge().prop_map(|needed| Op::RequestHosts { needed }),
        2 => (0..8u8, edge()).prop_map(|(request, amount)| Op::Grant { request, amount }),
        1 => edge().prop_map(|quantity| Op::Purchase { quantity }),
    ]
}

struct World {
    h: Harness,
    keys: Vec<(KeyId, ProductKeyText)>,
    requests: u32,
    texts: u64,
}

impl World {
    fn step(&mut self, op: &Op) {
        self.texts += 1;
        let text = key_text(5_000 + self.texts);
        let _ = match op {
            Op::IssueMak { limit } => {
                let spec = issue_spec("V-SELECT", "win11-pro", KeyKind::Mak).limit(*limit);
                let body = CommandBody::IssueKey(IssueKey {
                    product_key: Some(text.clone()),
                    ..spec
                });
                self.keep(body, text)
            }
            Op::IssueKms { hosts, per_host } => {
                let body = CommandBody::IssueKey(IssueKey {
                    hosts: Some(u32::try_from(*hosts).unwrap_or(u32::MAX)),
                    per_host: Some(u32::try_from(*per_host).unwrap_or(u32::MAX)),
                    product_key: Some(text.clone()),
                    ..issue_spec("V-SELECT", "ws2022-std", KeyKind::KmsHost)
                });
                self.keep(body, text)
            }
            Op::Activate { key, machine } => match self.key(*key) {
                Some((_, text)) => {
                    let body = online(&text, "contoso", &format!("m{machine}"));
                    self.h.run("vamt", body)
                }
                None => Ok(vec![]),
            },
            Op::KmsHost { key, host } => match self.key(*key) {
                Some((_, text)) => {
                    let body = kms_host(&text, "contoso", &format!("h{host}"));
                    self.h.run("kms", body)
                }
                None => Ok(vec![]),
            },
            Op::RequestMak { key, needed } => match self.key(*key) {
                Some((key, _)) => {
                    self.requests += 1;
                    let last5 = self.h.key(key).last5;
                    let body = CommandBody::RequestMakIncrease(RequestMakIncrease {
                        request_id: RequestId::new(format!("RQ-{}", self.requests)).unwrap(),
                        license_id: LicenseId::new("V-SELECT").unwrap(),
                        authorization_number: None,
                        product: ProductId::new("win11-pro").unwrap(),
                        key_last5: last5,
                        activations_needed: *needed,
                        justification: "edge".to_owned(),
                    });
                    self.h.run("adam-admin", body)
                }
                None => Ok(vec![]),
            },
            Op::RequestHosts { needed } => {
                self.requests += 1;
                let body = CommandBody::RequestKms(RequestKms {
                    request_id: RequestId::new(format!("RQ-{}", self.requests)).unwrap(),
                    license_id: LicenseId::new("V-SELECT").unwrap(),
                    product: ProductId::new("ws2022-std").unwrap(),
                    reason: KmsRequestReason::AdditionalHosts,
                    host_activations_needed: u32::try_from(*needed).unwrap_or(u32::MAX),
                    justification: "edge".to_owned(),
                });
                self.h.run("adam-admin", body)
            }
            Op::Grant { request, amount } => {
                let id = format!("RQ-{}", u32::from(*request) % self.requests.max(1) + 1);
                self.h.run(OPERATOR, grant(&id, *amount))
            }
            Op::Purchase { quantity } => {
                let body = CommandBody::RecordPurchase(RecordPurchase {
                    license_id: LicenseId::new("V-SELECT").unwrap(),
                    product: ProductId::new("win11-pro").unwrap(),
                    quantity: *quantity,
                });
                self.h.run(OPERATOR, body)
            }
        };
    }

    fn keep(&mut self, body: CommandBody, text: ProductKeyText) -> Result<Vec<EventBody>, Refusal> {
        let events = self.h.run(OPERATOR, body)?;
        if let [EventBody::KeyIssued { key_id, .. }] = events.as_slice() {
            self.keys.push((*key_id, text));
        }
        Ok(events)
    }

    fn key(&self, index: u8) -> Option<(KeyId, ProductKeyText)> {
        if self.keys.is_empty() {
            return None;
        }
        Some(self.keys[usize::from(index) % self.keys.len()].clone())
    }

    fn check(&self) {
        for key in self.h.state.keys() {
            assert!(
                key.used() <= key.total(),
                "R9: key {} used {} of {}",
                key.id,
                key.used(),
                key.total()
            );
            assert!(
                key.total() <= COUNT_MAX,
                "key {} total {}",
                key.id,
                key.total()
            );
            if let Some(kms) = &key.kms {
                assert!(kms.hosts.len() as u64 <= kms.hosts_limit());
                assert!(kms.hosts_limit() <= COUNT_MAX);
            }
        }
        let license = LicenseId::new("V-SELECT").unwrap();
        let product = ProductId::new("win11-pro").unwrap();
        assert!(self.h.state.purchased(&license, &product) <= COUNT_MAX);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn finding1_edge_value_counts_never_panic_and_keep_used_within_total(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let mut h = select_admin();
        h.role("adam-admin", "V-SELECT", Role::ProductKeyReader);
        let mut world = World { h, keys: Vec::new(), requests: 0, texts: 0 };
        for op in &ops {
            world.step(op);
            world.check();
        }
        // A replay of the log folds to the same state.
        let mut replayed = State::default();
        for event in &world.h.events {
            replayed.apply(event);
        }
        prop_assert_eq!(replayed, world.h.state);
    }
}
