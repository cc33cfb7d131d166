//! The common activation body, read without a detour through `serde_json::Value`.
//!
//! `POST /v1/activations` is the hot path: most bodies are a plain MAK activation
//! (`{product_key, org, method, machines}`, perhaps with `type: "activate"`, `actor` or
//! `command_id`). Reading such a body straight into its command costs a fifth of the
//! general path (JSON value, flat-to-tagged rewrite, path-tracking deserializer). Anything
//! else — another activation type, a stray field, a bad value — returns `None`, and the
//! caller takes the general path, which also writes the error messages: this module never
//! decides what is malformed, so both paths accept and refuse exactly the same bodies.

use keyledger_core::command::Activate;
use keyledger_core::{Command, CommandBody, CommandId, Principal, Timestamp};
use keyledger_ledger::wire::{command_from_value, parse_json, InputError};
use serde_json::{json, Value};

/// The actor of an activation that names none.
pub const DEFAULT_ACTOR: &str = keyledger_core::decide::ACTIVATION_ACTOR;

/// The actor a tokenless activation is recorded with: `activation-client`, or
/// `activation-client/<name>` when the body names its tool, so that no activation can read
/// like a principal's action in the log (principals cannot take these names).
pub fn activation_actor(named: Option<&str>) -> Result<Principal, String> {
    let text = match named {
        None => {
            return Ok(Principal::new(DEFAULT_ACTOR).expect("the default actor is a valid name"))
        }
        Some(name) => format!("{DEFAULT_ACTOR}/{name}"),
    };
    Principal::new(&text).map_err(|e| format!("recorded as {DEFAULT_ACTOR}/<actor>, which {e}"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainActivation {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    command_id: Option<CommandId>,
    product_key: keyledger_core::ProductKeyText,
    org: keyledger_core::OrgId,
    method: keyledger_core::ActivationMethod,
    machines: Vec<keyledger_core::MachineId>,
}

const ACTIVATION_TYPES: [&str; 4] = [
    "activate",
    "activate_kms_host",
    "activate_kms_client",
    "redeem_osa",
];

/// Any activation body, through the general command reader, which names what is wrong.
pub fn general_activation(body: &[u8], at: Timestamp) -> Result<Command, InputError> {
    let err = |field: Option<&str>, message: String| InputError {
        field: field.map(str::to_owned),
        message,
    };
    let Value::Object(mut fields) = parse_json(body)? else {
        return Err(err(None, "an activation must be a JSON object".to_owned()));
    };
    if fields.contains_key("at") {
        let why = "the server stamps `at`: a client's claimed time is not evidence";
        return Err(err(Some("at"), why.to_owned()));
    }
    let kind = fields
        .entry("type")
        .or_insert_with(|| json!("activate"))
        .clone();
    if !kind.as_str().is_some_and(|k| ACTIVATION_TYPES.contains(&k)) {
        let why = format!("{kind} is not an activation; use /v1/commands");
        return Err(err(Some("type"), why));
    }
    let named = match fields.get("actor") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.as_str()),
        Some(other) => {
            return Err(err(
                Some("actor"),
                format!("expected a string, got {other}"),
            ))
        }
    };
    let actor = activation_actor(named).map_err(|why| err(Some("actor"), why))?;
    fields.insert("actor".to_owned(), json!(actor.as_str()));
    fields.insert("at".to_owned(), json!(at.to_string()));
    command_from_value(Value::Object(fields))
}

/// The command a plain MAK activation body stands for, stamped `at`; `None` when the body
/// is anything else (the general path then reads it, or says what is wrong with it).
pub fn plain_activation(body: &[u8], at: Timestamp) -> Option<Command> {
    let plain: PlainActivation = serde_json::from_slice(body).ok()?;
    if plain.kind.as_deref().is_some_and(|kind| kind != "activate")
        || plain.machines.len() > keyledger_core::decide::PROXY_MACHINES_MAX
    {
        return None;
    }
    let actor = activation_actor(plain.actor.as_deref()).ok()?;
    Some(Command {
        at,
        actor,
        command_id: plain.command_id,
        body: CommandBody::Activate(Activate {
            product_key: plain.product_key,
            org: plain.org,
            method: plain.method,
            machines: plain.machines,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(body: &Value, at: Timestamp) -> Option<Command> {
        general_activation(body.to_string().as_bytes(), at).ok()
    }

    #[test]
    fn plain_bodies_read_the_same_as_on_the_general_path() {
        let at = Timestamp::from_unix_micros(1_780_000_000_123_456);
        let key = "BCDFG-HJKMP-QRTVW-XY234-6789B";
        let bodies = [
            json!({"product_key": key, "org": "contoso", "method": "online", "machines": ["pc-1"]}),
            json!({"type": "activate", "product_key": key.to_lowercase(), "org": "contoso",
                   "method": "proxy", "machines": ["a", "b", "a"], "actor": "vamt", "command_id": "c-1"}),
            json!({"product_key": key, "org": "contoso", "method": "phone", "machines": ["pc"],
                   "command_id": null}),
        ];
        for body in &bodies {
            let fast = plain_activation(body.to_string().as_bytes(), at);
            assert!(fast.is_some(), "{body}");
            assert_eq!(fast, general(body, at), "{body}");
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_path() {
        let at = Timestamp::from_unix_micros(0);
        let key = "BCDFG-HJKMP-QRTVW-XY234-6789B";
        let many: Vec<String> = (0..10_001).map(|i| format!("m{i}")).collect();
        let others = [
            json!({"type": "activate_kms_host", "product_key": key, "org": "o", "host": "h"}),
            json!({"product_key": key, "org": "contoso", "method": "online", "machines": ["pc"], "at": "2026-01-01T00:00:00Z"}),
            json!({"product_key": key, "org": "contoso", "method": "online", "machines": ["pc"], "extra": 1}),
            json!({"product_key": "not-a-key", "org": "contoso", "method": "online", "machines": ["pc"]}),
            json!({"product_key": key, "org": "contoso", "method": "carrier-pigeon", "machines": ["pc"]}),
            json!({"product_key": key, "org": "contoso", "method": "proxy", "machines": many}),
            json!({"product_key": key, "org": "contoso", "method": "online"}),
            json!(["not", "an", "object"]),
        ];
        for body in &others {
            assert_eq!(
                plain_activation(body.to_string().as_bytes(), at),
                None,
                "{body}"
            );
        }
        assert_eq!(plain_activation(b"{not json", at), None);
    }
}
