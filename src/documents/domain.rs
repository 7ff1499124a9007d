//! The vocabulary of documents: confidentiality, the accepted file types (decided from the
//! bytes), safe display names.

use crate::{cases::domain::MemberRole, text_enum, users::domain::Role};

text_enum!(
    /// Who on a case may see a document.
    Confidentiality {
        Shared => "shared",
        Internal => "internal",
        Privileged => "privileged",
    }
);

impl Confidentiality {
    /// May someone with this firm role and this role on the case see it? (`None`: not a member.)
    /// `internal` is for staff on the case; `privileged` for attorneys on it (API.md: "attorneys
    /// on the case only"). Admins see every case's shared and internal documents, but privileged
    /// work product only where they are an attorney on the case: being an admin does not open
    /// it, as it does not open other people's messages. A demoted account (firm role client)
    /// sees only what clients see.
    pub fn visible_to(self, role: Role, member: Option<MemberRole>) -> bool {
        let attorney_on_case = member.is_some_and(MemberRole::is_attorney);
        if role == Role::Admin {
            return self != Confidentiality::Privileged || attorney_on_case;
        }
        let Some(m) = member else { return false };
        match self {
            Confidentiality::Shared => true,
            Confidentiality::Internal => role.is_staff() && m.is_staff(),
            Confidentiality::Privileged => role == Role::Attorney && attorney_on_case,
        }
    }
}

/// A file type the portal accepts, as recognised from the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pdf,
    Png,
    Jpeg,
    Gif,
    Webp,
    Tiff,
    Text,
    Csv,
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Rtf,
    Eml,
    Zip,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Pdf,
        Kind::Png,
        Kind::Jpeg,
        Kind::Gif,
        Kind::Webp,
        Kind::Tiff,
        Kind::Text,
        Kind::Csv,
        Kind::Docx,
        Kind::Xlsx,
        Kind::Pptx,
        Kind::Odt,
        Kind::Rtf,
        Kind::Eml,
        Kind::Zip,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Gif => "image/gif",
            Kind::Webp => "image/webp",
            Kind::Tiff => "image/tiff",
            Kind::Text => "text/plain",
            Kind::Csv => "text/csv",
            Kind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Kind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Kind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Kind::Odt => "application/vnd.oasis.opendocument.text",
            Kind::Rtf => "application/rtf",
            Kind::Eml => "message/rfc822",
            Kind::Zip => "application/zip",
        }
    }

    /// File-name extensions that may carry this type.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Kind::Pdf => &["pdf"],
            Kind::Png => &["png"],
            Kind::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            Kind::Gif => &["gif"],
            Kind::Webp => &["webp"],
            Kind::Tiff => &["tif", "tiff"],
            Kind::Text => &["txt", "text", "md", "log"],
            Kind::Csv => &["csv"],
            Kind::Docx => &["docx"],
            Kind::Xlsx => &["xlsx"],
            Kind::Pptx => &["pptx"],
            Kind::Odt => &["odt"],
            Kind::Rtf => &["rtf"],
            Kind::Eml => &["eml"],
            Kind::Zip => &["zip"],
        }
    }

    /// Whether the bytes are text worth indexing for search.
    pub fn is_text(self) -> bool {
        matches!(self, Kind::Text | Kind::Csv | Kind::Eml | Kind::Rtf)
    }
}

/// What the first bytes say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sniff {
    Known(Kind),
    /// UTF-8 text so far: plain text, CSV or e-mail (decided with the name and the headers).
    /// The rest of the upload must stay valid text.
    Text {
        email: bool,
    },
    /// Not accepted; the detected type (or a generic word) for the message.
    Refused(String),
}

/// Decide the type from the first bytes (`complete`: they are the whole file).
pub fn sniff(head: &[u8], complete: bool) -> Sniff {
    if let Some(t) = infer::get(head) {
        let kind = match t.mime_type() {
            "application/pdf" => Some(Kind::Pdf),
            "image/png" => Some(Kind::Png),
            "image/jpeg" => Some(Kind::Jpeg),
            "image/gif" => Some(Kind::Gif),
            "image/webp" => Some(Kind::Webp),
            "image/tiff" => Some(Kind::Tiff),
            "application/rtf" => Some(Kind::Rtf),
            "application/zip" => Some(zip_flavour(head)),
            m if m == Kind::Docx.mime() => Some(Kind::Docx),
            m if m == Kind::Xlsx.mime() => Some(Kind::Xlsx),
            m if m == Kind::Pptx.mime() => Some(Kind::Pptx),
            m if m == Kind::Odt.mime() => Some(Kind::Odt),
            _ => None,
        };
        return match kind {
            Some(k) => Sniff::Known(k),
            None => Sniff::Refused(t.mime_type().to_string()),
        };
    }
    if head.starts_with(b"{\\rtf") {
        return Sniff::Known(Kind::Rtf);
    }
    if looks_like_text(head, complete) {
        return Sniff::Text {
            email: looks_like_email(head),
        };
    }
    Sniff::Refused("application/octet-stream".into())
}

/// Office documents are ZIP containers; `infer` recognises them from the entry names it sees.
/// When it only says "zip", look for the marker entries ourselves.
fn zip_flavour(head: &[u8]) -> Kind {
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if has(b"mimetypeapplication/vnd.oasis.opendocument.text") {
        Kind::Odt
    } else if has(b"[Content_Types].xml") && has(b"word/") {
        Kind::Docx
    } else if has(b"[Content_Types].xml") && has(b"xl/") {
        Kind::Xlsx
    } else if has(b"[Content_Types].xml") && has(b"ppt/") {
        Kind::Pptx
    } else {
        Kind::Zip
    }
}

/// Valid UTF-8 (a sequence cut at the end of an incomplete head is fine), no NUL bytes and
/// almost no other control characters.
pub fn looks_like_text(bytes: &[u8], complete: bool) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    };
    if !valid {
        return false;
    }
    let controls = bytes
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    !bytes.contains(&0) && controls * 100 <= bytes.len()
}

/// RFC 5322 header lines at the top: the first line and at least two well-known fields.
fn looks_like_email(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(16 * 1024)]);
    let mut lines = text.lines();
    let header_name = |l: &str| {
        l.split_once(':').and_then(|(n, _)| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .then(|| n.to_ascii_lowercase())
        })
    };
    if lines.next().and_then(header_name).is_none() {
        return false;
    }
    let known = [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "received",
        "return-path",
        "cc",
    ];
    let mut seen = 0;
    for l in text.lines() {
        if l.is_empty() {
            break;
        }
        if let Some(n) = header_name(l)
            && known.contains(&n.as_str())
        {
            seen += 1;
        }
    }
    seen >= 2
}

/// Lower-case extension of a file name, if it has one.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// Whether a name's extension fits the detected type. No extension fits anything; plain text
/// also takes unknown extensions (notes.md, server.log), binary types only their own.
pub fn extension_fits(kind: Kind, name: &str) -> bool {
    let Some(ext) = extension(name) else {
        return true;
    };
    if kind.extensions().contains(&ext.as_str()) {
        return true;
    }
    let claimed_by_other = Kind::ALL
        .iter()
        .any(|k| k.extensions().contains(&ext.as_str()));
    kind == Kind::Text && !claimed_by_other && !EXECUTABLE_EXT.contains(&ext.as_str())
}

/// Extensions a desktop would run or render as active content.
const EXECUTABLE_EXT: &[&str] = &[
    "exe", "dll", "com", "bat", "cmd", "scr", "msi", "ps1", "vbs", "js", "jar", "sh", "app", "apk",
    "hta", "html", "htm", "xhtml", "svg", "lnk", "reg", "py", "pl",
];

/// Decide the final type of a text upload from the name and the headers.
pub fn text_kind(email: bool, name: &str) -> Kind {
    match extension(name).as_deref() {
        Some("csv") => Kind::Csv,
        _ if email => Kind::Eml,
        _ => Kind::Text,
    }
}

const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// A display name safe on every desktop and in headers: the last path component, without
/// control or invisible formatting characters, without characters Windows forbids, without
/// leading/trailing dots and spaces, not a reserved device name, at most 200 characters.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let mut name = cleaned
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if name.chars().count() > 200 {
        let ext = extension(&name).filter(|e| e.chars().count() <= 16);
        let keep = 200 - ext.as_ref().map_or(0, |e| e.chars().count() + 1);
        let stem: String = name.chars().take(keep).collect();
        name = match ext {
            Some(e) => format!("{}.{e}", stem.trim_end_matches(['.', ' '])),
            None => stem,
        };
        name = name
            .trim_matches(|c: char| c == '.' || c.is_whitespace())
            .to_string();
    }
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if RESERVED.contains(&stem.trim()) {
        name = format!("_{name}");
    }
    if name.is_empty() {
        "document".into()
    } else {
        name
    }
}

/// Bidirectional overrides and zero-width characters, which make `evil.exe` look like `exe.pdf`.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `Content-Disposition: attachment` with an ASCII fallback and the exact name (RFC 6266/5987).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = deunicode::deunicode(name)
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .map(|c| {
            if matches!(c, '"' | '\\' | ';') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii = if ascii.trim().is_empty() {
        "document".to_string()
    } else {
        ascii
    };
    let mut encoded = String::new();
    for b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(b) {
            encoded.push(*b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_lose_paths_controls_and_reserved_words() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\x\\brief.pdf"), "brief.pdf");
        assert_eq!(sanitize_filename("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize_filename("CON.txt"), "_CON.txt");
        assert_eq!(sanitize_filename("lpt1"), "_lpt1");
        assert_eq!(sanitize_filename("..."), "document");
        assert_eq!(sanitize_filename(" .hidden "), "hidden");
        assert_eq!(
            sanitize_filename("invoice\u{202E}fdp.exe"),
            "invoicefdp.exe"
        );
        assert_eq!(sanitize_filename("what?.pdf"), "what_.pdf");
        let long = format!("{}.pdf", "x".repeat(300));
        let s = sanitize_filename(&long);
        assert_eq!(s.chars().count(), 200);
        assert!(s.ends_with(".pdf"));
    }

    #[test]
    fn types_come_from_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n...", false), Sniff::Known(Kind::Pdf));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false),
            Sniff::Known(Kind::Png)
        );
        assert_eq!(
            sniff(b"{\\rtf1\\ansi hello}", true),
            Sniff::Known(Kind::Rtf)
        );
        assert!(matches!(
            sniff(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0", true),
            Sniff::Refused(_)
        ));
        assert_eq!(sniff(b"hello, world\n", true), Sniff::Text { email: false });
        assert_eq!(
            sniff(b"From: a@b.c\r\nTo: d@e.f\r\nSubject: hi\r\n\r\nbody", true),
            Sniff::Text { email: true }
        );
        assert!(matches!(
            sniff(&[0u8, 1, 2, 3, 0xff, 0xfe], true),
            Sniff::Refused(_)
        ));
        // A multi-byte character cut at the end of the head is still text.
        let mut head = b"caf".to_vec();
        head.push(0xC3);
        assert!(looks_like_text(&head, false));
        assert!(!looks_like_text(&head, true));
    }

    #[test]
    fn extensions_must_fit_the_bytes() {
        assert!(extension_fits(Kind::Pdf, "a.PDF"));
        assert!(extension_fits(Kind::Pdf, "scan"));
        assert!(!extension_fits(Kind::Pdf, "a.docx"));
        assert!(!extension_fits(Kind::Pdf, "a.weird"));
        assert!(extension_fits(Kind::Text, "notes.markdown"));
        assert!(!extension_fits(Kind::Text, "x.pdf"));
        assert!(!extension_fits(Kind::Text, "x.html"));
        assert_eq!(text_kind(false, "a.csv"), Kind::Csv);
        assert_eq!(text_kind(true, "mail.eml"), Kind::Eml);
    }

    #[test]
    fn visibility_follows_role_and_membership() {
        use Confidentiality::*;
        // Admins see every case's shared and internal documents, privileged ones only as an
        // attorney on the case.
        assert!(Shared.visible_to(Role::Admin, None) && Internal.visible_to(Role::Admin, None));
        assert!(!Privileged.visible_to(Role::Admin, None));
        assert!(!Privileged.visible_to(Role::Admin, Some(MemberRole::Paralegal)));
        assert!(Privileged.visible_to(Role::Admin, Some(MemberRole::Attorney)));
        assert!(Privileged.visible_to(Role::Admin, Some(MemberRole::LeadAttorney)));
        assert!(!Shared.visible_to(Role::Attorney, None));
        assert!(Shared.visible_to(Role::Client, Some(MemberRole::Client)));
        assert!(!Internal.visible_to(Role::Client, Some(MemberRole::Client)));
        assert!(Internal.visible_to(Role::Paralegal, Some(MemberRole::Paralegal)));
        assert!(!Privileged.visible_to(Role::Paralegal, Some(MemberRole::Paralegal)));
        assert!(Privileged.visible_to(Role::Attorney, Some(MemberRole::Attorney)));
        // A demoted attorney keeps the membership row but loses staff sight at once.
        assert!(!Internal.visible_to(Role::Client, Some(MemberRole::Attorney)));
    }

    #[test]
    fn content_disposition_is_ascii_safe() {
        let h = content_disposition("Résumé \"final\".pdf");
        assert!(
            h.starts_with("attachment; filename=\"Resume _final_.pdf\""),
            "{h}"
        );
        assert!(
            h.ends_with("filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"),
            "{h}"
        );
    }

    proptest! {
        #[test]
        fn sanitised_names_are_always_safe(s in "\\PC{0,300}|[./\\\\a-z\\x00-\\x1f]{0,50}") {
            let n = sanitize_filename(&s);
            prop_assert!(!n.is_empty());
            prop_assert!(n.chars().count() <= 200);
            prop_assert!(!n.contains('/') && !n.contains('\\'));
            prop_assert!(!n.chars().any(|c| c.is_control() || is_invisible(c)));
            prop_assert!(!n.starts_with('.') && !n.ends_with('.'));
            prop_assert_eq!(sanitize_filename(&n), n.clone());
            // Header value is always plain visible ASCII.
            prop_assert!(content_disposition(&n).bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }
}
