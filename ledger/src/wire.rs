//! Commands as JSON (docs/api.md): one flat object with `type`, `at`, `actor`, optional
//! `command_id`, and the fields of that type.
//!
//! Malformed input is not a refusal: [`parse_command`] names the field that is wrong, and
//! such a command never reaches the writer. The body is read through
//! `serde_path_to_error` from an externally tagged form (`{type: fields}`), which, unlike an
//! internally tagged enum, keeps the path to the failing field.

use keyledger_core::{Command, CommandBody, CommandId, Principal, Timestamp};
use serde_json::{Map, Value};

/// The most bytes one JSON command may take (10,000 machines of 128 bytes fit).
pub const COMMAND_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Why a JSON text is not a command: the field (when one is to blame) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct InputError {
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    fn new(field: Option<&str>, message: impl Into<String>) -> InputError {
        InputError {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Parses one command from its JSON text.
pub fn parse_command(text: &str) -> Result<Command, InputError> {
    if text.len() > COMMAND_BYTES_MAX {
        return Err(InputError::new(
            None,
            format!(
                "command is {} bytes; at most {COMMAND_BYTES_MAX} are allowed",
                text.len()
            ),
        ));
    }
    command_from_value(parse_json(text.as_bytes())?)
}

/// Parses JSON text into a value, refusing an object that names a key twice (serde_json
/// would keep the last silently: `{"limit": 1, "limit": 1000000}` must not be read either
/// way). The error names the key.
pub fn parse_json(bytes: &[u8]) -> Result<Value, InputError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = serde::Deserialize::deserialize(&mut deserializer).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix(DUPLICATE) {
            Some(rest) => {
                let key = rest.split('`').next().unwrap_or_default();
                InputError::new(Some(key), format!("not JSON: {DUPLICATE}{rest}"))
            }
            None => InputError::new(None, format!("not JSON: {message}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| InputError::new(None, format!("not JSON: {e}")))?;
    Ok(value)
}

const DUPLICATE: &str = "duplicate key `";

/// A JSON value read with duplicate object keys refused, at every depth.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|Strict(v)| v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "{DUPLICATE}{key}` in an object"
                )));
            }
            let Strict(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// Parses one command from a JSON value (one element of an HTTP array, say).
pub fn command_from_value(value: Value) -> Result<Command, InputError> {
    let Value::Object(mut fields) = value else {
        return Err(InputError::new(None, "a command must be a JSON object"));
    };
    let type_name = match fields.remove("type") {
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(InputError::new(
                Some("type"),
                format!("expected a string, got {other}"),
            ))
        }
        None => return Err(InputError::new(Some("type"), "missing field")),
    };
    if type_name == "commit_streams" {
        return Err(InputError::new(
            Some("type"),
            "commit_streams is appended by the ledger itself, never sent",
        ));
    }
    let at: Timestamp = take(&mut fields, "at")?;
    let actor: Principal = take(&mut fields, "actor")?;
    let command_id: Option<CommandId> = match fields.get("command_id") {
        None | Some(Value::Null) => {
            fields.remove("command_id");
            None
        }
        Some(_) => Some(take(&mut fields, "command_id")?),
    };
    let mut tagged = Map::new();
    tagged.insert(type_name.clone(), Value::Object(fields));
    let body: CommandBody = serde_path_to_error::deserialize(Value::Object(tagged))
        .map_err(|e| body_error(&type_name, e))?;
    if let CommandBody::Activate(activate) = &body {
        // R9's bound is a limit on input size too: over it, nothing reaches the writer.
        let count = activate.machines.len();
        if count > keyledger_core::decide::PROXY_MACHINES_MAX {
            return Err(InputError::new(
                Some("machines"),
                format!(
                    "{count} machines; one request names at most {}",
                    keyledger_core::decide::PROXY_MACHINES_MAX
                ),
            ));
        }
    }
    Ok(Command {
        at,
        actor,
        command_id,
        body,
    })
}

fn take<T: serde::de::DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<T, InputError> {
    let value = fields
        .remove(name)
        .ok_or_else(|| InputError::new(Some(name), "missing field"))?;
    serde_json::from_value(value).map_err(|e| InputError::new(Some(name), e.to_string()))
}

fn body_error(type_name: &str, err: serde_path_to_error::Error<serde_json::Error>) -> InputError {
    let message = err.inner().to_string();
    let path = err.path().to_string();
    // The first path segment is the type itself; what follows is the field.
    let from_path = path
        .strip_prefix(type_name)
        .map(|rest| rest.trim_start_matches('.'))
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned);
    // With no path below the type, an unknown variant is the type itself.
    let at_top = !path.starts_with(type_name);
    if at_top && message.starts_with("unknown variant") {
        return InputError::new(Some("type"), format!("unknown command type `{type_name}`"));
    }
    let field = from_path.or_else(|| quoted_field(&message));
    InputError { field, message }
}

/// serde names unknown and missing fields in backquotes: "unknown field `x`, expected …".
fn quoted_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// Writes a command as its flat JSON object (absent optional fields omitted).
pub fn command_to_json(command: &Command) -> Value {
    let body = serde_json::to_value(&command.body).expect("commands serialize");
    let Value::Object(tagged) = body else {
        unreachable!("a command body serializes as {{type: fields}}")
    };
    let (type_name, fields) = tagged.into_iter().next().expect("one tag");
    let mut flat = Map::new();
    flat.insert("type".to_owned(), Value::String(type_name));
    flat.insert("at".to_owned(), Value::String(command.at.to_string()));
    flat.insert("actor".to_owned(), Value::String(command.actor.to_string()));
    if let Some(id) = &command.command_id {
        flat.insert("command_id".to_owned(), Value::String(id.to_string()));
    }
    if let Value::Object(fields) = fields {
        flat.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
    }
    Value::Object(flat)
}

/// Appends one logged event as the change feed sends it (the event stream's `data`, a
/// consumer page's `events[]` item): `{"event":…,"hash":"…","prev":"…","seq":N}`, the bytes
/// `serde_json` writes for that object, without building it as a `Value` first.
pub fn write_logged_event(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &crate::chain::ChainHash,
    hash: &crate::chain::ChainHash,
    event: &keyledger_core::Event,
) {
    let hex_of = |what: &[u8; 32], out: &mut Vec<u8>| {
        let mut text = [0u8; 64];
        hex::encode_to_slice(what, &mut text).expect("64 hex digits for 32 bytes");
        out.extend_from_slice(&text);
    };
    out.extend_from_slice(b"{\"event\":");
    serde_json::to_writer(&mut *out, &event_to_json(event)).expect("events serialize");
    out.extend_from_slice(b",\"hash\":\"");
    hex_of(hash, out);
    out.extend_from_slice(b"\",\"prev\":\"");
    hex_of(prev, out);
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b'}');
}

/// Writes an event as a flat JSON object: `at`, `actor`, `type` and the event's fields.
pub fn event_to_json(event: &keyledger_core::Event) -> Value {
    let body = serde_json::to_value(&event.body).expect("events serialize");
    let mut flat = Map::new();
    flat.insert("at".to_owned(), Value::String(event.at.to_string()));
    flat.insert("actor".to_owned(), Value::String(event.actor.to_string()));
    match body {
        Value::Object(tagged) => {
            let (type_name, fields) = tagged.into_iter().next().expect("one tag");
            flat.insert("type".to_owned(), Value::String(type_name));
            if let Value::Object(fields) = fields {
                flat.extend(fields);
            }
        }
        Value::String(type_name) => {
            flat.insert("type".to_owned(), Value::String(type_name));
        }
        other => unreachable!("an event body serializes as a tag, got {other}"),
    }
    Value::Object(flat)
}
