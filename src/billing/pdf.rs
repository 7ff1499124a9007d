//! The invoice as a PDF: one or more A4 pages with the standard Helvetica fonts (no font
//! files to ship), ASCII text so any reader (and `pdftotext`) extracts it exactly.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

/// What goes on the page; every text already final (the renderer only lays it out).
pub struct PdfInvoice {
    pub firm_name: String,
    pub number: String,
    pub status: String,
    pub issued_on: String,
    pub due_on: String,
    pub client: String,
    pub matter: String,
    /// `[date, codes, description, hours, rate, amount]`.
    pub lines: Vec<[String; 6]>,
    /// `(label, amount)`: subtotal, tax, total, paid, balance.
    pub totals: Vec<(String, String)>,
    pub payment_instructions: Vec<String>,
}

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const LINE: f32 = 14.0;
/// Column x positions: date, codes, description, hours, rate, amount.
const COLS: [f32; 6] = [50.0, 112.0, 190.0, 390.0, 430.0, 495.0];

fn ascii(s: &str, max: usize) -> String {
    deunicode::deunicode(s)
        .chars()
        .map(|c| if c.is_ascii_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// Split a description into chunks that fit the description column.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in s.split_whitespace() {
        let cur = out.last_mut().expect("non-empty");
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            out.push(String::new());
        }
        let cur = out.last_mut().expect("non-empty");
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word.chars().take(width).collect::<String>());
    }
    out
}

struct Writer {
    pages: Vec<Content>,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        let mut w = Self {
            pages: Vec::new(),
            y: 0.0,
        };
        w.new_page();
        w
    }
    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = HEIGHT - MARGIN;
    }
    fn ensure(&mut self, lines: f32) {
        if self.y - lines * LINE < MARGIN {
            self.new_page();
        }
    }
    fn text(&mut self, x: f32, size: f32, bold: bool, s: &str) {
        let c = self.pages.last_mut().expect("a page");
        c.begin_text();
        c.set_font(Name(if bold { b"F2" } else { b"F1" }), size);
        c.next_line(x, self.y);
        c.show(Str(ascii(s, 200).as_bytes()));
        c.end_text();
    }
    fn down(&mut self, lines: f32) {
        self.y -= lines * LINE;
    }
}

pub fn render(inv: &PdfInvoice) -> Vec<u8> {
    let mut w = Writer::new();
    w.text(MARGIN, 18.0, true, &inv.firm_name);
    w.down(2.0);
    w.text(MARGIN, 14.0, true, &format!("Invoice {}", inv.number));
    w.down(1.5);
    for (label, value) in [
        ("Status", &inv.status),
        ("Issued on", &inv.issued_on),
        ("Due on", &inv.due_on),
        ("Client", &inv.client),
        ("Matter", &inv.matter),
    ] {
        w.text(MARGIN, 10.0, true, label);
        w.text(MARGIN + 70.0, 10.0, false, value);
        w.down(1.0);
    }
    w.down(1.0);
    let header = ["Date", "Codes", "Description", "Hours", "Rate", "Amount"];
    for (x, h) in COLS.iter().zip(header) {
        w.text(*x, 9.0, true, h);
    }
    w.down(1.2);
    for l in &inv.lines {
        let desc = wrap(&ascii(&l[2], 2000), 38);
        w.ensure(desc.len() as f32 + 1.0);
        for (i, x) in COLS.iter().enumerate() {
            if i != 2 {
                w.text(*x, 9.0, false, &l[i]);
            }
        }
        for (i, part) in desc.iter().enumerate() {
            if i > 0 {
                w.down(1.0);
            }
            w.text(COLS[2], 9.0, false, part);
        }
        w.down(1.2);
    }
    w.ensure(inv.totals.len() as f32 + inv.payment_instructions.len() as f32 + 3.0);
    w.down(0.5);
    for (label, value) in &inv.totals {
        w.text(COLS[3], 10.0, true, label);
        w.text(COLS[5], 10.0, false, value);
        w.down(1.1);
    }
    w.down(1.0);
    w.text(MARGIN, 11.0, true, "Payment instructions");
    w.down(1.2);
    for line in &inv.payment_instructions {
        w.text(MARGIN, 9.0, false, line);
        w.down(1.0);
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let first = 5;
    let page_ids: Vec<Ref> = (0..w.pages.len() as i32)
        .map(|i| Ref::new(first + 2 * i))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, content) in w.pages.into_iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(first + 2 * i as i32 + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        let mut res = page.resources();
        let mut fonts = res.fonts();
        fonts.pair(Name(b"F1"), regular);
        fonts.pair(Name(b"F2"), bold);
        drop(fonts);
        drop(res);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_pdf() {
        let inv = PdfInvoice {
            firm_name: "Law Firm Pro".into(),
            number: "INV-2026-0001".into(),
            status: "sent".into(),
            issued_on: "2026-11-25".into(),
            due_on: "2026-12-25".into(),
            client: "Jane Client".into(),
            matter: "2026-0001 Smith v. Jones".into(),
            lines: (0..120)
                .map(|i| {
                    [
                        "2026-11-02".into(),
                        "L110 A101".into(),
                        format!(
                            "Line {i} with a long description that wraps onto another line of text"
                        ),
                        "0.12".into(),
                        "123.45".into(),
                        "14.40".into(),
                    ]
                })
                .collect(),
            totals: vec![("Total".into(), "USD 14.40".into())],
            payment_instructions: vec!["Pay online.".into()],
        };
        let bytes = render(&inv);
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.len() > 1000);
    }

    #[test]
    fn wraps() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
