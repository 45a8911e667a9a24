//! Single-pass claims reader: picks the few claims the gateway needs out of
//! the payload, borrowing from it, and skips everything else unparsed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Names of the configurable claims.
pub(crate) struct ClaimNames {
    pub(crate) user: Box<str>,
    pub(crate) roles: Box<str>,
    pub(crate) scope: Box<str>,
}

/// The claims the gateway reads, borrowed from the decoded payload.
#[derive(Default, Debug)]
pub(crate) struct Claims<'a> {
    pub(crate) exp: Option<f64>,
    pub(crate) nbf: Option<f64>,
    pub(crate) iss: Option<Cow<'a, str>>,
    pub(crate) aud: Option<Vec<Cow<'a, str>>>,
    pub(crate) user: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) scope: Option<Vec<String>>,
    pub(crate) scp: Option<Vec<String>>,
}

// Which of the wanted claims a payload member feeds; configured names may
// coincide with each other or with registered ones.
const EXP: u8 = 1;
const NBF: u8 = 2;
const ISS: u8 = 4;
const AUD: u8 = 8;
const USER: u8 = 16;
const ROLES: u8 = 32;
const SCOPE: u8 = 64;
const SCP: u8 = 128;

impl ClaimNames {
    fn roles_of(&self, name: &str) -> u8 {
        let mut r = match name {
            "exp" => EXP,
            "nbf" => NBF,
            "iss" => ISS,
            "aud" => AUD,
            "scp" => SCP,
            _ => 0,
        };
        if name == &*self.user {
            r |= USER;
        }
        if name == &*self.roles {
            r |= ROLES;
        }
        if name == &*self.scope {
            r |= SCOPE;
        }
        r
    }

    /// Reads the payload JSON. Any error (not an object, trailing data,
    /// duplicate or ill-typed wanted claim) means a malformed token.
    pub(crate) fn read<'a>(&self, payload: &'a [u8]) -> Result<Claims<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let claims = ClaimsSeed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(claims)
    }
}

struct ClaimsSeed<'n>(&'n ClaimNames);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut c = Claims::default();
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<Name<'de>>()? {
            let roles = self.0.roles_of(&key.0);
            if roles == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A repeated claim could be read differently by the issuer and
            // by us; refuse it.
            if seen & roles != 0 {
                return Err(de::Error::custom("duplicate claim"));
            }
            seen |= roles;
            let value: ClaimValue<'de> = map.next_value()?;
            let bad = || de::Error::custom("ill-typed claim");
            if roles & (EXP | NBF) != 0 {
                let t = value.as_time().ok_or_else(bad)?;
                if roles & EXP != 0 {
                    c.exp = t;
                }
                if roles & NBF != 0 {
                    c.nbf = t;
                }
            }
            if roles & ISS != 0 {
                c.iss = match &value {
                    ClaimValue::Null => None,
                    ClaimValue::Str(s) => Some(s.clone()),
                    _ => return Err(bad()),
                };
            }
            if roles & AUD != 0 {
                c.aud = match &value {
                    ClaimValue::Null => None,
                    ClaimValue::Str(s) => Some(vec![s.clone()]),
                    ClaimValue::List(l) => Some(l.clone()),
                    _ => return Err(bad()),
                };
            }
            if roles & USER != 0 {
                c.user = match &value {
                    ClaimValue::Null => None,
                    ClaimValue::Str(s) => Some(s.clone().into_owned()),
                    // Some issuers use numeric subject ids.
                    ClaimValue::Int(i) => Some(i.to_string()),
                    _ => return Err(bad()),
                };
            }
            if roles & ROLES != 0 {
                c.roles = value.to_words().ok_or_else(bad)?.unwrap_or_default();
            }
            if roles & SCOPE != 0 {
                c.scope = value.to_words().ok_or_else(bad)?;
            }
            if roles & SCP != 0 {
                c.scp = value.to_words().ok_or_else(bad)?;
            }
        }
        Ok(c)
    }
}

/// An object key, borrowed when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Name)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The shapes a wanted claim may take.
enum ClaimValue<'a> {
    Null,
    Str(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
    Int(i64),
    Num(f64),
    Other,
}

impl ClaimValue<'_> {
    /// NumericDate (RFC 7519 §2); `Ok(None)` for null.
    fn as_time(&self) -> Option<Option<f64>> {
        match *self {
            ClaimValue::Null => Some(None),
            ClaimValue::Int(i) => Some(Some(i as f64)),
            ClaimValue::Num(n) if n.is_finite() => Some(Some(n)),
            _ => None,
        }
    }

    /// A space-separated string or an array of strings, as owned words;
    /// `Some(None)` for null.
    fn to_words(&self) -> Option<Option<Vec<String>>> {
        match self {
            ClaimValue::Null => Some(None),
            ClaimValue::Str(s) => Some(Some(s.split_whitespace().map(str::to_owned).collect())),
            ClaimValue::List(l) => Some(Some(l.iter().map(|s| s.clone().into_owned()).collect())),
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for ClaimValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = ClaimValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a claim value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ClaimValue::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ClaimValue::Other)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(ClaimValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => ClaimValue::Int(i),
            Err(_) => ClaimValue::Num(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(ClaimValue::Num(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(ClaimValue::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ClaimValue::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(ClaimValue::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element::<Name<'de>>()? {
            items.push(item.0);
        }
        Ok(ClaimValue::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ClaimValue::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ClaimNames {
        ClaimNames {
            user: "sub".into(),
            roles: "roles".into(),
            scope: "scope".into(),
        }
    }

    #[test]
    fn reads_wanted_claims_and_skips_the_rest() {
        let c = names()
            .read(br#"{"sub":"u1","x":{"a":[1,2]},"exp":10.5,"aud":["a","b"],"roles":"r1  r2","scp":["s"]}"#)
            .unwrap();
        assert_eq!(c.user.as_deref(), Some("u1"));
        assert_eq!(c.exp, Some(10.5));
        assert_eq!(c.aud.unwrap(), ["a", "b"]);
        assert_eq!(c.roles, ["r1", "r2"]);
        assert_eq!(c.scp.unwrap(), ["s"]);
        assert!(c.scope.is_none());
    }

    #[test]
    fn refuses_duplicates_bad_types_and_trailing_data() {
        let n = names();
        assert!(n.read(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(n.read(br#"{"exp":"tomorrow"}"#).is_err());
        assert!(n.read(br#"{"roles":[1]}"#).is_err());
        assert!(n.read(br#"{} {}"#).is_err());
        assert!(n.read(br#"[]"#).is_err());
    }

    #[test]
    fn escaped_strings_and_numeric_subjects() {
        let c = names().read(br#"{"sub":42,"iss":"a\u0062c"}"#).unwrap();
        assert_eq!(c.user.as_deref(), Some("42"));
        assert_eq!(c.iss.as_deref(), Some("abc"));
    }

    #[test]
    fn colliding_configured_names_feed_every_use() {
        let n = ClaimNames {
            user: "sub".into(),
            roles: "scope".into(),
            scope: "scope".into(),
        };
        let c = n.read(br#"{"scope":"a b"}"#).unwrap();
        assert_eq!(c.roles, ["a", "b"]);
        assert_eq!(c.scope.unwrap(), ["a", "b"]);
    }
}
