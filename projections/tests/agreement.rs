//! Decisions and reports agree (issue 14): for random command histories over several
//! license IDs, keys, hosts and principals, after every command, the report of each license
//! ID shows exactly what the decision state holds — each key's limit, granted, used,
//! remaining, blocked, KMS hosts and their limit, per-host activations and contact counts,
//! OSA status and ESU phase; each request's outcome; each principal's roles.
//!
//! A report that disagrees with the decision that produced it is the worst bug a ledger can
//! have: an auditor would read "remaining 3" while activations are refused.

use crate::harness;

use std::collections::BTreeSet;

use harness::*;
use keyledger_core::command::*;
use keyledger_core::state::{Key, RequestOutcome};
use keyledger_core::*;
use keyledger_projections::report::LicenseReport;
use keyledger_projections::{license_report, Projections};
use proptest::prelude::*;

const LICENSES: [&str; 3] = ["V-SELECT", "V-EA", "V-OV"];
const ORGS: [&str; 3] = ["contoso", "contoso-east", "fabrikam"];
const PRINCIPALS: [&str; 3] = ["amy", "bob", "cat"];
const ROLES: [Role; 3] = [Role::Administrator, Role::ProductKeyReader, Role::KeyViewer];

#[derive(Clone, Debug)]
enum Op {
    Activate {
        key: u8,
        org: u8,
        machines: Vec<u8>,
    },
    KmsHost {
        key: u8,
        org: u8,
        host: u8,
    },
    KmsClient {
        host: u8,
        client: u8,
        family: u8,
    },
    RequestIncrease {
        key: u8,
        who: u8,
    },
    RequestHosts {
        key: u8,
        who: u8,
    },
    Decide {
        request: u8,
        grant: bool,
        amount: u8,
    },
    Block {
        key: u8,
    },
    Redeem {
        tenant: u8,
    },
    Assign {
        who: u8,
        license: u8,
        role: u8,
    },
    Revoke {
        who: u8,
        license: u8,
        role: u8,
    },
    Advance {
        hours: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..16u8, 0..3u8, prop::collection::vec(0..30u8, 1..4))
            .prop_map(|(key, org, machines)| Op::Activate { key, org, machines }),
        3 => (0..16u8, 0..3u8, 0..8u8).prop_map(|(key, org, host)| Op::KmsHost { key, org, host }),
        4 => (0..8u8, 0..40u8, 0..3u8).prop_map(|(host, client, family)| Op::KmsClient { host, client, family }),
        2 => (0..16u8, 0..3u8).prop_map(|(key, who)| Op::RequestIncrease { key, who }),
        1 => (0..16u8, 0..3u8).prop_map(|(key, who)| Op::RequestHosts { key, who }),
        3 => (0..16u8, any::<bool>(), 1..5u8).prop_map(|(request, grant, amount)| Op::Decide { request, grant, amount }),
        1 => (0..16u8).prop_map(|key| Op::Block { key }),
        1 => (0..3u8).prop_map(|tenant| Op::Redeem { tenant }),
        3 => (0..3u8, 0..3u8, 0..3u8).prop_map(|(who, license, role)| Op::Assign { who, license, role }),
        2 => (0..3u8, 0..3u8, 0..3u8).prop_map(|(who, license, role)| Op::Revoke { who, license, role }),
        2 => (0..24 * 12u16).prop_map(|hours| Op::Advance { hours }),
    ]
}

struct World {
    h: Harness,
    /// Every key issued, with its text, in key id order.
    keys: Vec<(KeyId, ProductKeyText)>,
    osa: ProductKeyText,
    requests: u32,
}

fn world() -> World {
    let mut h = Harness::with_catalog();
    for license in LICENSES {
        h.role("adam-admin", license, Role::Administrator);
        h.role("rita-reader", license, Role::ProductKeyReader);
    }
    let esu = issue_spec("V-SELECT", "ws2016-std", KeyKind::EsuMak)
        .limit(5)
        .coverage("2026-01-05T00:00:00Z", "2026-02-20T00:00:00Z");
    let mut keys = vec![
        h.mak("V-SELECT", "win11-pro", 6),
        h.mak("V-SELECT", "ws2022-std", 4),
        h.issue(esu),
        h.mak("V-EA", "win11-pro", 3),
        h.mak("V-OV", "win10-pro", 2),
        h.kms_key("V-SELECT", "ws2022-std"),
        h.kms_key("V-SELECT", "office-2021"),
        h.kms_key("V-EA", "win10-ent"),
    ];
    let osa = h.issue(issue_spec("V-EA", "office-2021", KeyKind::Osa).limit(50));
    keys.push(osa.clone());
    World {
        h,
        keys,
        osa: osa.1,
        requests: 0,
    }
}

impl World {
    fn key(&self, index: u8) -> &(KeyId, ProductKeyText) {
        &self.keys[usize::from(index) % self.keys.len()]
    }

    fn step(&mut self, op: &Op) {
        let _ = match op {
            Op::Activate { key, org, machines } => {
                let names: Vec<MachineId> = machines
                    .iter()
                    .map(|m| MachineId::new(format!("m-{m}")).unwrap())
                    .collect();
                let method = if names.len() > 1 {
                    ActivationMethod::Proxy
                } else {
                    ActivationMethod::Online
                };
                let text = self.key(*key).1.clone();
                let body = activate(&text, ORGS[usize::from(*org)], method, names);
                self.h.run("vamt", body)
            }
            Op::KmsHost { key, org, host } => {
                let text = self.key(*key).1.clone();
                let body = kms_host(&text, ORGS[usize::from(*org)], &format!("host-{host}"));
                self.h.run("kms", body)
            }
            Op::KmsClient {
                host,
                client,
                family,
            } => {
                let family = ClientFamily::ALL[usize::from(*family) % ClientFamily::ALL.len()];
                let body = kms_client(&format!("host-{host}"), &format!("c-{client}"), family);
                self.h.run("kms", body)
            }
            Op::RequestIncrease { key, who } => {
                let (id, text) = self.key(*key).clone();
                let k = self.h.key(id).clone();
                self.requests += 1;
                let body = CommandBody::RequestMakIncrease(RequestMakIncrease {
                    request_id: RequestId::new(format!("rq-{}", self.requests)).unwrap(),
                    license_id: k.license_id.clone(),
                    authorization_number: None,
                    product: k.product.clone(),
                    key_last5: text.last5(),
                    activations_needed: 3,
                    justification: "growth".into(),
                });
                self.h.run(
                    ["adam-admin", "rita-reader", "amy"][usize::from(*who)],
                    body,
                )
            }
            Op::RequestHosts { key, who } => {
                let k = self.h.key(self.key(*key).0).clone();
                self.requests += 1;
                let body = CommandBody::RequestKms(RequestKms {
                    request_id: RequestId::new(format!("rq-{}", self.requests)).unwrap(),
                    license_id: k.license_id.clone(),
                    product: k.product.clone(),
                    reason: KmsRequestReason::AdditionalHosts,
                    host_activations_needed: 2,
                    justification: "more hosts".into(),
                });
                self.h.run(
                    ["adam-admin", "rita-reader", "amy"][usize::from(*who)],
                    body,
                )
            }
            Op::Decide {
                request,
                grant,
                amount,
            } => {
                let n = u32::from(*request) % self.requests.max(1) + 1;
                let request_id = RequestId::new(format!("rq-{n}")).unwrap();
                let body = if *grant {
                    CommandBody::GrantRequest(GrantRequest {
                        request_id,
                        amount: u64::from(*amount),
                    })
                } else {
                    CommandBody::DenyRequest(DenyRequest {
                        request_id,
                        reason: "no purchase backs it".into(),
                    })
                };
                self.h.run(OPERATOR, body)
            }
            Op::Block { key } => {
                let body = CommandBody::BlockKey(BlockKey {
                    key_id: self.key(*key).0,
                });
                self.h.run(OPERATOR, body)
            }
            Op::Redeem { tenant } => {
                let body = CommandBody::RedeemOsa(RedeemOsa {
                    product_key: self.osa.clone(),
                    tenant: TenantId::new(format!("tenant-{tenant}")).unwrap(),
                });
                self.h.run("portal", body)
            }
            Op::Assign { who, license, role } | Op::Revoke { who, license, role } => {
                let principal = principal(PRINCIPALS[usize::from(*who)]);
                let license_id = LicenseId::new(LICENSES[usize::from(*license)]).unwrap();
                let role = ROLES[usize::from(*role)];
                let body = if matches!(op, Op::Assign { .. }) {
                    CommandBody::AssignRole(AssignRole {
                        principal,
                        license_id,
                        role,
                    })
                } else {
                    CommandBody::RevokeRole(RevokeRole {
                        principal,
                        license_id,
                        role,
                    })
                };
                self.h.run(OPERATOR, body)
            }
            Op::Advance { hours } => {
                self.h.now = self.h.now.plus(Span::seconds(i64::from(*hours) * 3600));
                Ok(Vec::new())
            }
        };
    }
}

fn osa_status(key: &Key) -> &'static str {
    match (key.kind, key.blocked, &key.redeemed_into) {
        (KeyKind::Osa, true, _) => "blocked",
        (KeyKind::Osa, false, Some(_)) => "active",
        (KeyKind::Osa, false, None) => "pending",
        _ => "n/a",
    }
}

/// Every number the report of `license` shows, against the decision state.
fn agree(state: &State, report: &LicenseReport, license: &LicenseId, at: Timestamp) {
    let keys: Vec<&Key> = state.keys().filter(|k| k.license_id == *license).collect();
    assert_eq!(report.keys.len(), keys.len(), "{license}: keys");
    for (row, key) in report.keys.iter().zip(&keys) {
        let what = format!("{license} key {}", key.id);
        assert_eq!(row.key_id, key.id.0, "{what}");
        assert_eq!(
            (row.limit, row.granted, row.total, row.used, row.remaining),
            (
                key.limit,
                key.granted,
                key.total(),
                state.machine_facts.kept_on(key.id) as u64,
                key.remaining()
            ),
            "{what}: limit, granted, total, used, remaining"
        );
        assert_eq!(row.blocked, key.blocked, "{what}: blocked");
        assert_eq!(row.osa_status, osa_status(key), "{what}: OSA status");
        assert_eq!(
            row.esu_coverage,
            key.coverage.map(|c| c.phase_at(at)),
            "{what}: ESU"
        );
        let kms = key.kms.as_ref();
        assert_eq!(
            row.kms_hosts,
            kms.map(|k| k.hosts.len() as u64),
            "{what}: hosts"
        );
        assert_eq!(
            row.kms_hosts_limit,
            kms.map(|k| k.hosts_limit()),
            "{what}: host limit"
        );
    }
    for row in &report.kms_hosts {
        let key = state.key(KeyId(row.key_id)).unwrap();
        let host = HostId::new(row.host.as_str()).unwrap();
        let activations = key.kms.as_ref().unwrap().hosts[&host];
        assert_eq!(row.activations, activations, "{license} host {host}");
        let windows = state.kms_host(&host).unwrap();
        assert_eq!(
            row.windows_count,
            u64::from(windows.windows.count_at(at)),
            "{host} windows"
        );
        assert_eq!(
            row.office_count,
            u64::from(windows.office.count_at(at)),
            "{host} office"
        );
    }
    let hosts: usize = keys
        .iter()
        .filter_map(|k| k.kms.as_ref())
        .map(|k| k.hosts.len())
        .sum();
    assert_eq!(report.kms_hosts.len(), hosts, "{license}: host rows");
    for row in &report.requests {
        let request = state
            .request(&RequestId::new(row.request_id.as_str()).unwrap())
            .unwrap();
        let (outcome, amount) = match request.decision.as_ref().map(|d| &d.outcome) {
            None => ("pending", None),
            Some(RequestOutcome::Granted { amount }) => ("granted", Some(*amount)),
            Some(RequestOutcome::Denied { .. }) => ("denied", None),
        };
        assert_eq!(
            (row.outcome, row.amount),
            (outcome, amount),
            "{}",
            row.request_id
        );
    }
    let reported: BTreeSet<(String, Role)> = report
        .roles
        .iter()
        .flat_map(|r| r.roles.iter().map(move |role| (r.principal.clone(), *role)))
        .collect();
    let held: BTreeSet<(String, Role)> = PRINCIPALS
        .iter()
        .chain(&["adam-admin", "rita-reader"])
        .flat_map(|p| ROLES.iter().map(move |role| (p.to_string(), *role)))
        .filter(|(p, role)| state.has_role(&principal(p), license, *role))
        .collect();
    assert_eq!(reported, held, "{license}: role holders");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn after_every_command_the_report_shows_what_the_decisions_hold(
        ops in prop::collection::vec(op(), 100..300)
    ) {
        let mut w = world();
        let mut p = Projections::default();
        let mut folded = 0;
        for op in &ops {
            w.step(op);
            for event in &w.h.events[folded..] {
                folded += 1;
                p.apply(folded as u64, event);
            }
            let at = w.h.now.max(w.h.state.newest_at().unwrap_or(w.h.now));
            for license in LICENSES {
                let license = LicenseId::new(license).unwrap();
                let report = license_report(&p, &license, at).unwrap();
                agree(&w.h.state, &report, &license, at);
            }
        }
    }
}
