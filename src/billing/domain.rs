//! The vocabulary of billing as types that only hold valid values.

use crate::text_enum;

text_enum!(
    /// Stored status. `overdue` is never stored: it is `sent`/`partially_paid` past `due_on`.
    InvoiceStatus {
        Draft => "draft",
        Sent => "sent",
        PartiallyPaid => "partially_paid",
        Paid => "paid",
        Overdue => "overdue",
        Void => "void",
    }
);

text_enum!(PaymentMethod {
    Check => "check",
    Wire => "wire",
    Card => "card",
    Cash => "cash",
    Trust => "trust",
});

text_enum!(LineKind {
    Fee => "fee",
    Expense => "expense",
});

text_enum!(TrustKind {
    Deposit => "deposit",
    Transfer => "transfer",
    Refund => "refund",
});

text_enum!(
    /// Which lines an invoice adjustment applies to (LEDES `IF` / `IE`).
    AdjustmentTarget {
        Fees => "fees",
        Expenses => "expenses",
    }
);

text_enum!(AdjustmentKind {
    Discount => "discount",
    Surcharge => "surcharge",
});

impl InvoiceStatus {
    /// Open for payment: sent and not yet settled.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Sent | InvoiceStatus::PartiallyPaid | InvoiceStatus::Overdue
        )
    }
}

/// Which kind of UTBMS code a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// Task codes, e.g. `L110` (litigation), `B110` (bankruptcy), `P100`.
    Task,
    /// Activity codes `A101`–`A199`.
    Activity,
    /// Expense codes `E101`–`E199`.
    Expense,
}

/// A UTBMS code, checked by shape: task `[A-Z]\d{3}`, activity `A\d{3}`, expense `E\d{3}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UtbmsCode(String);

impl UtbmsCode {
    pub fn parse(kind: CodeKind, raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_ascii_uppercase();
        let b = s.as_bytes();
        let shape = b.len() == 4 && b[1..].iter().all(u8::is_ascii_digit);
        let ok = shape
            && match kind {
                CodeKind::Task => b[0].is_ascii_uppercase(),
                CodeKind::Activity => b[0] == b'A',
                CodeKind::Expense => b[0] == b'E',
            };
        if ok {
            Ok(Self(s))
        } else {
            Err(match kind {
                CodeKind::Task => "must be a UTBMS task code like L110",
                CodeKind::Activity => "must be a UTBMS activity code like A101",
                CodeKind::Expense => "must be a UTBMS expense code like E101",
            }
            .into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// `INV-2026-0001`: the firm's invoice number, gapless per year.
pub fn invoice_number(year: i32, seq: i32) -> String {
    format!("INV-{year}-{seq:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(UtbmsCode::parse(CodeKind::Task, "L110").is_ok());
        assert_eq!(
            UtbmsCode::parse(CodeKind::Task, "l120").unwrap().as_str(),
            "L120"
        );
        assert!(UtbmsCode::parse(CodeKind::Task, "L11").is_err());
        assert!(UtbmsCode::parse(CodeKind::Task, "1110").is_err());
        assert!(UtbmsCode::parse(CodeKind::Activity, "A101").is_ok());
        assert!(UtbmsCode::parse(CodeKind::Activity, "L101").is_err());
        assert!(UtbmsCode::parse(CodeKind::Expense, "E101").is_ok());
        assert!(UtbmsCode::parse(CodeKind::Expense, "E1O1").is_err());
        assert!(UtbmsCode::parse(CodeKind::Expense, "É101").is_err());
        assert_eq!(invoice_number(2026, 1), "INV-2026-0001");
    }
}
