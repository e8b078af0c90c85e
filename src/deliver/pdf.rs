//! Plain text laid out as a printable A4 PDF: Courier, wrapped lines, as many pages as it takes.
//!
//! Courier is one of the fonts every PDF reader has (nothing to embed), and
//! every glyph of it is as wide as the next: the columns that text templates
//! line up with spaces stay lined up, and a line's width is its length. Text
//! is written in WinAnsi, the encoding of those fonts (é, è, à, ç, œ, €…);
//! a character it lacks is transliterated (`ł` is `l`, `Ж` is `Zh`), never
//! written as bytes a reader would misread.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// A4 in points (1/72 in).
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
/// 2 cm on every side.
const MARGIN: f32 = 56.69;
const FONT_SIZE: f32 = 10.0;
/// A Courier glyph is 600/1000 of the font size wide.
const GLYPH_WIDTH: f32 = FONT_SIZE * 0.6;
const LEADING: f32 = 12.0;
/// Characters on a line: 80 between the margins.
pub const COLUMNS: usize = ((PAGE_WIDTH - 2.0 * MARGIN) / GLYPH_WIDTH) as usize;
/// Lines on a page, between the top margin and the bottom one.
pub const LINES_PER_PAGE: usize = ((PAGE_HEIGHT - 2.0 * MARGIN) / LEADING) as usize;
/// Where a tab stop falls: every 8 columns, as in a terminal.
const TAB: usize = 8;

/// The PDF of `text`, titled `title` in the document's properties. Long lines
/// wrap at a space (keeping their indentation); pages are numbered `n/N` at
/// the foot when there are several. The same text always gives the same
/// bytes (no creation date): a letter written again is the same file.
pub fn a4(text: &str, title: &str) -> Vec<u8> {
    a4_documents(&[text], title)
}

/// The PDF of several texts one after another, each starting on a new page
/// and numbered on its own (`n/N` of its pages), as [`a4`] lays one out:
/// the letters of a day, for one print run.
pub fn a4_documents(texts: &[&str], title: &str) -> Vec<u8> {
    let documents: Vec<Vec<Vec<u8>>> = texts
        .iter()
        .map(|text| {
            text.lines()
                .flat_map(|line| wrap(&winansi(line), COLUMNS))
                .collect()
        })
        .collect();
    // Each page: its lines, its number in its document and how many pages
    // that document has.
    let mut pages: Vec<(&[Vec<u8>], usize, usize)> = Vec::new();
    for lines in &documents {
        let own: Vec<&[Vec<u8>]> = if lines.is_empty() {
            vec![&[][..]]
        } else {
            lines.chunks(LINES_PER_PAGE).collect()
        };
        let count = own.len();
        pages.extend(
            own.into_iter()
                .enumerate()
                .map(|(i, page)| (page, i, count)),
        );
    }
    if pages.is_empty() {
        pages.push((&[][..], 0, 1));
    }

    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let info = Ref::new(4);
    let page_ref = |i: usize| Ref::new(5 + 2 * i as i32);
    let content_ref = |i: usize| Ref::new(6 + 2 * i as i32);
    let font_name = Name(b"F1");

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids((0..pages.len()).map(page_ref))
        .count(pages.len() as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("relance"));
    for (i, &(lines, number, count)) in pages.iter().enumerate() {
        let mut page = pdf.page(page_ref(i));
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .parent(tree)
            .contents(content_ref(i));
        page.resources().fonts().pair(font_name, font);
        page.finish();

        let mut content = Content::new();
        content.begin_text();
        content.set_font(font_name, FONT_SIZE);
        content.set_leading(LEADING);
        // The first baseline sits a font size below the top margin.
        content.next_line(MARGIN, PAGE_HEIGHT - MARGIN - FONT_SIZE);
        for (n, line) in lines.iter().enumerate() {
            if n > 0 {
                content.next_line_using_leading();
            }
            if !line.is_empty() {
                content.show(Str(line));
            }
        }
        content.end_text();
        if count > 1 {
            let number = format!("{}/{count}", number + 1);
            let width = number.len() as f32 * GLYPH_WIDTH;
            content.begin_text();
            content.set_font(font_name, FONT_SIZE);
            content.next_line(PAGE_WIDTH - MARGIN - width, MARGIN / 2.0);
            content.show(Str(number.as_bytes()));
            content.end_text();
        }
        pdf.stream(content_ref(i), &content.finish());
    }
    pdf.finish()
}

/// A line of text in WinAnsi bytes, one byte per Courier glyph: tabs
/// expanded, control characters dropped, characters WinAnsi lacks
/// transliterated (or `?` when nothing sensible exists).
pub fn winansi(line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\t' => out.resize((out.len() / TAB + 1) * TAB, b' '),
            c if c.is_control() => {}
            c => match winansi_byte(c) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(fallback(c)),
            },
        }
    }
    out
}

/// The WinAnsi byte of `c`, if WinAnsi has it: ASCII, Latin-1 and the
/// Windows-1252 additions (€, curly quotes, dashes, œ, Œ, Š…).
fn winansi_byte(c: char) -> Option<u8> {
    match c as u32 {
        0x20..=0x7E | 0xA0..=0xFF => Some(c as u8),
        _ => WINDOWS_1252
            .iter()
            .position(|&w| w == c)
            .map(|i| 0x80 + i as u8),
    }
}

/// The characters of bytes 0x80 to 0x9F in WinAnsi; NUL where it has none.
const WINDOWS_1252: [char; 32] = [
    '€', '\0', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\0', 'Ž', '\0', //
    '\0', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\0', 'ž', 'Ÿ',
];

/// WinAnsi bytes standing in for a character WinAnsi lacks.
fn fallback(c: char) -> &'static [u8] {
    match c {
        // French typography's narrow no-break space (before `:`, in
        // `1 234,56`) and the figure space stay no-break spaces: never a
        // place to wrap a line.
        '\u{202F}' | '\u{2007}' => b"\xA0",
        _ => match deunicode::deunicode_char(c) {
            Some(ascii) if !ascii.is_empty() => ascii.as_bytes(),
            _ => b"?",
        },
    }
}

/// Whether a line may wrap at the space `line[at]`: not inside an amount
/// (`5 600,00`), nor before what French typography keeps with the word
/// before it (`40 €`, `12,15 %`, `payer :`, `« ok »`).
fn breaks_at(line: &[u8], at: usize) -> bool {
    const EURO: u8 = 0x80;
    const OPEN_QUOTE: u8 = 0xAB;
    const CLOSE_QUOTE: u8 = 0xBB;
    let before = line.get(at.wrapping_sub(1)).copied().unwrap_or(b' ');
    let after = line.get(at + 1).copied().unwrap_or(b' ');
    line[at] == b' '
        && !(before.is_ascii_digit() && after.is_ascii_digit())
        && !matches!(after, b':' | b';' | b'!' | b'?' | b'%' | EURO | CLOSE_QUOTE)
        && before != OPEN_QUOTE
}

/// `line` cut into lines of at most `width` glyphs, at spaces where it can
/// be (a longer word is cut where it must). The continuation lines keep the
/// line's indentation, so that an indented block stays one block.
pub fn wrap(line: &[u8], width: usize) -> Vec<Vec<u8>> {
    let line = line.trim_ascii_end();
    let indent = line.iter().take_while(|&&b| b == b' ').count();
    // A line indented nearly to the edge continues at the margin: its
    // continuations would hold a word or two each.
    let indent = if indent <= width * 3 / 4 { indent } else { 0 };
    let mut lines = Vec::new();
    let mut current = line.to_vec();
    while current.len() > width {
        let cut = match (indent + 1..=width).rev().find(|&i| breaks_at(&current, i)) {
            Some(space) => space,
            None => width,
        };
        let mut next = vec![b' '; indent];
        next.extend_from_slice(current[cut..].trim_ascii_start());
        current.truncate(cut);
        lines.push(current.trim_ascii_end().to_vec());
        current = next;
    }
    lines.push(current);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_text_and_the_euro_are_winansi() {
        assert_eq!(
            winansi("Réglé à Noël : 5 € — œuvre « Ça »"),
            b"R\xE9gl\xE9 \xE0 No\xEBl : 5 \x80 \x97 \x9Cuvre \xAB \xC7a \xBB"
        );
        assert_eq!(winansi("l’été “ok” …"), b"l\x92\xE9t\xE9 \x93ok\x94 \x85");
    }

    #[test]
    fn what_winansi_lacks_is_transliterated_never_left_broken() {
        assert_eq!(winansi("Łódź"), b"L\xF3dz");
        assert_eq!(winansi("Łukasz Ścięgny"), b"Lukasz Sciegny");
        assert_eq!(winansi("Жук"), b"Zhuk");
        // French typography's narrow no-break space stays a no-break space.
        assert_eq!(winansi("1\u{202F}234,56\u{202F}€"), b"1\xA0234,56\xA0\x80");
        // Tabs reach the next tab stop; other control characters go.
        assert_eq!(winansi("a\tb\u{7}c"), b"a       bc");
        // Whatever comes in, only bytes WinAnsi defines come out.
        let undefined = [0x81, 0x8D, 0x8F, 0x90, 0x9D];
        for b in winansi("🙂 中文 ﬁ \u{FFFD} \u{200B} ǅ") {
            assert!(b >= 0x20 && b != 0x7F && !undefined.contains(&b), "{b:#x}");
        }
    }

    #[test]
    fn long_lines_wrap_at_spaces_and_keep_their_indentation() {
        let text = |lines: Vec<Vec<u8>>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        };
        assert_eq!(text(wrap(b"short line  ", 20)), ["short line"]);
        assert_eq!(text(wrap(b"", 20)), [""]);
        assert_eq!(
            text(wrap(b"  one two three four five six", 12)),
            ["  one two", "  three four", "  five six"]
        );
        // A word longer than a line is cut where it must.
        assert_eq!(
            text(wrap(b"ab https://pay.example/x/123456789", 12)),
            ["ab", "https://pay.", "example/x/12", "3456789"]
        );
        // Never inside an amount, nor before a unit or French punctuation.
        assert_eq!(
            wrap(b"due: 5 600,00 \x80 or 40 \x80 now", 12),
            [&b"due:"[..], b"5 600,00 \x80", b"or 40 \x80 now"]
        );
        assert_eq!(
            wrap(b"payer : \xAB oui \xBB", 9),
            [&b"payer :"[..], b"\xAB oui \xBB"]
        );
        // Indented nearly to the edge: the continuation starts at the margin.
        assert_eq!(text(wrap(b"          ab cd", 12)), ["          ab", "cd"]);
    }

    fn open(pdf: &[u8]) -> lopdf::Document {
        lopdf::Document::load_mem(pdf).expect("a PDF lopdf reads")
    }

    #[test]
    fn a_long_text_takes_numbered_pages_and_reads_back() {
        let text: String = (1..=130)
            .map(|n| format!("Ligne {n} : réglé 5 €\n"))
            .collect();
        let doc = open(&a4(&text, "Mise en demeure — facture F1"));
        let pages = doc.get_pages();
        assert_eq!(pages.len(), 3, "60 lines a page");
        let first = doc.extract_text(&[1]).unwrap();
        assert!(
            first.starts_with("Ligne 1 : réglé 5 €\nLigne 2 :"),
            "{first}"
        );
        assert!(first.contains("Ligne 60 : réglé 5 €\n1/3"), "{first}");
        let last = doc.extract_text(&[3]).unwrap();
        assert!(last.starts_with("Ligne 121 :"), "{last}");
        assert!(last.contains("Ligne 130 : réglé 5 €\n3/3"), "{last}");
    }

    #[test]
    fn several_texts_each_start_a_page_and_are_numbered_on_their_own() {
        let long: String = (1..=70).map(|n| format!("Ligne {n}\n")).collect();
        let doc = open(&a4_documents(&["Lettre A", &long, "Lettre C"], "t"));
        assert_eq!(doc.get_pages().len(), 4);
        assert_eq!(doc.extract_text(&[1]).unwrap(), "Lettre A\n");
        let second = doc.extract_text(&[2]).unwrap();
        assert!(
            second.starts_with("Ligne 1\n") && second.contains("1/2"),
            "{second}"
        );
        assert!(doc.extract_text(&[3]).unwrap().contains("2/2"));
        assert_eq!(doc.extract_text(&[4]).unwrap(), "Lettre C\n");
        assert_eq!(open(&a4_documents(&[], "t")).get_pages().len(), 1);
    }

    #[test]
    fn a_short_text_is_one_unnumbered_page() {
        let doc = open(&a4("Bonjour,\n\n(ça) \\ va", "t"));
        assert_eq!(doc.get_pages().len(), 1);
        assert_eq!(doc.extract_text(&[1]).unwrap(), "Bonjour,\n(ça) \\ va\n");
        assert_eq!(
            open(&a4("", "t")).get_pages().len(),
            1,
            "an empty text is a blank page"
        );
    }
}
