//! The vocabulary of a case, as types that only hold valid values.

use crate::text_enum;

text_enum!(CaseStatus {
    Intake => "intake",
    Open => "open",
    Pending => "pending",
    Closed => "closed",
    Archived => "archived",
});

text_enum!(CasePhase {
    Intake => "intake",
    Investigation => "investigation",
    Discovery => "discovery",
    Negotiation => "negotiation",
    Trial => "trial",
    Settlement => "settlement",
    Appeal => "appeal",
    Closed => "closed",
});

text_enum!(Priority {
    Low => "low",
    Normal => "normal",
    High => "high",
    Urgent => "urgent",
});

text_enum!(
    /// A person's role on one case.
    MemberRole {
        LeadAttorney => "lead_attorney",
        Attorney => "attorney",
        Paralegal => "paralegal",
        Client => "client",
    }
);

text_enum!(DeadlineKind {
    Filing => "filing",
    Hearing => "hearing",
    StatuteOfLimitations => "statute_of_limitations",
    Internal => "internal",
});

text_enum!(PartyKind {
    OpposingParty => "opposing_party",
    OpposingCounsel => "opposing_counsel",
    Witness => "witness",
    Related => "related",
});

text_enum!(TimelineKind {
    Created => "created",
    Status => "status",
    Phase => "phase",
    Note => "note",
    Milestone => "milestone",
});

impl CaseStatus {
    /// The status machine: closed cases are reopened before anything else happens to them.
    pub fn can_become(self, to: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (self, to),
            (Intake, Open | Pending | Closed)
                | (Open, Pending | Closed)
                | (Pending, Open | Closed)
                | (Closed, Open | Archived)
                | (Archived, Closed)
        )
    }

    pub fn is_active(self) -> bool {
        !matches!(self, CaseStatus::Closed | CaseStatus::Archived)
    }
}

impl MemberRole {
    pub fn is_staff(self) -> bool {
        !matches!(self, MemberRole::Client)
    }
    pub fn is_attorney(self) -> bool {
        matches!(self, MemberRole::LeadAttorney | MemberRole::Attorney)
    }
}

/// A case number: `YYYY-NNNN` (more digits once a year passes 9,999 cases).
pub fn format_number(year: i32, seq: i32) -> String {
    format!("{year}-{seq:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine() {
        use CaseStatus::*;
        assert!(Open.can_become(Closed));
        assert!(Closed.can_become(Open));
        assert!(!Closed.can_become(Pending));
        assert!(!Archived.can_become(Open));
        assert!(!Open.can_become(Open));
        assert!(!Open.can_become(Intake));
    }

    #[test]
    fn parse_and_numbers() {
        assert_eq!(CasePhase::parse("discovery"), Ok(CasePhase::Discovery));
        assert!(CasePhase::parse("Discovery").is_err());
        assert_eq!(
            MemberRole::parse("lead_attorney"),
            Ok(MemberRole::LeadAttorney)
        );
        assert_eq!(format_number(2026, 1), "2026-0001");
        assert_eq!(format_number(2026, 12345), "2026-12345");
    }
}
