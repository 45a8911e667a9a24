//! The Upstash REST wire format over the `redis` crate: a JSON command
//! (`["SET","key","value"]`) becomes a Redis command, and a Redis reply
//! becomes the JSON Upstash answers with. `edgegate serve` offers Upstash's
//! API to its guests over a Redis connection with it, and the test double
//! of Upstash speaks it, so both render replies the same way.

use serde_json::{Value as Json, json};

/// Why a JSON value is not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not an array, or an empty one.
    #[error("ERR a command is a non-empty JSON array")]
    NotAnArray,
    /// The first element is not a string.
    #[error("ERR the command name must be a string")]
    Name,
    /// An argument is neither a string nor a number.
    #[error("ERR arguments must be strings or numbers")]
    Argument,
}

/// The command `json` spells and its name as given.
pub fn command(json: &Json) -> Result<(&str, redis::Cmd), CommandError> {
    let Some((name, args)) = json.as_array().and_then(|parts| parts.split_first()) else {
        return Err(CommandError::NotAnArray);
    };
    let name = name.as_str().ok_or(CommandError::Name)?;
    let mut cmd = redis::cmd(name);
    for arg in args {
        match arg {
            Json::String(s) => cmd.arg(s.as_str()),
            Json::Number(n) => cmd.arg(n.to_string()),
            _ => return Err(CommandError::Argument),
        };
    }
    Ok((name, cmd))
}

/// A reply as Upstash renders it: strings as strings, maps as flat arrays
/// of keys and values, booleans as 0 or 1, errors inside arrays as their
/// text.
pub fn reply(value: redis::Value) -> Json {
    use redis::Value;
    match value {
        Value::Nil => Json::Null,
        Value::Int(i) => json!(i),
        Value::BulkString(b) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Json::String(s),
        Value::Okay => Json::String("OK".into()),
        Value::Array(items) | Value::Set(items) => {
            Json::Array(items.into_iter().map(reply).collect())
        }
        Value::Map(pairs) => Json::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [reply(k), reply(v)])
                .collect(),
        ),
        Value::Double(d) => json!(d),
        Value::Boolean(b) => json!(i64::from(b)),
        Value::ServerError(e) => {
            Json::String(format!("{} {}", e.code(), e.details().unwrap_or("")))
        }
        other => Json::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_take_strings_and_numbers_only() {
        let json = json!(["EVALSHA", "abc", 1, "key", 10]);
        let (name, cmd) = command(&json).unwrap();
        assert_eq!(name, "EVALSHA");
        assert_eq!(
            cmd.get_packed_command(),
            b"*5\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$3\r\nkey\r\n$2\r\n10\r\n"
        );
        assert_eq!(command(&json!([])).unwrap_err(), CommandError::NotAnArray);
        assert_eq!(
            command(&json!({"GET": "k"})).unwrap_err(),
            CommandError::NotAnArray
        );
        assert_eq!(command(&json!([1, "k"])).unwrap_err(), CommandError::Name);
        assert_eq!(
            command(&json!(["GET", null])).unwrap_err(),
            CommandError::Argument
        );
    }

    #[test]
    fn replies_render_as_upstash_does() {
        use redis::Value;
        let map = Value::Map(vec![(Value::BulkString(b"field".to_vec()), Value::Int(3))]);
        let nested = Value::Array(vec![Value::Nil, Value::Okay, Value::Boolean(true), map]);
        assert_eq!(reply(nested), json!([null, "OK", 1, ["field", 3]]));
        assert_eq!(reply(Value::SimpleString("PONG".into())), json!("PONG"));
    }
}
