//! Money: integer minor units plus an ISO 4217 currency. No floating point anywhere; every
//! rounding rule of the firm (fee lines, tax) is a function here with tests beside it.

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency the firm can bill in, with its number of minor-unit digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Currencies we accept, with their minor-unit digits (ISO 4217 table).
const KNOWN: &[(&str, u8)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("NZD", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("HUF", 2),
    ("ZAR", 2),
    ("SGD", 2),
    ("HKD", 2),
    ("INR", 2),
    ("MXN", 2),
    ("BRL", 2),
    ("CNY", 2),
    ("ILS", 2),
    ("AED", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("BHD", 3),
];

impl Currency {
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Upper-case ISO 4217 code of a currency we know (`usd` from processors is accepted).
    pub fn parse(s: &str) -> Result<Self, String> {
        let up = s.trim().to_ascii_uppercase();
        KNOWN
            .iter()
            .find(|(c, _)| *c == up)
            .map(|(c, e)| Currency {
                code: c.as_bytes().try_into().expect("three letters"),
                exponent: *e,
            })
            .ok_or_else(|| "is not a supported ISO 4217 currency code".to_string())
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("ASCII code")
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// `12345` → `"123.45"` in this currency's minor units.
    pub fn format(&self, minor: i64) -> String {
        format_minor(minor, self.exponent)
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount_cents: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_cents: i64, currency: Currency) -> Self {
        Self {
            amount_cents,
            currency,
        }
    }
    /// Human form for documents and mail: `USD 1,234.50`.
    pub fn display(&self) -> String {
        format!(
            "{} {}",
            self.currency,
            group_thousands(&self.currency.format(self.amount_cents))
        )
    }
}

/// `n / d` rounded half up (away from zero at .5 for non-negative values), exactly.
/// `None` when `d <= 0` or the result does not fit an `i64`.
pub fn div_round_half_up(n: i128, d: i128) -> Option<i64> {
    if d <= 0 {
        return None;
    }
    let q = if n >= 0 {
        (2 * n + d) / (2 * d)
    } else {
        // Symmetric: -2.5 → -3, so a negative line rounds like its positive counterpart.
        -((2 * -n + d) / (2 * d))
    };
    i64::try_from(q).ok()
}

/// A fee line: `round_half_up(minutes × rate_cents / 60)`.
pub fn fee_cents(minutes: i64, rate_cents: i64) -> Option<i64> {
    div_round_half_up(minutes as i128 * rate_cents as i128, 60)
}

/// `amount × bps / 10000`, rounded half up (tax, discounts in basis points).
pub fn apply_bps(amount: i64, bps: u32) -> Option<i64> {
    div_round_half_up(amount as i128 * bps as i128, 10_000)
}

/// `-4100, 2` → `"-41.00"`; `5, 0` → `"5"`.
pub fn format_minor(minor: i64, exponent: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(exponent as u32);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fee_rounding() {
        // 7 min × $123.45/h = 1440.25 cents → 1440.
        assert_eq!(fee_cents(7, 12345), Some(1440));
        // 1 min × 30 cents/h = 0.5 cents → 1 (half up).
        assert_eq!(fee_cents(1, 30), Some(1));
        assert_eq!(fee_cents(1, 29), Some(0));
        assert_eq!(fee_cents(60, 20000), Some(20000));
        assert_eq!(fee_cents(0, 20000), Some(0));
    }

    #[test]
    fn tax_and_formatting() {
        assert_eq!(apply_bps(1000, 825), Some(83)); // 82.5 → 83
        assert_eq!(apply_bps(1000, 0), Some(0));
        assert_eq!(format_minor(1440, 2), "14.40");
        assert_eq!(format_minor(-41, 2), "-0.41");
        assert_eq!(format_minor(5, 0), "5");
        assert_eq!(format_minor(1234, 3), "1.234");
        assert_eq!(
            Money::new(123456789, Currency::USD).display(),
            "USD 1,234,567.89"
        );
        assert_eq!(div_round_half_up(-5, 2), Some(-3));
        assert_eq!(div_round_half_up(1, 0), None);
    }

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("usd"), Ok(Currency::USD));
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("US").is_err());
        assert_eq!(Currency::parse("EUR").unwrap().format(199), "1.99");
    }

    proptest! {
        /// Exactly the rational rule: |result − n/d| ≤ 1/2, and ties go up.
        #[test]
        fn rounding_is_exact(minutes in 0i64..100_000, rate in 0i64..10_000_000) {
            let got = fee_cents(minutes, rate).unwrap() as i128;
            let n = minutes as i128 * rate as i128;
            let diff2 = 2 * (got * 60 - n); // 2·60·(got − n/60)
            prop_assert!(diff2 > -60 && diff2 <= 60, "{} {}", got, n);
        }

        #[test]
        fn format_round_trips(minor in any::<i64>()) {
            let s = format_minor(minor, 2);
            let back: i128 = s.replace('.', "").parse().unwrap();
            prop_assert_eq!(back, minor as i128);
        }
    }
}
