//! Every domain-type parser of request fields: never a panic; what parses is stable.
#![no_main]

use lawfirm_pro::{
    billing::{
        domain::{CodeKind, UtbmsCode},
        money::Currency,
    },
    messages::service::MessageBody,
    users::domain::{Email, PersonName, Phone, Role, TimeZoneName},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(e) = Email::parse(s) {
        assert_eq!(Email::parse(e.as_str()).unwrap(), e);
    }
    if let Ok(n) = PersonName::parse(s) {
        assert_eq!(PersonName::parse(n.as_str()).unwrap(), n);
    }
    if let Ok(p) = Phone::parse(s) {
        assert_eq!(Phone::parse(p.as_str()).unwrap(), p);
    }
    let _ = Role::parse(s);
    if let Ok(tz) = TimeZoneName::parse(s) {
        assert_eq!(TimeZoneName::parse(tz.as_str()).unwrap().tz(), tz.tz());
    }
    for kind in [CodeKind::Task, CodeKind::Activity, CodeKind::Expense] {
        if let Ok(c) = UtbmsCode::parse(kind, s) {
            assert_eq!(c.as_str().len(), 4);
        }
    }
    if let Ok(c) = Currency::parse(s) {
        assert_eq!(Currency::parse(c.code()).unwrap(), c);
    }
    if let Ok(b) = MessageBody::parse(s) {
        assert!(!b.into_inner().contains('\0'));
    }
    let n = lawfirm_pro::cases::conflicts::normalize_name(s);
    assert_eq!(lawfirm_pro::cases::conflicts::normalize_name(&n), n);
});
