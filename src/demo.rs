//! `demo`: a realistic sample ledger, built through the real writer from ordinary commands.
//!
//! Contoso (with two subsidiaries) and Fabrikam hold license IDs under Open License, Open
//! Value, an Enterprise Agreement, MPSA and Select Plus; the catalog spans Windows client and
//! server in several versions, Office, Project, SQL Server 2019 and 2022, RDS CALs and ESU.
//! Over 2026 they activate MAKs online, by phone and by proxy up to and past exhaustion, run
//! KMS hosts and clients, redeem OSA keys, ask for more and get it (or not), and read keys.
//! The large enterprise MAK takes `--machines` activations in proxy batches of 10,000.

use crate::output::outln;
use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_core::command::*;
use keyledger_core::*;
use keyledger_ledger::{Answer, Writer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::progress::Progress;
use crate::view::{projections, write_snapshot, Until};

const OPERATOR: &str = "olga";
const START: &str = "2026-01-05T09:00:00Z";

/// Commands with a moving business clock and deterministic key texts.
struct Script {
    commands: Vec<Command>,
    at: Timestamp,
    rng: StdRng,
    keys: BTreeMap<&'static str, ProductKeyText>,
}

fn id<T: TryFrom<String>>(text: &str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(text.to_owned()).expect("demo ids are valid")
}

impl Script {
    fn push(&mut self, actor: &str, body: CommandBody) {
        self.commands.push(Command {
            at: self.at,
            actor: id(actor),
            command_id: None,
            body,
        });
    }

    fn hours(&mut self, hours: i64) {
        self.at = self.at.plus(Span::seconds(hours * 3600));
    }

    fn org(&mut self, org: &str, name: &str, parent: Option<&str>) {
        let body = RegisterOrg {
            org: id(org),
            name: name.to_owned(),
            parent: parent.map(id),
        };
        self.push(OPERATOR, CommandBody::RegisterOrg(body));
    }

    fn license(&mut self, license: &str, org: &str, program: Program, numbers: [Option<&str>; 3]) {
        let [agreement, authorization, account] = numbers;
        self.push(
            OPERATOR,
            CommandBody::RegisterLicenseId(RegisterLicenseId {
                license_id: id(license),
                org: id(org),
                program,
                agreement_number: agreement
                    .expect("every license ID has an agreement")
                    .to_owned(),
                authorization_number: authorization.map(str::to_owned),
                purchase_account: account.map(str::to_owned),
            }),
        );
    }

    fn product(
        &mut self,
        product: &str,
        name: &str,
        family: Family,
        version: &str,
        edition: &str,
        requirement: KeyRequirement,
    ) {
        self.push(
            OPERATOR,
            CommandBody::RegisterProduct(RegisterProduct {
                product: id(product),
                name: name.to_owned(),
                family,
                version: version.to_owned(),
                edition: edition.to_owned(),
                key_requirement: requirement,
            }),
        );
    }

    fn purchase(&mut self, license: &str, product: &str, quantity: u64) {
        let body = RecordPurchase {
            license_id: id(license),
            product: id(product),
            quantity,
        };
        self.push(OPERATOR, CommandBody::RecordPurchase(body));
    }

    fn role(&mut self, who: &str, license: &str, role: Role) {
        let body = AssignRole {
            principal: id(who),
            license_id: id(license),
            role,
        };
        self.push(OPERATOR, CommandBody::AssignRole(body));
    }

    /// Issues a key with seeded text under a short name the script refers to later.
    fn key(&mut self, name: &'static str, spec: IssueKey) {
        let indices: [u8; 25] = std::array::from_fn(|_| self.rng.random_range(0..24u8));
        let text = ProductKeyText::from_alphabet_indices(&indices);
        self.keys.insert(name, text.clone());
        self.push(
            OPERATOR,
            CommandBody::IssueKey(IssueKey {
                product_key: Some(text),
                ..spec
            }),
        );
    }

    fn activate(&mut self, key: &str, org: &str, method: ActivationMethod, machines: Vec<String>) {
        let body = Activate {
            product_key: self.keys[key].clone(),
            org: id(org),
            method,
            machines: machines.iter().map(|m| id(m)).collect(),
        };
        self.push("vamt", CommandBody::Activate(body));
    }

    fn kms_host(&mut self, key: &str, org: &str, host: &str) {
        let body = ActivateKmsHost {
            product_key: self.keys[key].clone(),
            org: id(org),
            host: id(host),
        };
        self.push("kms-admin", CommandBody::ActivateKmsHost(body));
    }

    fn kms_client(&mut self, host: &str, client: &str, family: ClientFamily) {
        let body = ActivateKmsClient {
            host: id(host),
            client: id(client),
            family,
        };
        self.push(client, CommandBody::ActivateKmsClient(body));
    }
}

fn t(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("demo times are valid")
}

fn spec(license: &str, product: &str, kind: KeyKind) -> IssueKey {
    IssueKey::new(id(license), id(product), kind)
}

/// The demo's products: id, name, family, version, edition, what activates it.
const PRODUCTS: [(&str, &str, Family, &str, &str, KeyRequirement); 14] = {
    use Family::*;
    use KeyRequirement::{Embedded, LicenseServer, None as NoKey, VlKey};
    [
        (
            "win10-pro",
            "Windows 10 Pro",
            WindowsClient,
            "10",
            "pro",
            VlKey,
        ),
        (
            "win11-pro",
            "Windows 11 Pro",
            WindowsClient,
            "11",
            "pro",
            VlKey,
        ),
        (
            "win10-ent",
            "Windows 10 Enterprise",
            WindowsClient,
            "10",
            "enterprise",
            VlKey,
        ),
        (
            "win11-ent",
            "Windows 11 Enterprise",
            WindowsClient,
            "11",
            "enterprise",
            VlKey,
        ),
        (
            "ws2016-std",
            "Windows Server 2016 Standard",
            WindowsServer,
            "2016",
            "standard",
            VlKey,
        ),
        (
            "ws2019-std",
            "Windows Server 2019 Standard",
            WindowsServer,
            "2019",
            "standard",
            VlKey,
        ),
        (
            "ws2022-std",
            "Windows Server 2022 Standard",
            WindowsServer,
            "2022",
            "standard",
            VlKey,
        ),
        (
            "office-2019",
            "Office LTSC Professional Plus 2019",
            Office,
            "2019",
            "pro-plus",
            VlKey,
        ),
        (
            "office-2021",
            "Office LTSC Professional Plus 2021",
            Office,
            "2021",
            "pro-plus",
            VlKey,
        ),
        (
            "project-2021",
            "Project Professional 2021",
            Office,
            "2021",
            "professional",
            VlKey,
        ),
        (
            "m365-apps",
            "Microsoft 365 Apps for enterprise",
            Office,
            "2024",
            "enterprise",
            NoKey,
        ),
        (
            "sql-2019-std",
            "SQL Server 2019 Standard",
            SqlServer,
            "2019",
            "standard",
            Embedded,
        ),
        (
            "sql-2022-std",
            "SQL Server 2022 Standard",
            SqlServer,
            "2022",
            "standard",
            Embedded,
        ),
        (
            "rds-2022-ucal",
            "Windows Server 2022 RDS User CAL",
            Rds,
            "2022",
            "user-cal",
            LicenseServer,
        ),
    ]
};

/// Orgs, license IDs, products, purchases and roles.
fn catalog(s: &mut Script, machines: u64) {
    s.org("contoso", "Contoso Ltd", None);
    s.org("contoso-east", "Contoso East KK", Some("contoso"));
    s.org("contoso-west", "Contoso West GmbH", Some("contoso"));
    s.org("fabrikam", "Fabrikam Inc", None);
    use Program::*;
    for (license, org, program, numbers) in [
        (
            "V1000001",
            "contoso",
            OpenLicense,
            [Some("OL-778812"), Some("AUTH-5531-0042"), None],
        ),
        (
            "V2000002",
            "contoso-east",
            OpenValue,
            [Some("OV-220341"), None, None],
        ),
        (
            "V3000003",
            "contoso",
            EnterpriseAgreement,
            [Some("EA-9910022"), None, None],
        ),
        (
            "V4000004",
            "contoso-west",
            Mpsa,
            [Some("MPSA-77120"), None, Some("PA-4410-7781")],
        ),
        (
            "V5000005",
            "fabrikam",
            SelectPlus,
            [Some("SP-30011"), None, None],
        ),
    ] {
        s.license(license, org, program, numbers);
    }
    for (id, name, family, version, edition, requirement) in PRODUCTS {
        s.product(id, name, family, version, edition, requirement);
    }
    purchases_and_roles(s, machines);
}

/// What each license ID bought (R24: apart from activations), and who holds which role.
fn purchases_and_roles(s: &mut Script, machines: u64) {
    for (license, product, quantity) in [
        ("V1000001", "win11-pro", 40),
        ("V1000001", "office-2021", 25),
        ("V2000002", "win11-pro", 120),
        ("V2000002", "ws2022-std", 8),
        ("V3000003", "win11-ent", machines.max(1)),
        ("V3000003", "ws2022-std", 60),
        ("V3000003", "ws2016-std", 30),
        ("V3000003", "office-2021", 500),
        ("V3000003", "project-2021", 125),
        ("V3000003", "sql-2022-std", 12),
        ("V3000003", "sql-2019-std", 4),
        ("V3000003", "rds-2022-ucal", 300),
        ("V3000003", "m365-apps", 1000),
        ("V4000004", "win11-pro", 200),
        ("V4000004", "rds-2022-ucal", 50),
        ("V5000005", "win11-pro", 15),
    ] {
        s.purchase(license, product, quantity);
    }
    for (who, license, role) in [
        ("amy", "V1000001", Role::Administrator),
        ("owen", "V2000002", Role::Administrator),
        ("adam", "V3000003", Role::Administrator),
        ("rita", "V3000003", Role::ProductKeyReader),
        ("kim", "V3000003", Role::KeyAdministrator),
        ("wes", "V4000004", Role::Administrator),
        ("vic", "V4000004", Role::KeyViewer),
        ("fay", "V5000005", Role::Administrator),
    ] {
        s.role(who, license, role);
    }
}

/// Every key the demo issues, one of each kind, and the ESU orders.
fn keys(s: &mut Script, machines: u64) {
    s.key(
        "ol-win11",
        IssueKey {
            limit: Some(50),
            ..spec("V1000001", "win11-pro", KeyKind::Mak)
        },
    );
    s.key(
        "ea-win11",
        IssueKey {
            limit: Some(machines.max(1)),
            ..spec("V3000003", "win11-ent", KeyKind::Mak)
        },
    );
    for (name, start, end) in [
        ("esu-y1", "2025-10-14T00:00:00Z", "2026-10-13T00:00:00Z"),
        ("esu-y2", "2026-10-13T00:00:00Z", "2027-10-12T00:00:00Z"),
    ] {
        let esu = IssueKey {
            limit: Some(30),
            coverage_start: Some(t(start)),
            coverage_end: Some(t(end)),
            ..spec("V3000003", "ws2016-std", KeyKind::EsuMak)
        };
        s.key(name, esu);
    }
    s.key(
        "ea-kms-win",
        spec("V3000003", "ws2022-std", KeyKind::KmsHost),
    );
    s.key(
        "ea-kms-office",
        spec("V3000003", "office-2021", KeyKind::KmsHost),
    );
    s.key("ea-setup", spec("V3000003", "win11-ent", KeyKind::Setup));
    s.key(
        "ea-osa-1",
        IssueKey {
            limit: Some(100),
            ..spec("V3000003", "project-2021", KeyKind::Osa)
        },
    );
    s.key(
        "ea-osa-2",
        IssueKey {
            limit: Some(25),
            ..spec("V3000003", "project-2021", KeyKind::Osa)
        },
    );
    s.key(
        "ea-sql",
        spec("V3000003", "sql-2022-std", KeyKind::Embedded),
    );
    for (name, license, product, limit) in [
        ("mpsa-win11", "V4000004", "win11-pro", 150),
        ("mpsa-win10", "V4000004", "win10-pro", 10),
        ("sp-win11", "V5000005", "win11-pro", 15),
    ] {
        let mak = spec(license, product, KeyKind::Mak);
        s.key(
            name,
            IssueKey {
                limit: Some(limit),
                ..mak
            },
        );
    }
    esu_orders(s);
}

/// Two years of ESU for Windows Server 2016 (R12).
fn esu_orders(s: &mut Script) {
    for (order, start, end) in [
        (
            "esu-2016-y1",
            "2025-10-14T00:00:00Z",
            "2026-10-13T00:00:00Z",
        ),
        (
            "esu-2016-y2",
            "2026-10-13T00:00:00Z",
            "2027-10-12T00:00:00Z",
        ),
    ] {
        let body = OrderEsu {
            order_id: id(order),
            license_id: id("V3000003"),
            product: id("ws2016-std"),
            coverage_start: t(start),
            coverage_end: t(end),
        };
        s.push(OPERATOR, CommandBody::OrderEsu(body));
    }
}

fn machines(prefix: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:07}")).collect()
}

/// Small-office activity: independent and proxy activations up to and past exhaustion, a
/// limit increase requested and granted, refusals of every kind R7..R16 names.
fn offices(s: &mut Script) {
    use ActivationMethod::*;
    s.activate("ol-win11", "contoso", Online, machines("ol-pc", 0..1));
    s.activate("ol-win11", "contoso", Phone, machines("ol-pc", 1..2));
    s.hours(24);
    s.activate("ol-win11", "contoso-east", Proxy, machines("ol-pc", 2..50));
    s.hours(24);
    s.activate("ol-win11", "contoso", Online, machines("ol-pc", 50..51)); // exhausted
    s.activate("ol-win11", "contoso", Online, machines("ol-pc", 0..1)); // already active
    s.activate("ol-win11", "fabrikam", Online, machines("fab-pc", 0..1)); // R7
    let last5 = s.keys["ol-win11"].last5();
    s.push(
        "amy",
        CommandBody::RequestMakIncrease(RequestMakIncrease {
            request_id: id("RQ-OL-1"),
            license_id: id("V1000001"),
            authorization_number: Some("AUTH-5531-0042".into()),
            product: id("win11-pro"),
            key_last5: last5,
            activations_needed: 20,
            justification: "new branch office in Osaka, 20 laptops".into(),
        }),
    );
    s.hours(48);
    s.push(
        OPERATOR,
        CommandBody::GrantRequest(GrantRequest {
            request_id: id("RQ-OL-1"),
            amount: 20,
        }),
    );
    s.hours(2);
    s.activate("ol-win11", "contoso", Proxy, machines("ol-pc", 50..62));
    // MPSA: two subsidiaries share the structure; Fabrikam does not.
    s.activate(
        "mpsa-win11",
        "contoso-west",
        Proxy,
        machines("west-pc", 0..90),
    );
    s.activate(
        "mpsa-win11",
        "contoso-east",
        Proxy,
        machines("east-pc", 0..30),
    );
    s.activate("sp-win11", "fabrikam", Proxy, machines("fab-pc", 0..15));
    s.activate("sp-win11", "fabrikam", Online, machines("fab-pc", 15..16)); // exhausted
                                                                            // A leaked key is blocked; the next attempt is refused.
    s.activate(
        "mpsa-win10",
        "contoso-west",
        Online,
        machines("west-old", 0..1),
    );
    s.push(
        OPERATOR,
        CommandBody::BlockKey(BlockKey { key_id: KeyId(12) }),
    );
    s.activate(
        "mpsa-win10",
        "contoso-west",
        Online,
        machines("west-old", 1..2),
    );
    // Setup and embedded keys are never activated through the ledger.
    s.activate("ea-setup", "contoso", Online, machines("setup-pc", 0..1));
    s.activate("ea-sql", "contoso", Online, machines("sql-box", 0..1));
}

/// ESU, KMS and OSA at the enterprise.
/// The Enterprise Agreement's year: ESU servers, KMS hosts and clients, a request denied.
fn enterprise(s: &mut Script) {
    use ActivationMethod::*;
    s.activate("esu-y1", "contoso", Proxy, machines("srv2016", 0..12));
    s.activate("esu-y2", "contoso", Online, machines("srv2016", 0..1)); // not started
    for host in 1..=7 {
        s.kms_host(
            "ea-kms-win",
            if host % 2 == 0 {
                "contoso-east"
            } else {
                "contoso"
            },
            &format!("kms-{host:02}"),
        );
    }
    s.kms_host("ea-kms-win", "contoso", "kms-01"); // a re-activation
    s.kms_host("ea-kms-office", "contoso", "kms-01");
    s.push(
        "adam",
        CommandBody::RequestKms(RequestKms {
            request_id: id("RQ-EA-KMS-1"),
            license_id: id("V3000003"),
            product: id("ws2022-std"),
            reason: KmsRequestReason::AdditionalHosts,
            host_activations_needed: 2,
            justification: "disaster-recovery site in Frankfurt".into(),
        }),
    );
    s.hours(24);
    s.push(
        OPERATOR,
        CommandBody::DenyRequest(DenyRequest {
            request_id: id("RQ-EA-KMS-1"),
            reason: "use the existing six hosts; DR hosts can share kms-05 and kms-06".into(),
        }),
    );
    for i in 0..6 {
        s.kms_client(
            "kms-01",
            &format!("srv-{i:03}"),
            ClientFamily::WindowsServer,
        );
        s.hours(1);
    }
    for i in 0..30 {
        s.kms_client("kms-01", &format!("pc-{i:03}"), ClientFamily::WindowsClient);
    }
    for i in 0..8 {
        s.kms_client("kms-01", &format!("pc-{i:03}"), ClientFamily::Office);
    }
    s.kms_client("kms-02", "pc-100", ClientFamily::Office); // R15
    osa_and_exceptions(s);
}

/// An OSA redeemed, an Open Value KMS exception granted, and a key text copied (R1).
fn osa_and_exceptions(s: &mut Script) {
    s.push(
        "portal",
        CommandBody::RedeemOsa(RedeemOsa {
            product_key: s.keys["ea-osa-1"].clone(),
            tenant: id("contoso.onmicrosoft.com"),
        }),
    );
    // Open Value: a KMS key only by exception.
    s.push(
        "owen",
        CommandBody::RequestKms(RequestKms {
            request_id: id("RQ-OV-KMS-1"),
            license_id: id("V2000002"),
            product: id("ws2022-std"),
            reason: KmsRequestReason::OpenValueException,
            host_activations_needed: 2,
            justification: "factory network without internet access".into(),
        }),
    );
    s.hours(24);
    s.push(
        OPERATOR,
        CommandBody::GrantRequest(GrantRequest {
            request_id: id("RQ-OV-KMS-1"),
            amount: 2,
        }),
    );
    // Rita copies one key to set up a reimage.
    s.push(
        "rita",
        CommandBody::DiscloseKeys(DiscloseKeys {
            key_ids: vec![KeyId(2)],
            channel: DisclosureChannel::Copy,
            export_digest: None,
        }),
    );
}

/// The large MAK: proxy batches of 10,000 spread over the year, then one more that is refused.
fn rollout(s: &mut Script, total: u64) {
    let batches = total.div_ceil(10_000).max(1);
    let step_hours = (24 * 250 / batches as i64).max(1);
    let mut done = 0;
    while done < total {
        let size = (total - done).min(10_000);
        s.activate(
            "ea-win11",
            "contoso",
            ActivationMethod::Proxy,
            machines("ea-pc", done..done + size),
        );
        done += size;
        s.hours(step_hours);
    }
    s.activate(
        "ea-win11",
        "contoso-east",
        ActivationMethod::Proxy,
        machines("ea-late", 0..25),
    );
}

pub fn run(data: &keyledger_ledger::Location, machines_total: u64, seed: u64) -> Result<ExitCode> {
    let exists = match data {
        keyledger_ledger::Location::File(path) => path.exists(),
        keyledger_ledger::Location::Postgres(_) => keyledger_ledger::Store::open(data).is_ok(),
    };
    if exists {
        bail!("{data} exists already; pass --data NEW.redb (or another database) or remove it");
    }
    let mut s = Script {
        commands: Vec::new(),
        at: t(START),
        rng: StdRng::seed_from_u64(seed),
        keys: BTreeMap::new(),
    };
    catalog(&mut s, machines_total);
    keys(&mut s, machines_total);
    s.hours(24);
    offices(&mut s);
    s.hours(24 * 30);
    enterprise(&mut s);
    s.hours(24);
    rollout(&mut s, machines_total);
    let engine = keyledger_ledger::init(data, id(OPERATOR), t(START))
        .with_context(|| format!("cannot create {}", data))?;
    keyledger_ledger::proof::signing_key(data, true)?;
    let answers = submit(engine, s.commands)?;
    summarize(data, &answers)
}

/// Runs the script through the writer in chunks; the large activations are few, big commands.
fn submit(engine: keyledger_ledger::Engine, commands: Vec<Command>) -> Result<Vec<Answer>> {
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let progress = Progress::new("demo", commands.len() as u64);
    let mut pending = Vec::new();
    for chunk in commands.chunks(64) {
        pending.push(handle.send_blocking(chunk.to_vec(), false)?);
    }
    let mut answers = Vec::new();
    for rx in pending {
        let chunk = rx.blocking_recv().context("the writer stopped")??;
        progress.add(chunk.len() as u64);
        answers.extend(chunk);
    }
    progress.finish();
    drop(handle);
    let engine = writer.stop()?;
    let p = projections(engine.store(), Until::Head)?;
    write_snapshot(engine.store(), &p)?;
    Ok(answers)
}

fn summarize(data: &keyledger_ledger::Location, answers: &[Answer]) -> Result<ExitCode> {
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for answer in answers.iter().filter(|a| !a.ok) {
        *refusals
            .entry(answer.code().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let store = keyledger_ledger::Store::open(data)?;
    let head = store.head()?;
    outln!(
        "built demo ledger {}: {} events, head hash {}",
        data,
        head.seq,
        hex::encode(head.hash)
    );
    outln!(
        "{} commands accepted, {} refused:",
        answers.iter().filter(|a| a.ok).count(),
        answers.len() - answers.iter().filter(|a| a.ok).count()
    );
    for (code, count) in &refusals {
        outln!("  {count:>4}  {code}");
    }
    let flag = if *data == keyledger_ledger::Location::File("keyledger.redb".into()) {
        String::new()
    } else {
        format!(" --data {}", data)
    };
    outln!("\nTry next:");
    for line in [
        "report --license-id V3000003",
        "report --license-id V1000001 --as-of 2026-01-08T00:00:00Z --format json",
        "keys --license-id V3000003 --as rita --out keys.tsv",
        "keys --all --as vic",
        "log --license-id V1000001",
        "forecast",
        "verify",
        "export --out ledger.jsonl",
    ] {
        outln!("  keyledger{flag} {line}");
    }
    Ok(ExitCode::SUCCESS)
}
