//! The OpenAPI 3.1 document of the HTTP API, generated: each route's handler carries its
//! `#[utoipa::path]` beside its code, the router is built from those handlers
//! (`routes::router`, utoipa-axum), and every body's schema is derived from the type that
//! is serialized (reports, answers, proofs, consumers: `utoipa::ToSchema`). Served at
//! `GET /v1/openapi.json` and kept in `docs/openapi.json` (a test compares them).
//!
//! Some answers are written straight into bytes for speed (a log page, a consumer's page,
//! the health and verify answers): the types below describe them, and the test suite
//! checks real answers of every route against the document.

use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The document's frame: title, version, the bearer scheme, the shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyledger",
        description = "An append-only, hash-chained ledger of volume-license product keys: \
                       activations, requests and grants, reports per license ID, proofs. \
                       Field names are public API (docs/api.md).",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerScheme),
    components(schemas(
        keyledger_ledger::Answer,
        CommandJson,
        EventJson,
        LogEntry
    ))
)]
pub struct ApiDoc;

/// `Authorization: Bearer <token>`: a keyledger `klt_` token, or an OpenID Connect
/// provider's JWT access token (docs/api.md, "Tokens").
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a keyledger token (klt_…) or the identity provider's JWT access token",
                    ))
                    .build(),
            ),
        );
    }
}

/// An event as the API writes it: `type`, `at` and `actor`, then the fields of its type
/// (docs/api.md, "Events"). Derived from `EventBody`'s own schema, flattened as
/// `keyledger_ledger::wire::event_to_json` flattens the JSON.
pub struct EventJson;

impl PartialSchema for EventJson {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let flat: Vec<Value> = variants::<keyledger_core::EventBody>()
            .iter()
            .flat_map(flat_event)
            .collect();
        serde_json::from_value(json!({ "oneOf": flat })).expect("a schema")
    }
}

impl ToSchema for EventJson {
    fn name() -> std::borrow::Cow<'static, str> {
        "Event".into()
    }

    /// The schemas the events' fields name (ids, enums).
    fn schemas(schemas: &mut Vec<(String, RefOr<utoipa::openapi::schema::Schema>)>) {
        <keyledger_core::EventBody as ToSchema>::schemas(schemas);
    }
}

/// The variants of an externally tagged enum's derived schema (its `oneOf`).
fn variants<T: PartialSchema>() -> Vec<Value> {
    let tagged = serde_json::to_value(T::schema()).expect("schemas serialize");
    tagged["oneOf"].as_array().cloned().unwrap_or_default()
}

/// The fields every event and command has on the wire: `type` (this variant's name), `at`
/// and `actor`; their properties and the names required.
fn common_fields(name: &str) -> (Map<String, Value>, Vec<Value>) {
    let mut properties = Map::new();
    properties.insert("type".into(), json!({ "type": "string", "enum": [name] }));
    properties.insert(
        "at".into(),
        json!({ "type": "string", "format": "date-time", "description": "business time" }),
    );
    properties.insert("actor".into(), json!({ "type": "string" }));
    (properties, vec![json!("type"), json!("at"), json!("actor")])
}

/// One variant of the externally tagged `EventBody` schema as flat objects: a struct
/// variant `{name: {fields}}` becomes `{type: name, at, actor, fields}`; unit variants (an
/// enum of names) become one object each.
fn flat_event(variant: &Value) -> Vec<Value> {
    if let Some(names) = variant["enum"].as_array() {
        return names
            .iter()
            .filter_map(Value::as_str)
            .map(|name| {
                let (properties, required) = common_fields(name);
                json!({ "type": "object", "properties": properties, "required": required })
            })
            .collect();
    }
    let Some((name, fields)) = variant["properties"]
        .as_object()
        .and_then(|p| p.iter().next())
    else {
        return vec![variant.clone()];
    };
    let (mut properties, mut required) = common_fields(name);
    if let Some(own) = fields["properties"].as_object() {
        properties.extend(own.clone());
    }
    required.extend(fields["required"].as_array().cloned().unwrap_or_default());
    let mut object = json!({ "type": "object", "properties": properties, "required": required });
    if let Some(description) = fields.get("description").or(variant.get("description")) {
        object["description"] = description.clone();
    }
    vec![object]
}

/// A command as the API takes it: `type`, `at`, `actor`, `command_id`?, then the fields
/// of its type (docs/api.md, "Commands"). Derived from `CommandBody`'s own schema,
/// flattened as `keyledger_ledger::wire::command_from_value` reads the JSON.
pub struct CommandJson;

impl PartialSchema for CommandJson {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let flat: Vec<Value> = variants::<keyledger_core::CommandBody>()
            .iter()
            .filter_map(|variant| {
                let (name, fields) = variant["properties"].as_object()?.iter().next()?;
                let (mut properties, required) = common_fields(name);
                properties.insert(
                    "command_id".into(),
                    json!({ "type": "string", "description": "makes the command safe to resend" }),
                );
                let common =
                    json!({ "type": "object", "properties": properties, "required": required });
                Some(json!({ "allOf": [common, fields] }))
            })
            .collect();
        serde_json::from_value(json!({ "oneOf": flat })).expect("a schema")
    }
}

impl ToSchema for CommandJson {
    fn name() -> std::borrow::Cow<'static, str> {
        "Command".into()
    }

    /// The schemas of the commands' bodies and the types they name.
    fn schemas(schemas: &mut Vec<(String, RefOr<utoipa::openapi::schema::Schema>)>) {
        <keyledger_core::CommandBody as ToSchema>::schemas(schemas);
    }
}

/// One event of a log page.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct LogEntry {
    seq: u64,
    #[schema(value_type = EventJson)]
    event: Value,
}

/// `GET /v1/log`: a page of events, and where the next page starts (`null` at the end).
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct LogPage {
    events: Vec<LogEntry>,
    next_from: Option<u64>,
}

/// A statement (`keyledger_ledger::statement::Statement`, docs/proofs.md "Statements").
#[derive(ToSchema)]
#[schema(as = Statement)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct StatementDoc {
    /// `keyledger-statement/1`.
    format: String,
    license_id: String,
    /// The signed checkpoint (with any cosignature lines), of `commitment.seq` records.
    checkpoint: String,
    commitment: StatementRecordDoc,
    streams: Vec<StreamEntryDoc>,
    streams_proof: MultiProofDoc,
    events: Vec<StatementRecordDoc>,
    /// Hex hashes proving the events and the commitment in the checkpoint's tree.
    events_proof: Vec<String>,
}

/// One record of a statement.
#[derive(ToSchema)]
#[schema(as = StatementRecord)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct StatementRecordDoc {
    seq: u64,
    /// base64 of the exact record bytes.
    record: String,
    /// The decoded record, as the log's pages write events.
    event: serde_json::Value,
}

/// A stream's entry in the streams tree.
#[derive(ToSchema)]
#[schema(as = StreamEntry)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct StreamEntryDoc {
    stream: String,
    count: u64,
    last_seq: u64,
    /// The running hash, hex.
    hash: String,
}

/// Leaves at `indices`, proven together by `path` (hex).
#[derive(ToSchema)]
#[schema(as = MultiProof)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct MultiProofDoc {
    indices: Vec<u64>,
    path: Vec<String>,
}

/// `GET /v1/consumers/{name}/events`: the events after the consumer's position that its
/// filter takes; `through` is the last seq looked at (acknowledge it to move on).
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct ConsumerPage {
    consumer: String,
    events: Vec<LogEntry>,
    position: u64,
    through: u64,
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct Health {
    ok: bool,
    /// `ok`, `degraded` or `writer_stopped`.
    status: String,
    /// The last seq folded into the read models.
    seq: u64,
    /// The background check of the chain: `pending`, `ok` or `failed`.
    chain: String,
    /// Why the service is not ok.
    reason: Option<String>,
    /// How often the writer was restarted after a failure.
    writer_restarts: Option<u64>,
    last_failure: Option<String>,
}

/// `GET /v1/verify`: the whole chain rehashed.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct Verified {
    ok: bool,
    events: u64,
    blocks: u64,
    secrets: u64,
    head_seq: u64,
    /// 64 hex digits.
    head_hash: String,
}

/// `GET /v1/keys?format=json`: the keys' text (recorded as disclosed first, R2).
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct KeysExport {
    keys: Vec<keyledger_projections::keys::KeyRow>,
    /// How many key texts this export disclosed.
    disclosed: u64,
}

/// `GET /v1/alerts?format=json`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct Alerts {
    alerts: Vec<keyledger_projections::alerts::Alert>,
}

/// A consumer, with a webhook's secret only in the answer that created it.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct ConsumerAnswer {
    ok: Option<bool>,
    consumer: keyledger_ledger::consumer::Consumer,
}

/// `GET /v1/consumers`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct Consumers {
    consumers: Vec<keyledger_ledger::consumer::Consumer>,
}

/// `POST /v1/consumers/{name}/ack`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "a schema: it describes JSON written elsewhere")]
pub struct Acknowledged {
    ok: bool,
    position: u64,
}
