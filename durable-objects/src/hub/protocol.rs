//! The hub's wire protocol (a contract with clients): one JSON object per
//! text frame.
//!
//! Client to hub: `subscribe`, `unsubscribe` (`topic`, `id`), `publish`
//! (`topic`, `data`, `id`), `presence` (`id`), `ping`. Hub to client: `ack`,
//! `message`, `presence`, `join`, `leave`, `pong`, `error`. `id` is optional;
//! when given (a string, or a number) it is echoed verbatim. Unknown fields
//! are ignored. `data` is any JSON value and is relayed byte for byte.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Longest topic name, in characters.
pub const MAX_TOPIC_LEN: usize = 128;

/// Whether `topic` is 1..=128 characters of `[A-Za-z0-9._:/-]`.
pub fn valid_topic(topic: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Over the per-connection message rate.
    RateLimited,
    /// Not allowed for this user (e.g. publishing to `system/…` without `admin`).
    Forbidden,
    /// Not JSON, unknown type, missing or invalid fields.
    BadMessage,
    /// A message or the connection's subscription set is too large.
    TooLarge,
}

/// A well-formed client message.
#[derive(Debug, Clone)]
pub enum ClientMessage<'a> {
    /// `{"type":"subscribe","topic":…,"id":…}`
    Subscribe {
        /// Topic name (already validated).
        topic: Cow<'a, str>,
        /// Echoed in the `ack`.
        id: Option<&'a RawValue>,
    },
    /// `{"type":"unsubscribe","topic":…,"id":…}`
    Unsubscribe {
        /// Topic name (already validated).
        topic: Cow<'a, str>,
        /// Echoed in the `ack`.
        id: Option<&'a RawValue>,
    },
    /// `{"type":"publish","topic":…,"data":…,"id":…}`
    Publish {
        /// Topic name (already validated).
        topic: Cow<'a, str>,
        /// Any JSON value, relayed verbatim.
        data: &'a RawValue,
        /// Echoed in the `ack`.
        id: Option<&'a RawValue>,
    },
    /// `{"type":"presence","id":…}`
    Presence {
        /// Echoed in the answer.
        id: Option<&'a RawValue>,
    },
    /// `{"type":"ping"}`
    Ping,
}

/// A client message that could not be understood.
#[derive(Debug, Clone)]
pub struct BadMessage<'a> {
    /// The message's `id`, when it could be read.
    pub id: Option<&'a RawValue>,
    /// What is wrong, for the `error` message.
    pub reason: &'static str,
}

/// Every field read as raw JSON, so that one wrong field still leaves the
/// `id` readable for the error.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    topic: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// Keeps an explicit `null` as a value (plain `Option` would read it as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one text frame.
pub fn parse_client(text: &str) -> Result<ClientMessage<'_>, BadMessage<'_>> {
    let bad = |id, reason| BadMessage { id, reason };
    let fields: Fields<'_> = serde_json::from_str(text)
        .map_err(|_| bad(None, "message is not a JSON object of the protocol"))?;
    let id = match fields.id {
        None => None,
        Some(raw) if is_string_or_number(raw) => Some(raw),
        Some(_) => return Err(bad(None, "id must be a string")),
    };
    let kind = fields
        .kind
        .and_then(json_string)
        .ok_or_else(|| bad(id, "type must be a string"))?;
    let topic = || {
        let topic = fields
            .topic
            .and_then(json_string)
            .ok_or_else(|| bad(id, "topic must be a string"))?;
        if valid_topic(&topic) {
            Ok(topic)
        } else {
            Err(bad(
                id,
                "topic must be 1 to 128 characters of A-Z a-z 0-9 . _ : / -",
            ))
        }
    };
    match kind.as_ref() {
        "subscribe" => Ok(ClientMessage::Subscribe {
            topic: topic()?,
            id,
        }),
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            topic: topic()?,
            id,
        }),
        "publish" => {
            let topic = topic()?;
            let data = fields.data.ok_or_else(|| bad(id, "publish needs data"))?;
            Ok(ClientMessage::Publish { topic, data, id })
        }
        "presence" => Ok(ClientMessage::Presence { id }),
        "ping" => Ok(ClientMessage::Ping),
        _ => Err(bad(id, "unknown message type")),
    }
}

fn is_string_or_number(raw: &RawValue) -> bool {
    matches!(
        raw.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9')
    )
}

/// The string value of `raw`, borrowed unless it has escapes.
pub(crate) fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    if !json.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(json) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// A message from the hub.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage<'a> {
    /// The request with this `id` was carried out.
    Ack {
        /// The request's `id`.
        id: &'a RawValue,
    },
    /// A publish on a subscribed topic.
    Message {
        /// Topic.
        topic: &'a str,
        /// The published JSON, verbatim.
        data: &'a RawValue,
        /// Publishing user (or service, for backend pushes).
        from: &'a str,
    },
    /// Users connected to the hub, sorted.
    Presence {
        /// The request's `id`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        /// User ids.
        users: Vec<&'a str>,
    },
    /// A user's first connection joined the hub.
    Join {
        /// User id.
        user: &'a str,
    },
    /// A user's last connection left the hub.
    Leave {
        /// User id.
        user: &'a str,
    },
    /// Answer to `ping`.
    Pong,
    /// A request failed.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// The failed request's `id`, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        /// Human-readable reason.
        message: &'a str,
    },
}

impl ServerMessage<'_> {
    /// The text frame.
    pub fn to_json(&self) -> String {
        // Plain strings and already-valid raw JSON: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The frame a client sends as `ping`, answered by the platform when the
/// auto-response is registered.
pub const PING: &str = r#"{"type":"ping"}"#;
/// The answer to [`PING`].
pub const PONG: &str = r#"{"type":"pong"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(valid_topic("a"));
        assert!(valid_topic("room-1/chat:general_v2.x"));
        assert!(valid_topic(&"a".repeat(128)));
        assert!(!valid_topic(""));
        assert!(!valid_topic(&"a".repeat(129)));
        assert!(!valid_topic("has space"));
        assert!(!valid_topic("é"));
    }

    #[test]
    fn parses_and_keeps_ids() {
        let m = parse_client(r#"{"type":"publish","topic":"t","data":null,"id":"3"}"#).unwrap();
        match m {
            ClientMessage::Publish { topic, data, id } => {
                assert_eq!(topic, "t");
                assert_eq!(data.get(), "null");
                assert_eq!(id.unwrap().get(), r#""3""#);
            }
            other => panic!("{other:?}"),
        }
        let e = parse_client(r#"{"type":"subscribe","topic":5,"id":"9"}"#).unwrap_err();
        assert_eq!(e.id.unwrap().get(), r#""9""#);
        let e = parse_client(r#"{"type":"publish","topic":"t","id":"9"}"#).unwrap_err();
        assert_eq!(e.reason, "publish needs data");
        assert!(parse_client("nope").unwrap_err().id.is_none());
        assert!(
            parse_client(r#"{"type":"x","id":{}}"#)
                .unwrap_err()
                .id
                .is_none()
        );
    }

    #[test]
    fn whitespace_and_numeric_ids() {
        let m = parse_client(" { \"type\" : \"presence\" ,\n \"id\" :  42 } ").unwrap();
        assert!(matches!(m, ClientMessage::Presence { id: Some(id) } if id.get() == "42"));
        let m = parse_client(r#"{"type":"presence","id":null}"#).unwrap();
        assert!(matches!(m, ClientMessage::Presence { id: None }));
    }

    #[test]
    fn escaped_strings() {
        let m = parse_client(r#"{"type":"subscribe","topic":"a\/b"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Subscribe { topic, id: None } if topic == "a/b"));
    }

    #[test]
    fn server_messages() {
        let data = RawValue::from_string(r#"{"k":[1,2]}"#.into()).unwrap();
        let m = ServerMessage::Message {
            topic: "t",
            data: &data,
            from: "al\"ice",
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"message","topic":"t","data":{"k":[1,2]},"from":"al\"ice"}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), PONG);
        let e = ServerMessage::Error {
            code: ErrorCode::RateLimited,
            id: None,
            message: "slow down",
        };
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","code":"RATE_LIMITED","message":"slow down"}"#
        );
    }
}
