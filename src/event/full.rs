//! The full JSON parse: serde_json with hand-written visitors, so that each
//! bad field gets its own [`InvalidReason`] (a derived struct would only say
//! "invalid type"). Lines the fast path ([`super::fast`]) declines come here.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::raw::{AttrBuilder, AttrList, AttrOverflow, RawEvent, Scalar};
use super::{Invalid, InvalidReason};

/// The full JSON parse (serde_json and the visitors below), the attributes
/// into `attrs` (cleared first).
pub(super) fn parse_full<'a>(
    bytes: &'a [u8],
    attrs: &mut AttrList<'a>,
) -> Result<RawEvent<'a>, Invalid> {
    attrs.clear();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = match de.deserialize_any(TopVisitor { attrs }) {
        Ok(p) => p,
        Err(e) => return Err(classify_json_error(&e)),
    };
    if let Err(e) = de.end() {
        return Err(classify_json_error(&e));
    }
    match parsed {
        Top::Object(raw) => Ok(raw),
        Top::Other(what) => Err(Invalid::new(
            InvalidReason::NotObject,
            format!("top-level value is {what}, not an object"),
        )),
    }
}

fn classify_json_error(e: &serde_json::Error) -> Invalid {
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        Invalid::new(InvalidReason::NonFiniteNumber, msg)
    } else if let Some(rest) = msg.strip_prefix(FIELD_ERR_PREFIX) {
        // Errors raised by our own visitor carry their reason in the message.
        let (reason, detail) = rest.split_once('|').unwrap_or(("wrong_type", rest));
        let reason = InvalidReason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == reason)
            .unwrap_or(InvalidReason::WrongType);
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        Invalid::new(reason, detail.to_string())
    } else {
        Invalid::new(InvalidReason::NotJson, msg)
    }
}

const FIELD_ERR_PREFIX: &str = "crisiswatch-field:";

fn field_err<E: de::Error>(reason: InvalidReason, detail: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{FIELD_ERR_PREFIX}{}|{detail}",
        reason.as_str()
    ))
}

// === impl TopVisitor ===

// A stack temporary returned once per decode: boxing the large variant would
// cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    Object(RawEvent<'a>),
    Other(&'static str),
}

/// The top-level object; its attributes go into `attrs`.
struct TopVisitor<'s, 'de> {
    attrs: &'s mut AttrList<'de>,
}

impl<'de> Visitor<'de> for TopVisitor<'_, 'de> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            match key.as_ref() {
                "id" => raw.id = Some(map.next_value::<ScalarSeed>()?.0),
                "type" => raw.kind = Some(map.next_value::<ScalarSeed>()?.0),
                "ts" => raw.ts = Some(map.next_value::<ScalarSeed>()?.0),
                "customer_id" => raw.customer_id = Some(map.next_value::<ScalarSeed>()?.0),
                "ref_id" => raw.ref_id = Some(map.next_value::<ScalarSeed>()?.0),
                "score" => raw.score = Some(map.next_value::<ScalarSeed>()?.0),
                "sentiment" => raw.sentiment = Some(map.next_value::<ScalarSeed>()?.0),
                "attrs" => map.next_value_seed(AttrsSeed {
                    list: &mut *self.attrs,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object(raw))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other("an array"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::Other("a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::Other("null"))
    }
}

/// A map key that borrows from the input when it has no escapes (serde's own
/// `Cow<str>` always allocates).
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct ScalarSeed<'a>(Scalar<'a>);

impl<'de> de::Deserialize<'de> for ScalarSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(ScalarSeed)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound("an object"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound("an array"))
    }
}

/// The `attrs` value, into `list` (in place: the list is large; a repeated
/// `attrs` replaces the earlier one).
struct AttrsSeed<'s, 'a> {
    list: &'s mut AttrList<'a>,
}

impl<'de> DeserializeSeed<'de> for AttrsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.list.clear();
        d.deserialize_any(AttrsVisitor { list: self.list })
    }
}

struct AttrsVisitor<'s, 'a> {
    list: &'s mut AttrList<'a>,
}

impl<'de> Visitor<'de> for AttrsVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string values")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = AttrBuilder::new(self.list);
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            match map.next_value::<ScalarSeed>()?.0 {
                Scalar::Str(v) => match out.insert(key, v) {
                    Ok(()) => {}
                    Err(AttrOverflow::Count) => {
                        return Err(field_err(
                            InvalidReason::Oversized,
                            format_args!(
                                "attrs has more than {} attributes",
                                super::MAX_ATTRIBUTES
                            ),
                        ))
                    }
                    Err(AttrOverflow::Bytes) => {
                        return Err(field_err(
                            InvalidReason::Oversized,
                            format_args!(
                                "attrs take more than {} bytes",
                                super::MAX_ATTRIBUTE_BYTES
                            ),
                        ))
                    }
                },
                Scalar::Null => {}
                other => {
                    return Err(field_err(
                        InvalidReason::WrongType,
                        format_args!("attrs.{key} is {}, expected a string", other.type_name()),
                    ))
                }
            }
        }
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(wrong_attrs("a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(wrong_attrs("a boolean"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(wrong_attrs("an array"))
    }
}

fn wrong_attrs<E: de::Error>(what: &str) -> E {
    field_err(
        InvalidReason::WrongType,
        format_args!("attrs is {what}, expected an object"),
    )
}
