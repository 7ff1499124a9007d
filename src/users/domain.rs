//! Values a user is made of. Each can only hold a valid value: parse, don't validate.

use serde::{Deserialize, Serialize};

/// What a person is in the firm.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Attorney,
    Paralegal,
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Attorney => "attorney",
            Role::Paralegal => "paralegal",
            Role::Client => "client",
        }
    }
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        match s {
            "admin" => Ok(Role::Admin),
            "attorney" => Ok(Role::Attorney),
            "paralegal" => Ok(Role::Paralegal),
            "client" => Ok(Role::Client),
            _ => Err("must be one of admin, attorney, paralegal, client"),
        }
    }
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Client)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            _ => Err("must be active or disabled"),
        }
    }
}

/// An email address, trimmed and lower-cased so uniqueness is case-insensitive on both databases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("is required");
        }
        if s.len() > 254 {
            return Err("must be at most 254 characters");
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("is not a valid email address");
        }
        // email_address implements RFC 5322; we additionally require a dotted domain.
        let parsed: email_address::EmailAddress =
            s.parse().map_err(|_| "is not a valid email address")?;
        if !parsed.domain().contains('.') || parsed.domain().starts_with('[') {
            return Err("is not a valid email address");
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's display name: trimmed, 1..=200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("is required");
        }
        if s.chars().count() > 200 {
            return Err("must be at most 200 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone name such as `Europe/Berlin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZoneName(chrono_tz::Tz);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| "is not an IANA time zone name (e.g. America/New_York)")
    }
    pub fn as_str(&self) -> &'static str {
        self.0.name()
    }
    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }
}

/// A phone number as people write it: digits with `+ - ( ) . /` and spaces, 3..=40 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        if s.len() > 40 || digits < 3 {
            return Err("must be a phone number of 3 to 40 characters");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().,/x".contains(c))
        {
            return Err("may contain only digits, spaces and + - ( ) . / x");
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(),
            "ann.lee@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
            "ann@exa\nmple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn names_timezones_phones() {
        assert_eq!(PersonName::parse("  Ann Lee ").unwrap().as_str(), "Ann Lee");
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse(&"x".repeat(201)).is_err());
        assert!(PersonName::parse("Ann\u{0}Lee").is_err());
        assert_eq!(
            TimeZoneName::parse("Europe/Berlin").unwrap().as_str(),
            "Europe/Berlin"
        );
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
        assert!(Phone::parse("+1 (555) 010-2030").is_ok());
        assert!(Phone::parse("call me").is_err());
        assert_eq!(Role::parse("attorney"), Ok(Role::Attorney));
        assert!(Role::parse("root").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = Email::parse(&s);
            let _ = PersonName::parse(&s);
            let _ = TimeZoneName::parse(&s);
            let _ = Phone::parse(&s);
        }

        #[test]
        fn parsed_emails_are_lowercase_and_bounded(local in "[a-zA-Z0-9._]{1,30}", domain in "[a-z]{1,20}\\.[a-z]{2,5}") {
            if let Ok(e) = Email::parse(&format!("{local}@{domain}")) {
                prop_assert_eq!(e.as_str().to_lowercase(), e.as_str());
                prop_assert!(e.as_str().len() <= 254);
            }
        }
    }
}
