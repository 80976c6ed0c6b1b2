//! Exact decimal quantities. Parsing accepts exactly the forms design §2 allows: plain decimal
//! digits with an optional fraction of at most 9 digits; no sign, exponent, NaN or infinity.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// The largest quantity one event may carry (design §2).
pub const MAX_EVENT_QUANTITY: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1e12

/// The largest `usage_value` the store's field holds: 99999999.9999.
pub const MAX_RECORD_VALUE: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 4);

/// An exact non-negative decimal amount of usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(pub Decimal);

/// Why a quantity was refused; each message says what a valid quantity looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty; send a decimal such as \"12.5\"")]
    Empty,
    #[error("quantity {0:?} has a sign; quantities are non-negative decimals without '+' or '-'")]
    Signed(String),
    #[error("quantity {0:?} uses an exponent; write it as plain decimal digits such as \"1000\"")]
    Exponent(String),
    #[error("quantity {0:?} is not a decimal number; send digits with an optional '.' fraction")]
    NotDecimal(String),
    #[error("quantity {0:?} has more than 9 fractional digits; round it to at most 9")]
    TooPrecise(String),
    #[error("quantity {0:?} is larger than 1e12, the most one event may carry; split it")]
    TooLarge(String),
}

impl Quantity {
    pub const ZERO: Quantity = Quantity(Decimal::ZERO);

    /// Parses the text of a JSON number or string as an event quantity.
    pub fn parse_event(text: &str) -> Result<Quantity, QuantityError> {
        let shown = || shorten(text);
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        if text.starts_with('+') || text.starts_with('-') {
            return Err(QuantityError::Signed(shown()));
        }
        if text.bytes().any(|b| b == b'e' || b == b'E') && text.bytes().all(|b| b.is_ascii_digit() || b"eE+-.".contains(&b)) {
            return Err(QuantityError::Exponent(shown()));
        }
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(QuantityError::NotDecimal(shown()));
        }
        if frac.is_some_and(|f| f.len() > 9) {
            return Err(QuantityError::TooPrecise(shown()));
        }
        let int_trimmed = int.trim_start_matches('0');
        if int_trimmed.len() > 13 {
            return Err(QuantityError::TooLarge(shown()));
        }
        let value = Decimal::from_str(text).map_err(|_| QuantityError::NotDecimal(shown()))?;
        if value > MAX_EVENT_QUANTITY {
            return Err(QuantityError::TooLarge(shown()));
        }
        Ok(Quantity(value.normalize()))
    }

    /// Parses a stored quantity (written by `Quantity::to_string`, its `Display`); trusted input.
    pub fn parse_stored(text: &str) -> Option<Quantity> {
        Decimal::from_str(text).ok().map(Quantity)
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Exact sum; `None` only if the sum leaves the 96-bit mantissa (far beyond any real usage).
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_add(other.0).map(Quantity)
    }

    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_sub(other.0).map(Quantity)
    }

    /// Splits into (value rounded down to 4 decimals, remainder < 0.0001).
    pub fn floor_4dp(self) -> (Quantity, Quantity) {
        let floored = self.0.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::ToZero);
        (Quantity(floored), Quantity(self.0 - floored))
    }
}

impl Quantity {
    /// Appends exactly what `Display` writes, without the formatting machinery (the ingest
    /// writer stores one per event). Measured hot-path code, kept hand-written rather than
    /// `Decimal`'s `Display`: figure 1 of `cargo bench --bench pipeline` (library ingest) pays
    /// it once per event; `write_plain_matches_display` pins it to `Display`.
    pub fn write_plain(&self, out: &mut String) {
        let d = self.0.normalize();
        let Ok(m) = u64::try_from(d.mantissa()) else {
            use fmt::Write;
            let _ = write!(out, "{d}");
            return;
        };
        let scale = d.scale() as usize;
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut rest = m;
        loop {
            i -= 1;
            buf[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let digits = &buf[i..];
        fn text(b: &[u8]) -> &str {
            std::str::from_utf8(b).expect("ASCII digits")
        }
        if scale == 0 {
            out.push_str(text(digits));
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.push_str(text(int));
            out.push('.');
            out.push_str(text(frac));
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(text(digits));
        }
    }
}

/// Parses an event quantity as the JSON door does ([`Quantity::parse_event`]): plain decimal
/// digits, at most 9 fractional digits, at most 1e12; the error says what to send instead.
impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse_event(s)
    }
}

/// An event quantity from an exact decimal built in code: refused when negative, with more
/// than 9 fractional digits (after dropping trailing zeros) or above 1e12 — the rules of
/// [`Quantity::parse_event`], with the same errors.
impl TryFrom<Decimal> for Quantity {
    type Error = QuantityError;
    fn try_from(d: Decimal) -> Result<Quantity, QuantityError> {
        let d = d.normalize();
        if d.is_sign_negative() && !d.is_zero() {
            return Err(QuantityError::Signed(d.to_string()));
        }
        if d.scale() > 9 {
            return Err(QuantityError::TooPrecise(shorten(&d.to_string())));
        }
        if d > MAX_EVENT_QUANTITY {
            return Err(QuantityError::TooLarge(shorten(&d.to_string())));
        }
        Ok(Quantity(d.abs()))
    }
}

impl fmt::Display for Quantity {
    /// Plain decimal digits, no exponent, no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

/// The first 40 bytes of `text` (on a character boundary) with an ellipsis, for messages that
/// quote user input.
pub fn shorten(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        let mut end = 40;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_str_and_try_from_decimal_follow_the_event_rules() {
        assert_eq!("12.50".parse::<Quantity>().unwrap().to_string(), "12.5");
        assert!(matches!("-1".parse::<Quantity>(), Err(QuantityError::Signed(_))));
        assert!(matches!("1e3".parse::<Quantity>(), Err(QuantityError::Exponent(_))));
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(Quantity::try_from(d("3.100")).unwrap().to_string(), "3.1");
        assert_eq!(Quantity::try_from(d("-0")).unwrap(), Quantity::ZERO);
        assert_eq!(Quantity::try_from(d("0.123456789000")).unwrap().to_string(), "0.123456789");
        assert!(matches!(Quantity::try_from(d("-2")), Err(QuantityError::Signed(_))));
        assert!(matches!(Quantity::try_from(d("0.1234567891")), Err(QuantityError::TooPrecise(_))));
        assert!(matches!(Quantity::try_from(d("1000000000000.5")), Err(QuantityError::TooLarge(_))));
        assert_eq!(Quantity::try_from(MAX_EVENT_QUANTITY).unwrap().0, MAX_EVENT_QUANTITY);
        let e = Quantity::try_from(d("-2")).unwrap_err().to_string();
        assert!(e.contains("non-negative"), "{e}");
    }

    fn plain(q: Quantity) -> String {
        let mut s = String::new();
        q.write_plain(&mut s);
        s
    }

    #[test]
    fn write_plain_is_display() {
        for t in ["0", "0.000000001", "999999999999.999999999", "1000000000000", "12.5", "007", "0.1", "10", "1.000", "0.0100"] {
            let q = Quantity::parse_event(t).unwrap();
            assert_eq!(plain(q), q.to_string(), "{t}");
        }
        // Not normalised, scaled, and past u64 (the fallback).
        for d in [Decimal::new(1500, 3), Decimal::new(0, 5), Decimal::from_i128_with_scale(99_999_999_999_999_999_999_999, 9)] {
            assert_eq!(plain(Quantity(d)), Quantity(d).to_string(), "{d}");
        }
    }

    proptest::proptest! {
        #[test]
        fn write_plain_matches_display(m in 0u64..u64::MAX, scale in 0u32..=18) {
            let q = Quantity(Decimal::from_i128_with_scale(m as i128, scale));
            proptest::prop_assert_eq!(plain(q), q.to_string());
        }
    }

    #[test]
    fn accepts_exact_extremes() {
        for s in ["0", "0.000000001", "999999999999.999999999", "1000000000000", "12.5", "007"] {
            let q = Quantity::parse_event(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(q.0, Decimal::from_str(s).unwrap());
        }
        assert_eq!(Quantity::parse_event("999999999999.999999999").unwrap().to_string(), "999999999999.999999999");
    }

    /// A text and the check its error must pass.
    type BadForm = (&'static str, fn(&QuantityError) -> bool);

    #[test]
    fn refuses_each_bad_form() {
        let cases: &[BadForm] = &[
            ("", |e| matches!(e, QuantityError::Empty)),
            ("-1", |e| matches!(e, QuantityError::Signed(_))),
            ("+1", |e| matches!(e, QuantityError::Signed(_))),
            ("1e3", |e| matches!(e, QuantityError::Exponent(_))),
            ("1E-3", |e| matches!(e, QuantityError::Exponent(_))),
            ("NaN", |e| matches!(e, QuantityError::NotDecimal(_))),
            ("inf", |e| matches!(e, QuantityError::NotDecimal(_))),
            ("1.", |e| matches!(e, QuantityError::NotDecimal(_))),
            (".5", |e| matches!(e, QuantityError::NotDecimal(_))),
            ("1.0000000001", |e| matches!(e, QuantityError::TooPrecise(_))),
            ("1000000000000.000000001", |e| matches!(e, QuantityError::TooLarge(_))),
            ("99999999999999999999999999999999", |e| matches!(e, QuantityError::TooLarge(_))),
        ];
        for (text, ok) in cases {
            let err = Quantity::parse_event(text).unwrap_err();
            assert!(ok(&err), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn floor_keeps_remainder() {
        let q = Quantity::parse_event("1.234567891").unwrap();
        let (v, r) = q.floor_4dp();
        assert_eq!(v.to_string(), "1.2345");
        assert_eq!(r.to_string(), "0.000067891");
        assert_eq!(v.checked_add(r).unwrap(), q);
    }

    #[test]
    fn constants_are_what_they_say() {
        assert_eq!(MAX_EVENT_QUANTITY, Decimal::from_str("1000000000000").unwrap());
        assert_eq!(MAX_RECORD_VALUE, Decimal::from_str("99999999.9999").unwrap());
    }
}
