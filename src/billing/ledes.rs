//! LEDES 1998B export: the pipe-delimited e-billing format corporate clients ingest, and a
//! pre-flight validator that names each problem by line item and field before export.
//!
//! Format: line 1 `LEDES1998B[]`, line 2 the 24 field names, then one row per line item;
//! fields separated by `|`, every line ending in `[]` and CRLF; ASCII only; dates `YYYYMMDD`;
//! amounts with the currency's decimals. Fees are in hours to two decimals at the hourly
//! rate; the rounding difference to the billed amount goes into LINE_ITEM_ADJUSTMENT_AMOUNT
//! so that LINE_ITEM_TOTAL = round(units × unit cost) + adjustment holds exactly.

use chrono::NaiveDate;
use serde::Serialize;

use super::money::{Currency, div_round_half_up};

pub const FIELDS: [&str; 24] = [
    "INVOICE_DATE",
    "INVOICE_NUMBER",
    "CLIENT_ID",
    "LAW_FIRM_MATTER_ID",
    "INVOICE_TOTAL",
    "BILLING_START_DATE",
    "BILLING_END_DATE",
    "INVOICE_DESCRIPTION",
    "LINE_ITEM_NUMBER",
    "EXP/FEE/INV_ADJ_TYPE",
    "LINE_ITEM_NUMBER_OF_UNITS",
    "LINE_ITEM_ADJUSTMENT_AMOUNT",
    "LINE_ITEM_TOTAL",
    "LINE_ITEM_DATE",
    "LINE_ITEM_TASK_CODE",
    "LINE_ITEM_EXPENSE_CODE",
    "LINE_ITEM_ACTIVITY_CODE",
    "TIMEKEEPER_ID",
    "LINE_ITEM_DESCRIPTION",
    "LAW_FIRM_ID",
    "LINE_ITEM_UNIT_COST",
    "TIMEKEEPER_NAME",
    "TIMEKEEPER_CLASSIFICATION",
    "CLIENT_MATTER_ID",
];

/// An invoice ready for LEDES: every amount in minor units, every text unsanitised.
#[derive(Clone, Debug)]
pub struct LedesInvoice {
    pub invoice_date: NaiveDate,
    pub invoice_number: String,
    pub client_id: String,
    pub law_firm_matter_id: String,
    /// What the invoice asks for (with tax, if any); must equal the sum of line totals.
    pub invoice_total: i64,
    pub billing_start: Option<NaiveDate>,
    pub billing_end: Option<NaiveDate>,
    pub description: String,
    pub law_firm_id: String,
    pub client_matter_id: String,
    pub currency: Currency,
    pub lines: Vec<LedesLine>,
}

/// `EXP/FEE/INV_ADJ_TYPE`: a fee, an expense, or an invoice-level adjustment of the fees
/// (`IF`) or of the expenses (`IE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineType {
    Fee,
    Expense,
    FeeAdjustment,
    ExpenseAdjustment,
}

impl LineType {
    pub fn code(self) -> &'static str {
        match self {
            LineType::Fee => "F",
            LineType::Expense => "E",
            LineType::FeeAdjustment => "IF",
            LineType::ExpenseAdjustment => "IE",
        }
    }
    fn is_adjustment(self) -> bool {
        matches!(self, LineType::FeeAdjustment | LineType::ExpenseAdjustment)
    }
}

#[derive(Clone, Debug)]
pub struct LedesLine {
    pub number: u32,
    pub kind: LineType,
    /// Hundredths of an hour for fees; hundredths of a unit (100 = 1) for expenses.
    pub units_hundredths: i64,
    pub unit_cost: i64,
    pub adjustment: i64,
    pub total: i64,
    pub date: NaiveDate,
    pub task_code: Option<String>,
    pub expense_code: Option<String>,
    pub activity_code: Option<String>,
    pub timekeeper_id: String,
    pub description: String,
    pub timekeeper_name: String,
    pub timekeeper_classification: String,
}

impl LedesLine {
    /// A fee line: minutes at an hourly rate, billed as `amount` (already rounded).
    #[allow(clippy::too_many_arguments)]
    pub fn fee(
        number: u32,
        date: NaiveDate,
        minutes: i64,
        rate_cents: i64,
        amount: i64,
        task_code: Option<String>,
        activity_code: Option<String>,
        timekeeper: (String, String, String),
        description: String,
    ) -> Self {
        let units = div_round_half_up(minutes as i128 * 100, 60).unwrap_or(0);
        let extended = div_round_half_up(units as i128 * rate_cents as i128, 100).unwrap_or(0);
        Self {
            number,
            kind: LineType::Fee,
            units_hundredths: units,
            unit_cost: rate_cents,
            adjustment: amount - extended,
            total: amount,
            date,
            task_code,
            expense_code: None,
            activity_code,
            timekeeper_id: timekeeper.0,
            description,
            timekeeper_name: timekeeper.1,
            timekeeper_classification: timekeeper.2,
        }
    }

    pub fn expense(
        number: u32,
        date: NaiveDate,
        amount: i64,
        code: Option<String>,
        description: String,
    ) -> Self {
        Self {
            number,
            kind: LineType::Expense,
            units_hundredths: 100,
            unit_cost: amount,
            adjustment: 0,
            total: amount,
            date,
            task_code: None,
            expense_code: code,
            activity_code: None,
            timekeeper_id: String::new(),
            description,
            timekeeper_name: String::new(),
            timekeeper_classification: String::new(),
        }
    }
}

impl LedesLine {
    /// An invoice-level discount (negative) or surcharge on the fees or the expenses: no units,
    /// the whole amount in LINE_ITEM_ADJUSTMENT_AMOUNT, so total = 0 × 0 + adjustment.
    pub fn invoice_adjustment(
        number: u32,
        date: NaiveDate,
        on_fees: bool,
        amount: i64,
        description: String,
    ) -> Self {
        Self {
            number,
            kind: if on_fees {
                LineType::FeeAdjustment
            } else {
                LineType::ExpenseAdjustment
            },
            units_hundredths: 0,
            unit_cost: 0,
            adjustment: amount,
            total: amount,
            date,
            task_code: None,
            expense_code: None,
            activity_code: None,
            timekeeper_id: String::new(),
            description,
            timekeeper_name: String::new(),
            timekeeper_classification: String::new(),
        }
    }
}

/// One thing that makes an export unacceptable, with where it is and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedesProblem {
    /// LINE_ITEM_NUMBER, or null for the invoice header.
    pub line: Option<u32>,
    pub field: String,
    pub message: String,
}

/// Make a value safe for a LEDES field: ASCII (transliterated), no `|`, no brackets (so no
/// `[]`), no line breaks or control characters, single spaces, at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    let ascii = deunicode::deunicode(s);
    let mut out = String::with_capacity(ascii.len());
    let mut space = false;
    for c in ascii.chars() {
        let c = match c {
            '|' => '/',
            '[' => '(',
            ']' => ')',
            c if c.is_ascii_control() || c.is_whitespace() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push(c);
    }
    let trimmed = out.trim_end();
    trimmed
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn date(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// Everything wrong with the invoice as a LEDES 1998B file (empty: ready to export).
pub fn validate(inv: &LedesInvoice) -> Vec<LedesProblem> {
    let mut out = Vec::new();
    let mut push = |line: Option<u32>, field: &str, message: String| {
        out.push(LedesProblem {
            line,
            field: field.into(),
            message,
        })
    };
    for (field, value, max) in [
        ("INVOICE_NUMBER", &inv.invoice_number, 20),
        ("CLIENT_ID", &inv.client_id, 20),
        ("LAW_FIRM_MATTER_ID", &inv.law_firm_matter_id, 20),
        ("LAW_FIRM_ID", &inv.law_firm_id, 20),
    ] {
        if value.trim().is_empty() {
            push(None, field, format!("{field} is required and empty"));
        } else if value.chars().count() > max {
            push(
                None,
                field,
                format!("{field} is longer than {max} characters"),
            );
        }
    }
    if inv.lines.is_empty() {
        push(
            None,
            "LINE_ITEM_NUMBER",
            "the invoice has no line items".into(),
        );
    }
    let sum: i128 = inv.lines.iter().map(|l| l.total as i128).sum();
    if sum != inv.invoice_total as i128 {
        push(
            None,
            "INVOICE_TOTAL",
            format!(
                "INVOICE_TOTAL {} is not the sum of the LINE_ITEM_TOTALs {} (LEDES 1998B has no tax field; invoices with tax need LEDES 1998BI)",
                inv.currency.format(inv.invoice_total),
                inv.currency.format(sum as i64)
            ),
        );
    }
    for l in &inv.lines {
        let n = Some(l.number);
        let extended = div_round_half_up(l.units_hundredths as i128 * l.unit_cost as i128, 100)
            .unwrap_or(i64::MIN);
        if extended.checked_add(l.adjustment) != Some(l.total) {
            push(
                n,
                "LINE_ITEM_TOTAL",
                format!(
                    "LINE_ITEM_TOTAL {} is not units {} x unit cost {} + adjustment {}",
                    inv.currency.format(l.total),
                    super::money::format_minor(l.units_hundredths, 2),
                    inv.currency.format(l.unit_cost),
                    inv.currency.format(l.adjustment)
                ),
            );
        }
        if l.units_hundredths <= 0 && !l.kind.is_adjustment() {
            push(
                n,
                "LINE_ITEM_NUMBER_OF_UNITS",
                "the number of units must be positive".into(),
            );
        }
        if clean(&l.description, 15_000).is_empty() {
            push(
                n,
                "LINE_ITEM_DESCRIPTION",
                "the line has no description".into(),
            );
        }
        if l.kind == LineType::Fee {
            if l.task_code.is_none() {
                push(
                    n,
                    "LINE_ITEM_TASK_CODE",
                    "fee line has no UTBMS task code (e.g. L110)".into(),
                );
            }
            if l.activity_code.is_none() {
                push(
                    n,
                    "LINE_ITEM_ACTIVITY_CODE",
                    "fee line has no UTBMS activity code (e.g. A101)".into(),
                );
            }
            if l.timekeeper_id.is_empty() || l.timekeeper_name.is_empty() {
                push(n, "TIMEKEEPER_NAME", "fee line has no timekeeper".into());
            }
            if l.timekeeper_classification.is_empty() {
                push(
                    n,
                    "TIMEKEEPER_CLASSIFICATION",
                    "fee line has no timekeeper classification".into(),
                );
            }
        } else if l.kind == LineType::Expense && l.expense_code.is_none() {
            push(
                n,
                "LINE_ITEM_EXPENSE_CODE",
                "expense line has no UTBMS expense code (e.g. E101)".into(),
            );
        }
    }
    out
}

/// The file text. Call [`validate`] first: this renders whatever it is given.
pub fn render(inv: &LedesInvoice) -> String {
    let money = |v: i64| inv.currency.format(v);
    let mut out = String::from("LEDES1998B[]\r\n");
    out.push_str(&FIELDS.join("|"));
    out.push_str("[]\r\n");
    let opt_date = |d: Option<NaiveDate>| d.map(date).unwrap_or_default();
    for l in &inv.lines {
        let fields: [String; 24] = [
            date(inv.invoice_date),
            clean(&inv.invoice_number, 20),
            clean(&inv.client_id, 20),
            clean(&inv.law_firm_matter_id, 20),
            money(inv.invoice_total),
            opt_date(inv.billing_start),
            opt_date(inv.billing_end),
            clean(&inv.description, 2000),
            l.number.to_string(),
            l.kind.code().into(),
            super::money::format_minor(l.units_hundredths, 2),
            money(l.adjustment),
            money(l.total),
            date(l.date),
            clean(l.task_code.as_deref().unwrap_or(""), 20),
            clean(l.expense_code.as_deref().unwrap_or(""), 20),
            clean(l.activity_code.as_deref().unwrap_or(""), 20),
            clean(&l.timekeeper_id, 20),
            clean(&l.description, 15_000),
            clean(&inv.law_firm_id, 20),
            money(l.unit_cost),
            clean(&l.timekeeper_name, 30),
            clean(&l.timekeeper_classification, 10),
            clean(&inv.client_matter_id, 20),
        ];
        out.push_str(&fields.join("|"));
        out.push_str("[]\r\n");
    }
    out
}

/// `Smith, John` from `John Smith` (LEDES wants surname first).
pub fn surname_first(name: &str) -> String {
    let name = name.trim();
    match name.rsplit_once(' ') {
        Some((first, last)) => format!("{last}, {first}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn sample() -> LedesInvoice {
        LedesInvoice {
            invoice_date: d(25),
            invoice_number: "INV-2026-0001".into(),
            client_id: "C1".into(),
            law_firm_matter_id: "2026-0001".into(),
            invoice_total: 1440 + 2500,
            billing_start: Some(d(2)),
            billing_end: Some(d(3)),
            description: "Legal services: Müller | Sons [draft]".into(),
            law_firm_id: "Law Firm Pro".into(),
            client_matter_id: String::new(),
            currency: Currency::USD,
            lines: vec![
                LedesLine::fee(
                    1,
                    d(2),
                    7,
                    12345,
                    1440,
                    Some("L110".into()),
                    Some("A101".into()),
                    ("TK1".into(), "Smith, Jane".into(), "AS".into()),
                    "Call with client".into(),
                ),
                LedesLine::expense(2, d(3), 2500, Some("E101".into()), "Copies".into()),
            ],
        }
    }

    #[test]
    fn renders_exactly() {
        let text = render(&sample());
        let expected = "LEDES1998B[]\r\n\
INVOICE_DATE|INVOICE_NUMBER|CLIENT_ID|LAW_FIRM_MATTER_ID|INVOICE_TOTAL|BILLING_START_DATE|BILLING_END_DATE|INVOICE_DESCRIPTION|LINE_ITEM_NUMBER|EXP/FEE/INV_ADJ_TYPE|LINE_ITEM_NUMBER_OF_UNITS|LINE_ITEM_ADJUSTMENT_AMOUNT|LINE_ITEM_TOTAL|LINE_ITEM_DATE|LINE_ITEM_TASK_CODE|LINE_ITEM_EXPENSE_CODE|LINE_ITEM_ACTIVITY_CODE|TIMEKEEPER_ID|LINE_ITEM_DESCRIPTION|LAW_FIRM_ID|LINE_ITEM_UNIT_COST|TIMEKEEPER_NAME|TIMEKEEPER_CLASSIFICATION|CLIENT_MATTER_ID[]\r\n\
20261125|INV-2026-0001|C1|2026-0001|39.40|20261102|20261103|Legal services: Muller / Sons (draft)|1|F|0.12|-0.41|14.40|20261102|L110||A101|TK1|Call with client|Law Firm Pro|123.45|Smith, Jane|AS|[]\r\n\
20261125|INV-2026-0001|C1|2026-0001|39.40|20261102|20261103|Legal services: Muller / Sons (draft)|2|E|1.00|0.00|25.00|20261103||E101|||Copies|Law Firm Pro|25.00|||[]\r\n";
        assert_eq!(text, expected);
        assert!(validate(&sample()).is_empty(), "{:?}", validate(&sample()));
    }

    #[test]
    fn invoice_adjustments_are_if_and_ie_lines() {
        let mut inv = sample();
        inv.lines.push(LedesLine::invoice_adjustment(
            3,
            d(25),
            true,
            -144,
            "Courtesy discount 10%".into(),
        ));
        inv.invoice_total -= 144;
        assert!(validate(&inv).is_empty(), "{:?}", validate(&inv));
        let text = render(&inv);
        let last = text.lines().last().unwrap();
        let f: Vec<&str> = last.trim_end_matches("[]").split('|').collect();
        assert_eq!(f.len(), 24);
        assert_eq!(f[4], "37.96");
        assert_eq!(
            (f[8], f[9], f[10], f[11], f[12]),
            ("3", "IF", "0.00", "-1.44", "-1.44")
        );
        assert_eq!(f[18], "Courtesy discount 10%");
        assert_eq!(f[20], "0.00");
        // An adjustment whose total does not match is still caught.
        inv.lines[2].total = -100;
        assert!(
            validate(&inv)
                .iter()
                .any(|p| p.line == Some(3) && p.field == "LINE_ITEM_TOTAL")
        );
    }

    #[test]
    fn validator_explains() {
        let mut inv = sample();
        inv.lines[0].task_code = None;
        inv.lines[1].expense_code = None;
        inv.lines[1].total = 2600;
        inv.client_id = String::new();
        let problems = validate(&inv);
        let fields: Vec<(Option<u32>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert!(fields.contains(&(None, "CLIENT_ID")), "{problems:?}");
        assert!(fields.contains(&(None, "INVOICE_TOTAL")));
        assert!(fields.contains(&(Some(1), "LINE_ITEM_TASK_CODE")));
        assert!(fields.contains(&(Some(2), "LINE_ITEM_EXPENSE_CODE")));
        assert!(fields.contains(&(Some(2), "LINE_ITEM_TOTAL")));
    }

    #[test]
    fn names() {
        assert_eq!(surname_first("Jane Q Smith"), "Smith, Jane Q");
        assert_eq!(surname_first("Cher"), "Cher");
    }

    proptest! {
        #[test]
        fn clean_is_always_safe(s in any::<String>(), max in 0usize..50) {
            let c = clean(&s, max);
            prop_assert!(c.is_ascii());
            prop_assert!(!c.contains('|') && !c.contains('[') && !c.contains(']'));
            prop_assert!(!c.chars().any(|ch| ch.is_ascii_control()));
            prop_assert!(c.chars().count() <= max);
        }

        #[test]
        fn fee_lines_always_balance(minutes in 1i64..1440, rate in 0i64..10_000_000) {
            let amount = super::super::money::fee_cents(minutes, rate).unwrap();
            let l = LedesLine::fee(1, d(1), minutes, rate, amount, None, None,
                (String::new(), String::new(), String::new()), "x".into());
            let ext = div_round_half_up(l.units_hundredths as i128 * l.unit_cost as i128, 100).unwrap();
            prop_assert_eq!(ext + l.adjustment, l.total);
        }
    }
}
