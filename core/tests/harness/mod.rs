//! The given-events / when-command / then-events-or-refusal harness shared by the core tests.
//!
//! It keeps a `State` and the list of events appended so far, runs commands through
//! `keyledger_core::handle` exactly as the ledger's writer does (applying accepted events and
//! recorded refusals), and supplies the `Context` the ledger would: a fingerprint of the
//! presented key text and generated key material. The fingerprint here is the key text's
//! bytes (injective, which is all decide needs); the ledger uses BLAKE3.
// Shared with projections' tests (by path), which use only part of it.
#![allow(dead_code)]

use keyledger_core::command::*;
use keyledger_core::*;

pub fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("test timestamps are valid")
}

pub fn principal(name: &str) -> Principal {
    Principal::new(name).unwrap()
}

pub fn fingerprint(text: &ProductKeyText) -> Fingerprint {
    let mut bytes = [0u8; 32];
    bytes[..29].copy_from_slice(text.reveal().as_bytes());
    Fingerprint(bytes)
}

/// The n-th distinct test key text.
pub fn key_text(n: u64) -> ProductKeyText {
    let mut indices = [0u8; 25];
    let mut rest = n;
    for slot in indices.iter_mut().rev() {
        *slot = (rest % 24) as u8;
        rest /= 24;
    }
    ProductKeyText::from_alphabet_indices(&indices)
}

pub struct Harness {
    pub state: State,
    pub events: Vec<Event>,
    pub now: Timestamp,
    generated: u64,
}

pub const OPERATOR: &str = "olga-operator";

impl Harness {
    /// An empty ledger with one operator, at 2026-01-01.
    pub fn new() -> Harness {
        let mut h = Harness {
            state: State::default(),
            events: Vec::new(),
            now: ts("2026-01-01T00:00:00Z"),
            generated: 1_000_000,
        };
        let init = CommandBody::AddOperator(AddOperator {
            principal: principal(OPERATOR),
        });
        h.ok(OPERATOR, init);
        h
    }

    /// A ledger with a realistic catalog: orgs contoso (root) > contoso-east, and fabrikam;
    /// license IDs under several programs, products of every family and requirement.
    pub fn with_catalog() -> Harness {
        let mut h = Harness::new();
        h.org("contoso", None);
        h.org("contoso-east", Some("contoso"));
        h.org("fabrikam", None);
        h.license("V-SELECT", "contoso", Program::Select, None, None);
        h.license(
            "V-OPEN",
            "contoso",
            Program::OpenLicense,
            Some("AUTH-77"),
            None,
        );
        h.license("V-OV", "contoso-east", Program::OpenValue, None, None);
        h.license("V-EA", "fabrikam", Program::EnterpriseAgreement, None, None);
        h.license("V-MPSA", "fabrikam", Program::Mpsa, None, Some("PA-4242"));
        use Family::*;
        use KeyRequirement::{Embedded, LicenseServer, VlKey};
        h.product("win11-pro", WindowsClient, "11", "pro", VlKey);
        h.product("win10-pro", WindowsClient, "10", "pro", VlKey);
        h.product("win10-ent", WindowsClient, "10", "enterprise", VlKey);
        h.product("ws2022-std", WindowsServer, "2022", "standard", VlKey);
        h.product("ws2019-std", WindowsServer, "2019", "standard", VlKey);
        h.product("ws2016-std", WindowsServer, "2016", "standard", VlKey);
        h.product("office-2021", Office, "2021", "ltsc", VlKey);
        h.product("sql-2022", SqlServer, "2022", "standard", Embedded);
        h.product("sql-2019", SqlServer, "2019", "standard", Embedded);
        h.product("rds-cal-2022", Rds, "2022", "user-cal", LicenseServer);
        h.product(
            "m365-apps",
            Office,
            "2024",
            "enterprise",
            KeyRequirement::None,
        );
        h
    }

    pub fn at(&mut self, text: &str) -> &mut Harness {
        self.now = ts(text);
        self
    }

    pub fn command(&self, actor: &str, body: CommandBody) -> Command {
        Command {
            at: self.now,
            actor: principal(actor),
            command_id: None,
            body,
        }
    }

    fn context(&mut self, body: &CommandBody) -> Context {
        let presented = body.presented_key().map(fingerprint);
        let new_key = body.may_generate_key().then(|| {
            self.generated += 1;
            let text = key_text(self.generated);
            NewKeyMaterial {
                fingerprint: fingerprint(&text),
                last5: text.last5(),
            }
        });
        Context {
            presented,
            new_key,
            ..Context::default()
        }
    }

    /// Runs a command the way the writer does; returns the new events, or the refusal.
    pub fn run(&mut self, actor: &str, body: CommandBody) -> Result<Vec<EventBody>, Refusal> {
        let ctx = self.context(&body);
        let command = self.command(actor, body);
        match handle(&self.state, &command, &ctx) {
            Outcome::Accepted(events) => {
                for event in &events {
                    self.state.apply(event);
                }
                self.events.extend(events.iter().cloned());
                Ok(events.into_iter().map(|e| e.body).collect())
            }
            Outcome::Refused { refusal, recorded } => {
                if let Some(event) = recorded {
                    self.state.apply(&event);
                    self.events.push(*event);
                }
                Err(refusal)
            }
        }
    }

    pub fn ok(&mut self, actor: &str, body: CommandBody) -> Vec<EventBody> {
        let what = format!("{body:?}");
        self.run(actor, body)
            .unwrap_or_else(|r| panic!("expected {what} to be accepted, got {r:?}"))
    }

    /// Runs a command that must be refused and returns the refusal code.
    pub fn refused(&mut self, actor: &str, body: CommandBody) -> RefusalCode {
        match self.run(actor, body) {
            Ok(events) => panic!("expected a refusal, got {events:?}"),
            Err(refusal) => refusal.code(),
        }
    }

    pub fn last_event(&self) -> &EventBody {
        &self.events.last().expect("events exist").body
    }

    // Builders for the catalog.

    pub fn org(&mut self, org: &str, parent: Option<&str>) {
        let body = CommandBody::RegisterOrg(RegisterOrg {
            org: OrgId::new(org).unwrap(),
            name: format!("{org} Ltd"),
            parent: parent.map(|p| OrgId::new(p).unwrap()),
        });
        self.ok(OPERATOR, body);
    }

    pub fn license(
        &mut self,
        id: &str,
        org: &str,
        program: Program,
        authorization: Option<&str>,
        purchase_account: Option<&str>,
    ) {
        let body = CommandBody::RegisterLicenseId(RegisterLicenseId {
            license_id: LicenseId::new(id).unwrap(),
            org: OrgId::new(org).unwrap(),
            program,
            agreement_number: format!("AGR-{id}"),
            authorization_number: authorization.map(str::to_owned),
            purchase_account: purchase_account.map(str::to_owned),
        });
        self.ok(OPERATOR, body);
    }

    pub fn product(
        &mut self,
        id: &str,
        family: Family,
        version: &str,
        edition: &str,
        requirement: KeyRequirement,
    ) {
        let body = CommandBody::RegisterProduct(RegisterProduct {
            product: ProductId::new(id).unwrap(),
            name: id.to_uppercase(),
            family,
            version: version.to_owned(),
            edition: edition.to_owned(),
            key_requirement: requirement,
        });
        self.ok(OPERATOR, body);
    }

    pub fn role(&mut self, who: &str, license: &str, role: Role) {
        let body = CommandBody::AssignRole(AssignRole {
            principal: principal(who),
            license_id: LicenseId::new(license).unwrap(),
            role,
        });
        self.ok(OPERATOR, body);
    }

    /// Issues a key with given text; returns its id and text.
    pub fn issue(&mut self, spec: IssueKey) -> (KeyId, ProductKeyText) {
        self.generated += 1;
        let text = spec
            .product_key
            .clone()
            .unwrap_or_else(|| key_text(self.generated));
        let body = CommandBody::IssueKey(IssueKey {
            product_key: Some(text.clone()),
            ..spec
        });
        match self.ok(OPERATOR, body).as_slice() {
            [EventBody::KeyIssued { key_id, .. }] => (*key_id, text),
            other => panic!("expected KeyIssued, got {other:?}"),
        }
    }

    pub fn mak(&mut self, license: &str, product: &str, limit: u64) -> (KeyId, ProductKeyText) {
        self.issue(issue_spec(license, product, KeyKind::Mak).limit(limit))
    }

    pub fn kms_key(&mut self, license: &str, product: &str) -> (KeyId, ProductKeyText) {
        self.issue(issue_spec(license, product, KeyKind::KmsHost))
    }

    pub fn key(&self, id: KeyId) -> &keyledger_core::state::Key {
        self.state.key(id).expect("key exists")
    }
}

pub fn issue_spec(license: &str, product: &str, kind: KeyKind) -> IssueKey {
    IssueKey::new(
        LicenseId::new(license).unwrap(),
        ProductId::new(product).unwrap(),
        kind,
    )
}

pub trait IssueKeyExt {
    fn limit(self, limit: u64) -> IssueKey;
    fn coverage(self, start: &str, end: &str) -> IssueKey;
}

impl IssueKeyExt for IssueKey {
    fn limit(self, limit: u64) -> IssueKey {
        IssueKey {
            limit: Some(limit),
            ..self
        }
    }

    fn coverage(self, start: &str, end: &str) -> IssueKey {
        IssueKey {
            coverage_start: Some(ts(start)),
            coverage_end: Some(ts(end)),
            ..self
        }
    }
}

pub fn machines(names: &[&str]) -> Vec<MachineId> {
    names.iter().map(|n| MachineId::new(*n).unwrap()).collect()
}

pub fn numbered_machines(prefix: &str, count: usize) -> Vec<MachineId> {
    (0..count)
        .map(|i| MachineId::new(format!("{prefix}-{i}")).unwrap())
        .collect()
}

pub fn activate(
    key: &ProductKeyText,
    org: &str,
    method: ActivationMethod,
    machines: Vec<MachineId>,
) -> CommandBody {
    CommandBody::Activate(Activate {
        product_key: key.clone(),
        org: OrgId::new(org).unwrap(),
        method,
        machines,
    })
}

pub fn online(key: &ProductKeyText, org: &str, machine: &str) -> CommandBody {
    activate(key, org, ActivationMethod::Online, machines(&[machine]))
}

pub fn kms_host(key: &ProductKeyText, org: &str, host: &str) -> CommandBody {
    CommandBody::ActivateKmsHost(ActivateKmsHost {
        product_key: key.clone(),
        org: OrgId::new(org).unwrap(),
        host: HostId::new(host).unwrap(),
    })
}

pub fn kms_client(host: &str, client: &str, family: ClientFamily) -> CommandBody {
    CommandBody::ActivateKmsClient(ActivateKmsClient {
        host: HostId::new(host).unwrap(),
        client: ClientId::new(client).unwrap(),
        family,
    })
}

/// The status of the accepted activation events (the answer's `status`).
pub fn kms_status(events: &[EventBody]) -> (u32, ActivationStatus) {
    match events {
        [EventBody::KmsClientContacted { count, status, .. }] => (*count, *status),
        other => panic!("expected one KmsClientContacted, got {other:?}"),
    }
}
