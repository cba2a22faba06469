//! Row counts of a plain-format dump, counted while it streams past.
//!
//! `pg_dump --format=plain` writes each table's rows as one `COPY … FROM stdin;`
//! section: a header comment `-- Data for Name: …; Type: TABLE DATA; …`, the `COPY`
//! line, one line per row, and a line that is exactly `\.`. In COPY's text format a
//! newline inside a value is written `\n` and a backslash `\\`, so a row is always
//! one physical line and no row can be the line `\.`. Counting those lines gives each
//! table's exact row count in the dump's own snapshot, with no query and no second
//! pass.
//!
//! A `COPY` line only opens a section right after a `TABLE DATA` header (blank and
//! `--` lines between), so a function body that happens to contain a line starting
//! with `COPY` is not mistaken for data. Inside a section only newlines are looked
//! for (`memchr`), and at most [`HEADER_LINE_LIMIT`] bytes of a line outside one
//! are kept, so memory stays bounded whatever the dump holds.

use std::collections::BTreeMap;

/// How much of a line outside a data section is kept: enough for any header or
/// `COPY` line's table name.
pub const HEADER_LINE_LIMIT: usize = 64 * 1024;

/// Feeds on a dump's bytes in any chunking; [`CopyCounter::finish`] gives the counts.
#[derive(Debug, Default)]
pub struct CopyCounter {
    counts: BTreeMap<String, u64>,
    state: State,
    /// Outside a section: the current line so far (up to the limit).
    line: Vec<u8>,
    line_truncated: bool,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Outside,
    /// A `TABLE DATA` header was seen; the `COPY` line comes next.
    ExpectingCopy,
    /// In a section: its table, the rows so far, and how much of the current line
    /// matches `\.` (0, 1 or 2 bytes; `None` once it cannot be the end marker).
    Rows {
        table: String,
        rows: u64,
        end_marker: Option<u8>,
    },
}

impl CopyCounter {
    /// A counter at the start of a dump.
    pub fn new() -> CopyCounter {
        CopyCounter::default()
    }

    /// The next bytes of the dump.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let State::Rows { .. } = self.state {
                bytes = self.feed_rows(bytes);
            } else {
                match memchr::memchr(b'\n', bytes) {
                    Some(end) => {
                        self.keep(&bytes[..end]);
                        self.header_line();
                        bytes = &bytes[end + 1..];
                    }
                    None => {
                        self.keep(bytes);
                        bytes = &[];
                    }
                }
            }
        }
    }

    /// The counts of every section that ended, by table name as the dump writes it
    /// (`public.courses`, `public."Odd name"`).
    pub fn finish(self) -> BTreeMap<String, u64> {
        self.counts
    }

    fn keep(&mut self, part: &[u8]) {
        let room = HEADER_LINE_LIMIT.saturating_sub(self.line.len());
        if part.len() > room {
            self.line_truncated = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    /// Counts row lines until the end marker; returns what follows the section's
    /// last line, or nothing if the chunk ended inside it.
    fn feed_rows<'b>(&mut self, mut bytes: &'b [u8]) -> &'b [u8] {
        let State::Rows {
            table,
            rows,
            end_marker,
        } = &mut self.state
        else {
            unreachable!("feed_rows runs in a section");
        };
        loop {
            let (line, newline) = match memchr::memchr(b'\n', bytes) {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            *end_marker = match (*end_marker, line) {
                (Some(0), b"\\.") | (Some(1), b".") | (Some(2), b"") => Some(2),
                (Some(0), b"\\") => Some(1),
                (Some(0 | 1), b"") => *end_marker,
                _ => None,
            };
            if !newline {
                return &[];
            }
            bytes = &bytes[line.len() + 1..];
            if *end_marker == Some(2) {
                let table = std::mem::take(table);
                let rows = *rows;
                *self.counts.entry(table).or_default() += rows;
                self.state = State::Outside;
                return bytes;
            }
            *rows += 1;
            *end_marker = Some(0);
        }
    }

    /// A whole line outside a section.
    fn header_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let truncated = std::mem::replace(&mut self.line_truncated, false);
        let text = String::from_utf8_lossy(&line);
        self.state = match self.state {
            _ if text.starts_with("-- Data for Name: ") && text.contains("; Type: TABLE DATA;") => {
                State::ExpectingCopy
            }
            State::ExpectingCopy if text.is_empty() || text.starts_with("--") => {
                State::ExpectingCopy
            }
            State::ExpectingCopy if !truncated && text.ends_with(" FROM stdin;") => {
                match copy_table(&text) {
                    Some(table) => State::Rows {
                        table,
                        rows: 0,
                        end_marker: Some(0),
                    },
                    None => State::Outside,
                }
            }
            _ => State::Outside,
        };
    }
}

/// The table name of `COPY name (columns) FROM stdin;` as written, quotes kept.
fn copy_table(line: &str) -> Option<String> {
    let rest = line.strip_prefix("COPY ")?;
    let mut end = 0;
    let bytes = rest.as_bytes();
    loop {
        if bytes.get(end) == Some(&b'"') {
            end += 1;
            loop {
                match bytes.get(end) {
                    Some(b'"') if bytes.get(end + 1) == Some(&b'"') => end += 2,
                    Some(b'"') => {
                        end += 1;
                        break;
                    }
                    Some(_) => end += 1,
                    None => return None,
                }
            }
        } else {
            while let Some(&byte) = bytes.get(end) {
                if byte == b'.' || byte == b' ' {
                    break;
                }
                end += 1;
            }
        }
        if bytes.get(end) == Some(&b'.') {
            end += 1;
            continue;
        }
        break;
    }
    (end > 0).then(|| rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\nCREATE FUNCTION public.f() RETURNS void\n    LANGUAGE sql\n    AS $$\nCOPY public.fake (a) FROM stdin;\n$$;\n\n--\n-- Data for Name: courses; Type: TABLE DATA; Schema: public; Owner: -\n--\n\nCOPY public.courses (id, title) FROM stdin;\n1\tBiology\n2\tline\\nbreak \\\\. and \\.\n3\t\\\\.\n\\.\n\n\n--\n-- Data for Name: Odd name; Type: TABLE DATA; Schema: public; Owner: -\n--\n\nCOPY public.\"Odd \"\"name\"\".x\" (a) FROM stdin;\n\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

    fn count(chunks: &[&[u8]]) -> BTreeMap<String, u64> {
        let mut counter = CopyCounter::new();
        for chunk in chunks {
            counter.feed(chunk);
        }
        counter.finish()
    }

    #[test]
    fn sections_are_counted_and_function_bodies_ignored() {
        let counts = count(&[DUMP.as_bytes()]);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("public.courses".to_owned(), 3),
                ("public.\"Odd \"\"name\"\".x\"".to_owned(), 0),
            ])
        );
    }

    #[test]
    fn table_names_keep_their_quotes() {
        assert_eq!(
            copy_table("COPY public.t (a) FROM stdin;").as_deref(),
            Some("public.t")
        );
        assert_eq!(
            copy_table("COPY \"my schema\".\"t(1)\" (a) FROM stdin;").as_deref(),
            Some("\"my schema\".\"t(1)\"")
        );
        assert_eq!(
            copy_table("COPY public.empty  FROM stdin;").as_deref(),
            Some("public.empty")
        );
        assert_eq!(copy_table("COPY \"unterminated (a) FROM stdin;"), None);
        assert_eq!(copy_table("COPY  FROM stdin;"), None);
    }

    #[test]
    fn a_huge_line_outside_a_section_is_cut_not_kept() {
        let mut counter = CopyCounter::new();
        counter.feed(&vec![b'x'; 10 * HEADER_LINE_LIMIT]);
        assert_eq!(counter.line.len(), HEADER_LINE_LIMIT);
        counter.feed(b"\n");
        counter.feed(DUMP.as_bytes());
        assert_eq!(counter.finish()["public.courses"], 3);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_counts(cuts in proptest::collection::vec(0..DUMP.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let bytes = DUMP.as_bytes();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&bytes[start..cut]);
                start = cut;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(count(&chunks), count(&[bytes]));
        }
    }
}
