//! Exact amounts in `meterd.toml`: prices, tier bounds, notification thresholds.
//!
//! TOML has no decimal type: `price = 0.01` is a binary floating-point number, which cannot
//! hold 0.01 exactly. meterd takes amounts as strings (`price = "0.01"`), parsed straight into
//! an exact [`Decimal`]; an integer (`up_to = 1000`) is exact too and is accepted as written.
//! A floating-point value is refused with a message that shows the quoted form, rather than
//! serde's "invalid type: floating point, expected a string" (which named the type but not the
//! fix). The TOML parser adds the file, line and column to the message.

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::str::FromStr;

/// Deserialises one amount as its text: a string as written, an integer as its digits; a
/// float is an error that says how to write it.
struct Text;

/// The refusal of a TOML float. The text the user wrote is gone by now (the parser made an
/// `f64` of it), so the quoted form is suggested only when the float's shortest form is surely
/// what was written: at most 15 significant digits, which every decimal of 15 digits survives.
fn float_refused<E: de::Error>(v: f64) -> E {
    let why = "is a floating-point number, which cannot hold an amount exactly";
    if !v.is_finite() {
        return E::custom(format!("{v} is not an amount: write a decimal number as a string, e.g. \"0.01\""));
    }
    let shown = format!("{v:?}"); // `1.0`, `0.01`, `1e-7`: the float as TOML shows it
    let digits: String = shown.chars().filter(char::is_ascii_digit).collect();
    if digits.trim_start_matches('0').len() <= 15 && !shown.contains('e') {
        E::custom(format!("{shown} {why}: write it as a string, e.g. \"{shown}\""))
    } else {
        E::custom(format!("{shown} {why}: write the digits you meant as a string, e.g. \"0.01\""))
    }
}

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an exact amount written as a string, e.g. \"0.01\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(float_refused(v))
    }
}

fn parse<E: de::Error>(text: &str) -> Result<Decimal, E> {
    Decimal::from_str(text.trim())
        .map_err(|_| E::custom(format!("{text:?} is not a decimal number (write amounts as strings, e.g. \"0.01\")")))
}

/// `#[serde(deserialize_with = "exact::decimal")]`: one exact amount.
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = d.deserialize_any(Text)?;
    parse(&text)
}

/// `#[serde(default, deserialize_with = "exact::decimal_option")]`: an optional exact amount.
pub fn decimal_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    decimal(d).map(Some)
}

/// A list of amounts kept as text (validated by the caller, which names the key): strings and
/// integers are taken as written, floats refused as in [`decimal`].
pub fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of exact amounts written as strings, e.g. [\"0.8\", \"1\"]")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<Item>()? {
                out.push(t.0);
            }
            Ok(out)
        }
    }
    struct Item(String);
    impl<'de> serde::Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
            d.deserialize_any(Text).map(Item)
        }
    }
    d.deserialize_seq(List)
}

/// As [`texts`], for a list that may be absent.
pub fn texts_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    texts(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "decimal_option")]
        price: Option<Decimal>,
        #[serde(default, deserialize_with = "texts")]
        list: Vec<String>,
    }

    fn parse_toml(s: &str) -> Result<T, String> {
        toml::from_str::<T>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn strings_and_integers_are_exact_amounts() {
        let t = parse_toml("price = \"0.0100\"\nlist = [\"0.8\", 1]").unwrap();
        assert_eq!(t.price, Some(Decimal::from_str("0.0100").unwrap()));
        assert_eq!(t.list, vec!["0.8".to_string(), "1".to_string()]);
        assert_eq!(parse_toml("price = 3").unwrap().price, Some(Decimal::from(3)));
        assert_eq!(parse_toml("").unwrap().price, None);
    }

    #[test]
    fn a_float_is_refused_with_the_quoted_form() {
        for (toml, shown) in [("price = 0.01", "\"0.01\""), ("list = [\"1\", 0.8]", "\"0.8\"")] {
            let e = parse_toml(toml).unwrap_err();
            assert!(e.contains("floating-point") && e.contains(shown), "{toml}: {e}");
        }
        let long = parse_toml("price = 0.1234567890123456789").unwrap_err();
        assert!(long.contains("the digits you meant") && !long.contains("e.g. \"0.12345678901234568\""), "{long}");
        let inf = parse_toml("price = inf").unwrap_err();
        assert!(inf.contains("inf is not an amount"), "{inf}");
        let one = parse_toml("price = 1.0").unwrap_err();
        assert!(one.contains("1.0 is a floating-point number") && one.contains("\"1.0\""), "{one}");
        let e = parse_toml("price = \"1,5\"").unwrap_err();
        assert!(e.contains("not a decimal number"), "{e}");
    }
}
