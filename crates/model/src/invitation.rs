//! MS-RAI "Connection String 2" (spec.md §3.1–§3.5): the invitation a sharer hands out,
//! `<E><A KH="…" ID="…"/><C><T ID="1" SID="…"><L P="port" N="address"/>…</T></C></E>`, and the
//! same shape without `<A>` that a listening viewer hands back for reverse connect (§3.2).
//!
//! The reader is a small hand-written XML reader for this tiny grammar: it tolerates
//! whitespace and newlines between and inside tags, attributes in any order, unknown
//! attributes and unknown elements, comments and processing instructions; it is strict about
//! what it uses (ports, addresses, the ticket) and about the markup around those. It also
//! finds a connection string inside a larger text: a `.msrcIncident` file, the escaped
//! `RCTICKET="&lt;E&gt;…"` attribute of one, or an XP-style Connection String 1 (§3.3).
//!
//! The reader never panics: it only slices the text at ASCII delimiters it found (always
//! UTF-8 character boundaries), bounds the input and every value, and bounds nesting.

use std::borrow::Cow;
use std::fmt;

/// Largest text [`ConnectionString::parse`] reads (an invitation is a few hundred bytes; a
/// Remote Assistance file a few KiB).
pub const MAX_INPUT_LEN: usize = 64 * 1024;
/// Largest value (ticket, address, …) in characters, after decoding character references.
pub const MAX_VALUE_LEN: usize = 1024;
/// Deepest element nesting the reader follows.
pub const MAX_DEPTH: usize = 32;
/// Most `<L>` listeners (addresses to try) one connection string may name.
pub const MAX_LISTENERS: usize = 128;
/// FreeRDP 2.11 skips `<L>` addresses of this many bytes or fewer (spec.md §3.5).
pub const FREERDP_SKIPPED_ADDRESS_LEN: usize = 8;

/// One `<L P="port" N="address"/>`: an address the connecting side tries (all of them, the
/// first TCP connection that succeeds wins).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listener {
    pub port: u16,
    /// IPv4, IPv6 (possibly with `%scope`) or a host name.
    pub name: String,
}

/// An MS-RAI Connection String 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `<A ID>`: the ticket the viewer sends back (Client Info WorkingDir). `None` for a
    /// viewer's reverse-connect string, which may lack `<A>`.
    pub ticket: Option<String>,
    /// `<A KH>`: base64 SHA-1 of the sharer's public key blob. Written only with a ticket.
    pub kh: Option<String>,
    /// `<A KH2>`: `"sha256:<base64>"` or similar. Written only with a ticket.
    pub kh2: Option<String>,
    /// `<T ID>`: the transport, `"1"` (TCP).
    pub transport_id: String,
    /// `<T SID>`: a per-sharing-session number (not a WTS session id); empty when absent.
    pub sid: String,
    /// `<L>`: at least one.
    pub listeners: Vec<Listener>,
}

/// Why a text is not a usable connection string. Each message says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error(
        "the text is {len} bytes long; a connection string or invitation file is at most {max} bytes",
        max = MAX_INPUT_LEN
    )]
    TooLarge { len: usize },
    #[error("the file is neither UTF-8 nor UTF-16 text (save the invitation as plain ASCII)")]
    NotText,
    #[error(
        "no connection string found: expected <E>…</E> (MS-RAI Connection String 2) or 65538,1,… (Connection String 1)"
    )]
    NotFound,
    #[error(
        "the invitation file's ticket is encrypted with its password (LHTICKET / RCTICKETENCRYPTED=\"1\"), which rdhost cannot read: use the bare <E>…</E> connection string instead"
    )]
    Encrypted,
    #[error(
        "the connection string ends inside {what}: it was cut short (copy all of it, up to </E>)"
    )]
    Truncated { what: String },
    #[error("byte {offset} of the connection string: {problem}")]
    Markup { offset: usize, problem: String },
    #[error("in <{element}>, the value of {attribute} is not in quotes (write {attribute}=\"…\")")]
    UnquotedValue { element: String, attribute: String },
    #[error(
        "in <{element}>, {attribute:?} is not followed by '=' and a quoted value (is a quote missing?)"
    )]
    MissingEquals { element: String, attribute: String },
    #[error("<{element}> has the attribute {attribute} twice")]
    DuplicateAttribute { element: String, attribute: String },
    #[error("</{found}> closes <{expected}>: the elements are not nested properly")]
    MismatchedEndTag { expected: String, found: String },
    #[error("elements are nested more than {max} deep", max = MAX_DEPTH)]
    TooDeep,
    #[error(
        "{what} has {entity:?}, which is not a valid character reference (&amp; &lt; &gt; &quot; &apos; &#N; &#xN;)"
    )]
    BadEntity { what: String, entity: String },
    #[error(
        "there is no <{0}> element where the connection string needs one (<E><C><T>…</T></C></E>)"
    )]
    MissingElement(&'static str),
    #[error("there is more than one <{0}> element; a connection string has exactly one")]
    DuplicateElement(&'static str),
    #[error("{what} is missing")]
    MissingAttribute { what: String },
    #[error("{what} is empty")]
    EmptyValue { what: String },
    #[error("{what} is {len} characters long; at most {max} are accepted", max = MAX_VALUE_LEN)]
    ValueTooLong { what: String, len: usize },
    #[error("{what} contains a control character")]
    ControlCharacter { what: String },
    #[error("listener {index} has port {value:?}: expected 1..65535")]
    BadPort { index: usize, value: String },
    #[error(
        "no <L P=\"port\" N=\"address\"/> listener inside <E><C><T>: the connection string names no address to connect to"
    )]
    NoListener,
    #[error("the connection string names {count} addresses; at most {max} are accepted", max = MAX_LISTENERS)]
    TooManyListeners { count: usize },
    #[error("Connection String 1: {problem}")]
    ConnectionString1 { problem: String },
}

type Error = ConnectionStringError;

impl ConnectionString {
    /// Read a connection string from `text`: a bare `<E>…</E>`; any text containing one (a
    /// `.msrcIncident` file, also with the string XML-escaped inside an attribute such as
    /// `RCTICKET="&lt;E&gt;…"`); or a Connection String 1 (`65538,1,addr:port;…,*,ID,*,*,KH`,
    /// alone or as a file's `RCTICKET`). Of several, a raw `<E>` wins, then an escaped one.
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        if text.len() > MAX_INPUT_LEN {
            return Err(Error::TooLarge { len: text.len() });
        }
        if let Some(start) = find_element_start(text) {
            return parse_cs2(&text[start..]);
        }
        if let Some(escaped) = find_escaped(text) {
            let decoded = decode_entities(escaped, || "the escaped connection string".into())?;
            return match find_element_start(&decoded) {
                Some(start) => parse_cs2(&decoded[start..]),
                None => Err(Error::NotFound),
            };
        }
        if let Some(cs1) = find_cs1(text)? {
            return parse_cs1(&cs1);
        }
        if has_encrypted_ticket(text) {
            return Err(Error::Encrypted);
        }
        Err(Error::NotFound)
    }

    /// [`parse`](Self::parse) for a file's bytes: UTF-8 (with or without a byte-order mark) or
    /// UTF-16 with a byte-order mark (Windows writes `.msrcIncident` files as UTF-16).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ConnectionStringError> {
        if bytes.len() > 2 * MAX_INPUT_LEN {
            return Err(Error::TooLarge { len: bytes.len() });
        }
        let text: Cow<'_, str> = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
            Cow::Owned(decode_utf16(rest, u16::from_le_bytes)?)
        } else if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
            Cow::Owned(decode_utf16(rest, u16::from_be_bytes)?)
        } else {
            let rest = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
            Cow::Borrowed(std::str::from_utf8(rest).map_err(|_| Error::NotText)?)
        };
        Self::parse(&text)
    }

    /// Check what [`parse`](Self::parse) would check, so that a string built in code formats
    /// to one that parses back equal: a non-empty ticket (if any), a non-empty transport id,
    /// at least one listener, ports 1..65535, non-empty addresses, bounded values without
    /// control characters.
    pub fn validate(&self) -> Result<(), ConnectionStringError> {
        if let Some(ticket) = &self.ticket {
            check_value(ticket, "<A ID> (the ticket)", true)?;
            if let Some(kh) = &self.kh {
                check_value(kh, "<A KH>", false)?;
            }
            if let Some(kh2) = &self.kh2 {
                check_value(kh2, "<A KH2>", false)?;
            }
        }
        check_value(&self.transport_id, "<T ID>", true)?;
        check_value(&self.sid, "<T SID>", false)?;
        check_listener_count(self.listeners.len(), self.ticket.is_some())?;
        for (i, l) in self.listeners.iter().enumerate() {
            if l.port == 0 {
                return Err(Error::BadPort {
                    index: i + 1,
                    value: "0".into(),
                });
            }
            check_value(
                &l.name,
                &format!("the address (N) of listener {}", i + 1),
                true,
            )?;
        }
        Ok(())
    }

    /// The text of a `.msrcIncident` file that xfreerdp 2.11 accepts as its first argument:
    /// the bare `<E>…</E>` string (FreeRDP takes a file without UPLOADINFO that contains one as
    /// Connection String 2), pure ASCII (non-ASCII characters as `&#x…;` references), with a
    /// trailing newline. See [`freerdp_problems`](Self::freerdp_problems) for what xfreerdp
    /// would still not like.
    pub fn to_msrc_incident(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write(&mut out, true);
        out.push('\n');
        out
    }

    /// The listeners xfreerdp 2.11 dials: it skips addresses of 8 bytes or fewer, and copies
    /// addresses raw (so one that needs escaping would reach it escaped).
    pub fn freerdp_usable(&self) -> Vec<&Listener> {
        self.listeners
            .iter()
            .filter(|l| freerdp_accepts_address(&l.name))
            .collect()
    }

    /// Why xfreerdp 2.11 would not use (all of) this string, one sentence each; empty when it
    /// would use all of it.
    pub fn freerdp_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.ticket {
            None => problems.push(
                "it has no <A ID=\"…\"/> ticket; xfreerdp needs one to join a sharing session"
                    .to_string(),
            ),
            Some(_) if self.kh.is_none() => problems.push(
                "its <A> has no KH attribute; xfreerdp 2.11 refuses an <A> without KH=\"…\""
                    .to_string(),
            ),
            Some(_) => {}
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if !freerdp_accepts_address(&l.name) {
                let why = if l.name.len() <= FREERDP_SKIPPED_ADDRESS_LEN {
                    "is 8 characters or shorter"
                } else {
                    "contains characters that need escaping"
                };
                problems.push(format!(
                    "listener {} ({}:{}) {why}: xfreerdp 2.11 skips it",
                    i + 1,
                    l.name,
                    l.port
                ));
            }
        }
        if !self.listeners.is_empty() && self.freerdp_usable().is_empty() {
            problems.push(
                "xfreerdp 2.11 would find no address to connect to (list a longer address such as 127.0.0.1 or a host name)"
                    .to_string(),
            );
        }
        problems
    }

    fn write(&self, out: &mut impl fmt::Write, ascii: bool) -> fmt::Result {
        let esc = |s| Escaped::new(s, ascii);
        out.write_str("<E>")?;
        if let Some(ticket) = &self.ticket {
            // KH before ID, as Windows writes it; FreeRDP 2.11 searches for both inside <A …/>.
            out.write_str("<A")?;
            if let Some(kh) = &self.kh {
                write!(out, " KH=\"{}\"", esc(kh))?;
            }
            if let Some(kh2) = &self.kh2 {
                write!(out, " KH2=\"{}\"", esc(kh2))?;
            }
            write!(out, " ID=\"{}\"/>", esc(ticket))?;
        }
        write!(
            out,
            "<C><T ID=\"{}\" SID=\"{}\">",
            esc(&self.transport_id),
            esc(&self.sid)
        )?;
        for l in &self.listeners {
            // Exactly `<L P="…" N="…"/>`: FreeRDP 2.11 matches this text literally.
            write!(out, "<L P=\"{}\" N=\"{}\"/>", l.port, esc(&l.name))?;
        }
        out.write_str("</T></C></E>")
    }
}

impl fmt::Display for ConnectionString {
    /// The single-line form: `<E><A KH="…" ID="…"/><C><T ID="1" SID="…"><L P="…" N="…"/></T></C></E>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn freerdp_accepts_address(name: &str) -> bool {
    name.len() > FREERDP_SKIPPED_ADDRESS_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii() && !matches!(b, b'&' | b'<' | b'>' | b'"'))
}

/// Attribute value escaping: `& < > "`, and with `ascii` every non-ASCII character as `&#x…;`.
struct Escaped<'a> {
    s: &'a str,
    ascii: bool,
}

impl<'a> Escaped<'a> {
    fn new(s: &'a str, ascii: bool) -> Self {
        Self { s, ascii }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.s.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                c if self.ascii && !c.is_ascii() => write!(f, "&#x{:X};", u32::from(c))?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

// --- Finding the connection string in a larger text ----------------------------------------

/// Where the `<E>` element starts: `<E` followed by `>`, `/` or whitespace (not `<EXTRA>`).
fn find_element_start(text: &str) -> Option<usize> {
    text.match_indices("<E").map(|(i, _)| i).find(|&i| {
        matches!(
            text.as_bytes().get(i + 2),
            Some(b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n')
        )
    })
}

/// The escaped `&lt;E&gt;…&lt;/E&gt;` inside an attribute value (up to the closing quote when
/// the end is missing, so that the reader reports where it was cut short).
fn find_escaped(text: &str) -> Option<&str> {
    let start = text.find("&lt;E&gt;")?;
    let rest = &text[start..];
    const END: &str = "&lt;/E&gt;";
    let len = match rest.find(END) {
        Some(end) => end + END.len(),
        None => rest.find(['"', '\'']).unwrap_or(rest.len()),
    };
    Some(&rest[..len])
}

/// A Connection String 1: the whole (trimmed) text, or the value of a file's `RCTICKET`.
fn find_cs1(text: &str) -> Result<Option<String>, Error> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.starts_with("65538,") {
        return Ok(Some(trimmed.to_owned()));
    }
    let Some(raw) = find_attribute_anywhere(text, "RCTICKET") else {
        return Ok(None);
    };
    let value = decode_entities(raw, || "RCTICKET".into())?;
    Ok(value.starts_with("65538,").then_some(value))
}

/// The raw value of the first `NAME = "…"` (or `'…'`) anywhere in `text`.
fn find_attribute_anywhere<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    for (i, _) in text.match_indices(name) {
        // A whole attribute name: preceded by whitespace.
        if !text[..i].ends_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let after = text[i + name.len()..].trim_start();
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let body = &after[1..];
        if let Some(end) = body.find(quote) {
            return Some(&body[..end]);
        }
    }
    None
}

fn has_encrypted_ticket(text: &str) -> bool {
    find_attribute_anywhere(text, "LHTICKET").is_some()
        || find_attribute_anywhere(text, "RCTICKETENCRYPTED").is_some_and(|v| v.trim() == "1")
}

fn decode_utf16(bytes: &[u8], word: fn([u8; 2]) -> u16) -> Result<String, Error> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Error::NotText);
    }
    let units = bytes.chunks_exact(2).map(|c| word([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| Error::NotText)
}

// --- The XML reader -------------------------------------------------------------------------

/// Names from the input shown in errors are cut to this many characters.
const SHOWN_NAME_LEN: usize = 40;

fn shown(name: &str) -> String {
    let mut out: String = name.chars().take(SHOWN_NAME_LEN).collect();
    if out.len() < name.len() {
        out.push('…');
    }
    out
}

/// One attribute as written: name and the raw (undecoded) value.
#[derive(Debug, Clone, Copy)]
struct Attr<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Debug)]
enum Token<'a> {
    Start {
        name: &'a str,
        attrs: Vec<Attr<'a>>,
        empty: bool,
    },
    End {
        name: &'a str,
    },
    Eof,
}

/// A cursor over the text; it only stops at ASCII bytes, so every slice it takes is on a
/// character boundary.
struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_byte(b: u8) -> bool {
    !is_space(b) && !matches!(b, b'<' | b'>' | b'/' | b'=' | b'"' | b'\'' | b'?' | b'!')
}

impl<'a> Reader<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    fn name(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// Move past `end`, which must follow; `what` names the construct for the error.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<(), Error> {
        match self.s[self.pos..].find(end) {
            Some(i) => {
                self.pos += i + end.len();
                Ok(())
            }
            None => Err(Error::Truncated { what: what.into() }),
        }
    }

    fn markup(&self, problem: impl Into<String>) -> Error {
        Error::Markup {
            offset: self.pos,
            problem: problem.into(),
        }
    }

    /// The next tag; text between tags is skipped, as are comments, `<?…?>` and `<!…>`.
    fn next(&mut self) -> Result<Token<'a>, Error> {
        loop {
            match self.s[self.pos..].find('<') {
                None => {
                    self.pos = self.s.len();
                    return Ok(Token::Eof);
                }
                Some(i) => self.pos += i,
            }
            let rest = &self.s[self.pos..];
            if rest.starts_with("<!--") {
                self.pos += 4;
                self.skip_past("-->", "a comment <!-- … -->")?;
            } else if rest.starts_with("<![CDATA[") {
                self.pos += 9;
                self.skip_past("]]>", "a CDATA section")?;
            } else if rest.starts_with("<?") {
                self.pos += 2;
                self.skip_past("?>", "a processing instruction <? … ?>")?;
            } else if rest.starts_with("<!") {
                self.pos += 2;
                self.skip_past(">", "a declaration <! … >")?;
            } else if rest.starts_with("</") {
                self.pos += 2;
                let name = self.name();
                if name.is_empty() {
                    return Err(self.markup("'</' is not followed by an element name"));
                }
                self.skip_space();
                return match self.peek() {
                    Some(b'>') => {
                        self.pos += 1;
                        Ok(Token::End { name })
                    }
                    None => Err(Error::Truncated {
                        what: format!("the end tag </{}", shown(name)),
                    }),
                    Some(_) => Err(self.markup(format!(
                        "unexpected character in the end tag </{}>",
                        shown(name)
                    ))),
                };
            } else {
                self.pos += 1;
                return self.start_tag();
            }
        }
    }

    fn start_tag(&mut self) -> Result<Token<'a>, Error> {
        let name = self.name();
        if name.is_empty() {
            return Err(self.markup("'<' is not followed by an element name"));
        }
        let mut attrs = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => {
                    return Err(Error::Truncated {
                        what: format!("the tag <{}", shown(name)),
                    });
                }
                Some(b'>') => {
                    self.pos += 1;
                    return Ok(Token::Start {
                        name,
                        attrs,
                        empty: false,
                    });
                }
                Some(b'/') => {
                    self.pos += 1;
                    return match self.peek() {
                        Some(b'>') => {
                            self.pos += 1;
                            Ok(Token::Start {
                                name,
                                attrs,
                                empty: true,
                            })
                        }
                        None => Err(Error::Truncated {
                            what: format!("the tag <{}", shown(name)),
                        }),
                        Some(_) => Err(self.markup(format!(
                            "'/' inside <{}> is not followed by '>'",
                            shown(name)
                        ))),
                    };
                }
                Some(_) => {}
            }
            let attr = self.name();
            if attr.is_empty() {
                return Err(self.markup(format!(
                    "unexpected character inside <{}> where an attribute name should be (is a quote missing?)",
                    shown(name)
                )));
            }
            self.skip_space();
            if self.peek() != Some(b'=') {
                if self.peek().is_none() {
                    return Err(Error::Truncated {
                        what: format!("the tag <{}", shown(name)),
                    });
                }
                return Err(Error::MissingEquals {
                    element: shown(name),
                    attribute: shown(attr),
                });
            }
            self.pos += 1;
            self.skip_space();
            let quote = match self.peek() {
                Some(q @ (b'"' | b'\'')) => q,
                None => {
                    return Err(Error::Truncated {
                        what: format!("the tag <{}", shown(name)),
                    });
                }
                Some(_) => {
                    return Err(Error::UnquotedValue {
                        element: shown(name),
                        attribute: shown(attr),
                    });
                }
            };
            self.pos += 1;
            let start = self.pos;
            match self.s[start..].find(char::from(quote)) {
                Some(len) => {
                    self.pos = start + len + 1;
                    attrs.push(Attr {
                        name: attr,
                        value: &self.s[start..start + len],
                    });
                }
                None => {
                    return Err(Error::Truncated {
                        what: format!(
                            "the value of {} in <{}> (no closing quote)",
                            shown(attr),
                            shown(name)
                        ),
                    });
                }
            }
        }
    }
}

/// The one value of attribute `name` in `element`'s attributes (an attribute given twice is
/// an error only when it is one we use).
fn attr<'a>(attrs: &[Attr<'a>], element: &str, name: &str) -> Result<Option<&'a str>, Error> {
    let mut found = attrs.iter().filter(|a| a.name == name);
    let first = found.next();
    if found.next().is_some() {
        return Err(Error::DuplicateAttribute {
            element: element.into(),
            attribute: name.into(),
        });
    }
    Ok(first.map(|a| a.value))
}

/// Decode `&amp; &lt; &gt; &quot; &apos; &#N; &#xN;`; anything else after `&` is an error.
fn decode_entities(raw: &str, what: impl Fn() -> String) -> Result<String, Error> {
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Short entities only: a ';' far away means a bare '&'.
        let semi = rest.bytes().take(12).position(|b| b == b';');
        let bad = |rest: &str| Error::BadEntity {
            what: what(),
            entity: rest.chars().take(12).collect(),
        };
        let Some(semi) = semi else {
            return Err(bad(rest));
        };
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let number = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                        .then(|| u32::from_str_radix(hex, 16).ok())
                        .flatten()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    (!dec.is_empty() && dec.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| dec.parse::<u32>().ok())
                        .flatten()
                } else {
                    None
                };
                number.and_then(char::from_u32).filter(|c| *c != '\0')
            }
        };
        let Some(c) = c else {
            return Err(Error::BadEntity {
                what: what(),
                entity: rest[..=semi].to_owned(),
            });
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Bounds and characters of a value we use.
fn check_value(value: &str, what: &str, required: bool) -> Result<(), Error> {
    if required && value.is_empty() {
        return Err(Error::EmptyValue { what: what.into() });
    }
    let len = value.chars().count();
    if len > MAX_VALUE_LEN {
        return Err(Error::ValueTooLong {
            what: what.into(),
            len,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Error::ControlCharacter { what: what.into() });
    }
    Ok(())
}

/// A used attribute: decoded and checked. `Ok(None)` when absent.
fn value(
    attrs: &[Attr<'_>],
    element: &str,
    name: &str,
    what: &str,
    required: bool,
) -> Result<Option<String>, Error> {
    let Some(raw) = attr(attrs, element, name)? else {
        return Ok(None);
    };
    let decoded = decode_entities(raw, || what.to_owned())?;
    check_value(&decoded, what, required)?;
    Ok(Some(decoded))
}

fn required(attrs: &[Attr<'_>], element: &str, name: &str, what: &str) -> Result<String, Error> {
    value(attrs, element, name, what, true)?
        .ok_or_else(|| Error::MissingAttribute { what: what.into() })
}

/// An invitation (it has a ticket) may list no address: its sharer only does reverse connect,
/// and the viewer listens. A viewer's reverse-connect string (no ticket) must name one.
fn check_listener_count(count: usize, has_ticket: bool) -> Result<(), Error> {
    match count {
        0 if has_ticket => Ok(()),
        0 => Err(Error::NoListener),
        n if n > MAX_LISTENERS => Err(Error::TooManyListeners { count: n }),
        _ => Ok(()),
    }
}

fn parse_port(raw: &str, index: usize) -> Result<u16, Error> {
    let bad = || Error::BadPort {
        index,
        value: raw.chars().take(SHOWN_NAME_LEN).collect(),
    };
    if raw.is_empty() || raw.len() > 5 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match raw.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(bad()),
    }
}

/// Parse the `<E>` element at the start of `s` (anything after `</E>` is ignored).
fn parse_cs2(s: &str) -> Result<ConnectionString, Error> {
    let mut reader = Reader::new(s);
    let mut stack: Vec<&str> = Vec::new();
    let mut a: Option<Vec<Attr<'_>>> = None;
    let mut c_seen = false;
    let mut t: Option<Vec<Attr<'_>>> = None;
    let mut ls: Vec<Vec<Attr<'_>>> = Vec::new();
    loop {
        match reader.next()? {
            Token::Start { name, attrs, empty } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                match (stack.as_slice(), name) {
                    ([], _) => {} // the <E> itself: we started there
                    (["E"], "A") => {
                        if a.is_some() {
                            return Err(Error::DuplicateElement("A"));
                        }
                        a = Some(attrs);
                    }
                    (["E"], "C") => {
                        if c_seen {
                            return Err(Error::DuplicateElement("C"));
                        }
                        c_seen = true;
                    }
                    (["E", "C"], "T") => {
                        if t.is_some() {
                            return Err(Error::DuplicateElement("T"));
                        }
                        t = Some(attrs);
                    }
                    (["E", "C", "T"], "L") => ls.push(attrs),
                    _ => {} // unknown elements, and known ones in unknown places
                }
                if !empty {
                    stack.push(name);
                } else if stack.is_empty() {
                    break; // <E/>
                }
            }
            Token::End { name } => {
                let Some(open) = stack.pop() else {
                    // Cannot happen: we stop when <E> closes.
                    break;
                };
                if open != name {
                    return Err(Error::MismatchedEndTag {
                        expected: shown(open),
                        found: shown(name),
                    });
                }
                if stack.is_empty() {
                    break;
                }
            }
            Token::Eof => {
                let inner = stack.last().copied().unwrap_or("E");
                return Err(Error::Truncated {
                    what: format!("<{}> (no </{}>)", shown(inner), shown(inner)),
                });
            }
        }
    }

    let (ticket, kh, kh2) = match &a {
        Some(attrs) => (
            Some(required(attrs, "A", "ID", "<A ID> (the ticket)")?),
            value(attrs, "A", "KH", "<A KH>", false)?,
            value(attrs, "A", "KH2", "<A KH2>", false)?,
        ),
        None => (None, None, None),
    };
    if !c_seen {
        return Err(Error::MissingElement("C"));
    }
    let Some(t) = t else {
        return Err(Error::MissingElement("T"));
    };
    let transport_id = required(&t, "T", "ID", "<T ID> (the transport)")?;
    let sid = value(&t, "T", "SID", "<T SID>", false)?.unwrap_or_default();
    check_listener_count(ls.len(), ticket.is_some())?;
    let mut listeners = Vec::with_capacity(ls.len());
    for (i, attrs) in ls.iter().enumerate() {
        let index = i + 1;
        let Some(port) = attr(attrs, "L", "P")? else {
            return Err(Error::MissingAttribute {
                what: format!("the port (P) of listener {index}"),
            });
        };
        let port = parse_port(port, index)?;
        let name = required(
            attrs,
            "L",
            "N",
            &format!("the address (N) of listener {index}"),
        )?;
        listeners.push(Listener { port, name });
    }
    Ok(ConnectionString {
        ticket,
        kh,
        kh2,
        transport_id,
        sid,
        listeners,
    })
}

/// `65538,1,addr:port;…,*,RASessionID,*,*,protocolSpecificParms` (MS-RAI 2.2.1): the ticket is
/// field 5, KH field 8; there is no SID (taken as "0").
fn parse_cs1(s: &str) -> Result<ConnectionString, Error> {
    let problem = |p: String| Error::ConnectionString1 { problem: p };
    let fields: Vec<&str> = s.split(',').collect();
    if fields.len() != 8 {
        return Err(problem(format!(
            "has {} comma-separated fields, expected 8",
            fields.len()
        )));
    }
    if fields[1] != "1" {
        return Err(problem(format!(
            "protocol type is {:?}, expected \"1\"",
            shown(fields[1])
        )));
    }
    for i in [3, 5, 6] {
        if fields[i] != "*" {
            return Err(problem(format!(
                "field {} is {:?}, expected \"*\"",
                i + 1,
                shown(fields[i])
            )));
        }
    }
    let ticket = fields[4].to_owned();
    check_value(&ticket, "the RASessionID (field 5, the ticket)", true)?;
    let kh = Some(fields[7].to_owned()).filter(|k| !k.is_empty());
    if let Some(kh) = &kh {
        check_value(kh, "the protocol parameters (field 8, KH)", false)?;
    }
    let mut listeners = Vec::new();
    for (i, entry) in fields[2].split(';').filter(|e| !e.is_empty()).enumerate() {
        let index = i + 1;
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(problem(format!(
                "address {index} ({:?}) has no :port",
                shown(entry)
            )));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = parse_port(port, index)?;
        check_value(host, &format!("the address of listener {index}"), true)?;
        listeners.push(Listener {
            port,
            name: host.to_owned(),
        });
    }
    check_listener_count(listeners.len(), false)?;
    Ok(ConnectionString {
        ticket: Some(ticket),
        kh,
        kh2: None,
        transport_id: "1".into(),
        sid: "0".into(),
        listeners,
    })
}

/// For fuzzing and the robustness test: run both readers on `data` (as lossy UTF-8 text and
/// as a file's bytes) and check what they accept. Panics on a violation (that is its
/// purpose); never otherwise.
#[doc(hidden)]
pub fn check_parsers(data: &[u8]) {
    check_parse_text(&String::from_utf8_lossy(data));
    check_parse_bytes(data);
}

/// [`check_parsers`] for [`ConnectionString::parse`] alone.
#[doc(hidden)]
pub fn check_parse_text(text: &str) {
    if let Ok(s) = ConnectionString::parse(text) {
        check_accepted(&s);
    }
}

/// [`check_parsers`] for [`ConnectionString::parse_bytes`] alone.
#[doc(hidden)]
pub fn check_parse_bytes(data: &[u8]) {
    if let Ok(s) = ConnectionString::parse_bytes(data) {
        check_accepted(&s);
    }
}

/// What was accepted is valid and formats to text that reads back equal.
fn check_accepted(s: &ConnectionString) {
    assert_eq!(s.validate(), Ok(()), "accepted but invalid: {s:?}");
    assert!(s.ticket.is_some() || (s.kh.is_none() && s.kh2.is_none()));
    assert!(s.listeners.len() <= MAX_LISTENERS);
    let file = s.to_msrc_incident();
    assert!(file.is_ascii());
    for text in [s.to_string(), file] {
        // Escaping can make the text longer than what was read (a raw '<' in a value
        // becomes "&lt;"); only text within the input bound must read back.
        let expected = if text.len() <= MAX_INPUT_LEN {
            Ok(s)
        } else {
            Err(&ConnectionStringError::TooLarge { len: text.len() })
        };
        assert_eq!(ConnectionString::parse(&text).as_ref(), expected, "{text}");
    }
    let _ = (s.freerdp_usable(), s.freerdp_problems());
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIN_IPV6: &str = r#"<E><A KH="BNRjdu97DyczQSRuMRrDWoue+HA=" ID="+ULZ6ifjoCa6cGPMLQiGHRPwkg6VyJqGwxMnO6GcelwUh9a6/FBq3It5ADSndmLL"/><C><T ID="1" SID="0"><L P="49228" N="fe80::1032:53d9:5a01:909b%3"/><L P="49229" N="fe80::3d8f:9b2d:6b4e:6aa%6"/><L P="49230" N="192.168.1.200"/><L P="49231" N="169.254.6.170"/></T></C></E>"#;

    const WIN_MULTILINE: &str = "<E>\n<A KH=\"YiKwWUY8Ioq5NB3wAQHSbs5kwrM=\"\nKH2=\"sha256:wKSAkAV3sBfa9WpuRFJcP9q1twJc6wOBuoJ9tsyXwpk=\"\nID=\"8rYm30RBW8/4dAWoUsWbFCF5jno/7jr5tNpHQc2goLbw4uuBBJvLsU02YYLlBMg5\"/>\n<C>\n<T ID=\"1\" SID=\"1440550163\">\n<L P=\"49749\" N=\"2001:4898:1a:5:79e2:3356:9b22:3470\"/>\n<L P=\"49751\" N=\"172.31.250.64\"/>\n</T>\n</C>\n</E>";

    fn sample() -> ConnectionString {
        ConnectionString {
            ticket: Some("tick/et+=".into()),
            kh: Some("a2V5aGFzaA==".into()),
            kh2: None,
            transport_id: "1".into(),
            sid: "42".into(),
            listeners: vec![
                Listener {
                    port: 3390,
                    name: "127.0.0.1".into(),
                },
                Listener {
                    port: 65535,
                    name: "::1".into(),
                },
            ],
        }
    }

    fn err(text: &str) -> ConnectionStringError {
        ConnectionString::parse(text).unwrap_err()
    }

    #[test]
    fn display_is_the_exact_single_line_form() {
        assert_eq!(
            sample().to_string(),
            r#"<E><A KH="a2V5aGFzaA==" ID="tick/et+="/><C><T ID="1" SID="42"><L P="3390" N="127.0.0.1"/><L P="65535" N="::1"/></T></C></E>"#
        );
        let mut s = sample();
        s.kh2 = Some("sha256:x".into());
        assert!(
            s.to_string()
                .starts_with(r#"<E><A KH="a2V5aGFzaA==" KH2="sha256:x" ID="tick/et+="/><C>"#)
        );
        s.ticket = None;
        assert_eq!(
            s.to_string(),
            r#"<E><C><T ID="1" SID="42"><L P="3390" N="127.0.0.1"/><L P="65535" N="::1"/></T></C></E>"#
        );
    }

    #[test]
    fn format_then_parse_is_equal() {
        let mut s = sample();
        assert_eq!(ConnectionString::parse(&s.to_string()), Ok(s.clone()));
        s.kh2 = Some("sha256:abc".into());
        s.ticket = Some("a&b<c>d\"e'f ü".into());
        s.listeners[0].name = "hôst&name".into();
        s.validate().unwrap();
        assert_eq!(ConnectionString::parse(&s.to_string()), Ok(s.clone()));
        assert_eq!(
            ConnectionString::parse(&s.to_msrc_incident()),
            Ok(s.clone())
        );
        // The reverse-connect form, without <A>.
        s.ticket = None;
        s.kh = None;
        s.kh2 = None;
        assert_eq!(ConnectionString::parse(&s.to_string()), Ok(s.clone()));
        assert_eq!(s.to_string().parse::<ConnectionString>(), Ok(s));
    }

    #[test]
    fn msrc_incident_is_ascii_with_a_newline_and_what_freerdp_needs() {
        let mut s = sample();
        s.listeners[0].name = "hôst.example".into();
        let file = s.to_msrc_incident();
        assert!(file.is_ascii(), "{file}");
        assert!(file.ends_with("</E>\n"));
        assert_eq!(file.matches('\n').count(), 1);
        for needle in [
            "<E>",
            "<C>",
            "<A ",
            "/>",
            "KH=\"",
            "ID=\"",
            "<L P=\"3390\" N=\"",
        ] {
            assert!(file.contains(needle), "{needle} missing from {file}");
        }
        assert!(file.contains("h&#xF4;st.example"), "{file}");
        assert_eq!(ConnectionString::parse(&file), Ok(s));
        assert_eq!(
            ConnectionString::parse(&sample().to_msrc_incident()).unwrap(),
            sample()
        );
    }

    #[test]
    fn windows_example_with_ipv6_scopes() {
        let s = ConnectionString::parse(WIN_IPV6).unwrap();
        assert_eq!(s.ticket.as_deref().map(str::len), Some(64));
        assert_eq!(s.kh.as_deref(), Some("BNRjdu97DyczQSRuMRrDWoue+HA="));
        assert_eq!(s.kh2, None);
        assert_eq!((s.transport_id.as_str(), s.sid.as_str()), ("1", "0"));
        assert_eq!(
            s.listeners
                .iter()
                .map(|l| (l.port, l.name.as_str()))
                .collect::<Vec<_>>(),
            [
                (49228, "fe80::1032:53d9:5a01:909b%3"),
                (49229, "fe80::3d8f:9b2d:6b4e:6aa%6"),
                (49230, "192.168.1.200"),
                (49231, "169.254.6.170")
            ]
        );
        // Formatting it again gives Windows' text back byte for byte.
        assert_eq!(s.to_string(), WIN_IPV6);
    }

    #[test]
    fn windows_example_on_many_lines_with_kh2() {
        let s = ConnectionString::parse(WIN_MULTILINE).unwrap();
        assert_eq!(s.kh.as_deref(), Some("YiKwWUY8Ioq5NB3wAQHSbs5kwrM="));
        assert_eq!(
            s.kh2.as_deref(),
            Some("sha256:wKSAkAV3sBfa9WpuRFJcP9q1twJc6wOBuoJ9tsyXwpk=")
        );
        assert!(s.ticket.as_deref().unwrap().starts_with("8rYm30RBW8/"));
        assert_eq!(s.sid, "1440550163");
        assert_eq!(
            s.listeners,
            [
                Listener {
                    port: 49749,
                    name: "2001:4898:1a:5:79e2:3356:9b22:3470".into()
                },
                Listener {
                    port: 49751,
                    name: "172.31.250.64".into()
                }
            ]
        );
        assert_eq!(ConnectionString::parse(&s.to_string()), Ok(s));
    }

    #[test]
    fn tolerates_spacing_order_unknowns_and_comments() {
        let text = "<?xml version=\"1.0\"?>\n<!-- invitation -->\n<E >\r\n\t<X a='1'><A\nZ=\"?\"  ID = 'the&amp;ticket'\tKH=\"k\" /></X>\n<A ID=\"t\" KH=\"k\" U=\"unknown\"/>\n<C><Extra/><T SID=\"7\" ID=\"1\" Q=\"\"><L N=\"host.example\" P=\"3390\" U=\"x\"></L><!-- no --><L P='1' N='10.0.0.1'/></T></C>\n</E >trailing text";
        let s = ConnectionString::parse(text).unwrap();
        // The <A> inside the unknown <X> is not ours.
        assert_eq!(s.ticket.as_deref(), Some("t"));
        assert_eq!(s.sid, "7");
        assert_eq!(
            s.listeners,
            [
                Listener {
                    port: 3390,
                    name: "host.example".into()
                },
                Listener {
                    port: 1,
                    name: "10.0.0.1".into()
                }
            ]
        );
    }

    #[test]
    fn reverse_connect_string_without_a_and_sid() {
        let s = ConnectionString::parse(
            r#"<E><C><T ID="1"><L P="5000" N="viewer.example"/></T></C></E>"#,
        )
        .unwrap();
        assert_eq!((s.ticket, s.kh, s.sid.as_str()), (None, None, ""));
        assert_eq!(s.listeners.len(), 1);
    }

    #[test]
    fn finds_the_string_inside_an_invitation_file() {
        let wrapped = format!(
            "<?xml version=\"1.0\"?>\n<UPLOADINFO TYPE=\"Escalated\"><UPLOADDATA USERNAME=\"jeff\" RCTICKET=\"{}\" PassStub=\"x\"/></UPLOADINFO>\n",
            WIN_IPV6
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        );
        assert_eq!(
            ConnectionString::parse(&wrapped),
            ConnectionString::parse(WIN_IPV6)
        );
        // Raw, with text around it.
        let around = format!("Invitation:\r\n{WIN_MULTILINE}\r\n-- end --\r\n");
        assert_eq!(
            ConnectionString::parse(&around),
            ConnectionString::parse(WIN_MULTILINE)
        );
        // Escaped but cut short: says so.
        let cut = &wrapped[..wrapped.find("&lt;/T&gt;").unwrap()];
        assert!(matches!(
            ConnectionString::parse(cut),
            Err(ConnectionStringError::Truncated { .. })
        ));
    }

    #[test]
    fn connection_string_1_alone_and_in_a_file() {
        let cs1 = "65538,1,172.31.243.138:3389;MIKE_HOME:3389,*,Uj7RpOlU80SibpRwRZ9+z1vbh7nIgVn89X1AiKp15Vc=,*,*,RcfwecK8dpcT1fjZ6iQ5M0+q7iU=";
        let s = ConnectionString::parse(&format!("{cs1}\n")).unwrap();
        assert_eq!(
            s.ticket.as_deref(),
            Some("Uj7RpOlU80SibpRwRZ9+z1vbh7nIgVn89X1AiKp15Vc=")
        );
        assert_eq!(s.kh.as_deref(), Some("RcfwecK8dpcT1fjZ6iQ5M0+q7iU="));
        assert_eq!(
            s.listeners,
            [
                Listener {
                    port: 3389,
                    name: "172.31.243.138".into()
                },
                Listener {
                    port: 3389,
                    name: "MIKE_HOME".into()
                }
            ]
        );
        let file = format!(
            "<?xml version=\"1.0\" encoding=\"Unicode\" ?>\n<UPLOADINFO TYPE=\"Escalated\">\n<UPLOADDATA USERNAME=\"jeff\" RCTICKET=\"{cs1}\" RCTICKETENCRYPTED=\"0\" PassStub=\"o2*5GdBARK_JBB\" L=\"0\" />\n</UPLOADINFO>"
        );
        assert_eq!(ConnectionString::parse(&file), Ok(s.clone()));
        // Windows writes these files as UTF-16 with a byte-order mark.
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(file.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(ConnectionString::parse_bytes(&utf16), Ok(s.clone()));
        let mut utf8 = vec![0xEF, 0xBB, 0xBF];
        utf8.extend_from_slice(file.as_bytes());
        assert_eq!(ConnectionString::parse_bytes(&utf8), Ok(s));
        assert_eq!(
            ConnectionString::parse_bytes(&[0xFF, 0xFE, 0x00]),
            Err(ConnectionStringError::NotText)
        );
        assert_eq!(
            ConnectionString::parse_bytes(&[0xC3, 0x28]),
            Err(ConnectionStringError::NotText)
        );

        for (bad, needle) in [
            ("65538,1,h:1,*,id,*,*", "7 comma-separated fields"),
            ("65538,2,h:1,*,id,*,*,kh", "protocol type"),
            ("65538,1,h:1,x,id,*,*,kh", "field 4"),
            ("65538,1,h,*,id,*,*,kh", "no :port"),
            ("65538,1,h:0,*,id,*,*,kh", "port \"0\""),
            ("65538,1,,*,id,*,*,kh", "no <L"),
            ("65538,1,h:1,*,,*,*,kh", "RASessionID"),
        ] {
            let e = err(bad).to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn an_encrypted_file_is_named_as_such() {
        let file = "<UPLOADINFO TYPE=\"Escalated\"><UPLOADDATA USERNAME=\"x\" LHTICKET=\"20FCC407AA53E95F\" RCTICKET=\"QUJD\" RCTICKETENCRYPTED=\"1\" PassStub=\"x\"/></UPLOADINFO>";
        assert_eq!(err(file), ConnectionStringError::Encrypted);
    }

    #[test]
    fn rejects_with_specific_errors() {
        use ConnectionStringError as E;
        let good = sample().to_string();
        assert_eq!(err(""), E::NotFound);
        assert_eq!(err("hello <EXTRA/> world"), E::NotFound);
        let no_address = good.replace(r#"<L P="3390" N="127.0.0.1"/><L P="65535" N="::1"/>"#, "");
        assert!(ConnectionString::parse(&no_address).is_ok_and(|c| c.listeners.is_empty()), "an invitation for reverse connect only");
        let a_start = no_address.find("<A ").unwrap();
        let a_end = a_start + no_address[a_start..].find("/>").unwrap() + 2;
        let viewer_string = format!("{}{}", &no_address[..a_start], &no_address[a_end..]);
        assert_eq!(err(&viewer_string), E::NoListener, "a viewer's string must name an address");
        assert_eq!(
            err(&good.replace(r#"P="65535""#, r#"P="0""#)).to_string(),
            "listener 2 has port \"0\": expected 1..65535"
        );
        for port in [
            "65536",
            "-1",
            "+5",
            " 5",
            "0x10",
            "",
            "99999999999999999999",
        ] {
            assert!(
                matches!(
                    err(&good.replace("3390", port)),
                    E::BadPort { index: 1, .. }
                ),
                "{port:?}"
            );
        }
        assert!(matches!(
            err(&good[..good.len() - 4]),
            E::Truncated { ref what } if what.contains("<E>")
        ));
        assert!(matches!(
            err("<E><C><T ID=\"1\"><L P=\"1\" N=\"abc"),
            E::Truncated { ref what } if what.contains("value of N")
        ));
        assert!(matches!(
            err("<E><C><T ID=\"1\"><L P=\"1\" N=\"abc\""),
            E::Truncated { ref what } if what.contains("tag <L")
        ));
        assert_eq!(
            err(&good.replace(r#"P="3390""#, "P=3390")),
            E::UnquotedValue {
                element: "L".into(),
                attribute: "P".into()
            }
        );
        assert!(matches!(
            err(&good.replace(r#"P="3390""#, r#"P="3390"#)),
            E::MissingEquals { .. }
        ));
        assert!(matches!(
            err(&good.replace("</T>", "</C>")),
            E::MismatchedEndTag { .. }
        ));
        assert!(matches!(
            err(&good.replace(r#"ID="tick/et+=""#, r#"ID="""#)),
            E::EmptyValue { ref what } if what.contains("ticket")
        ));
        assert!(matches!(
            err(&good.replace(r#" ID="tick/et+=""#, "")),
            E::MissingAttribute { ref what } if what.contains("ticket")
        ));
        assert!(matches!(
            err(&good.replace(r#" N="::1""#, "")),
            E::MissingAttribute { ref what } if what.contains("listener 2")
        ));
        assert!(matches!(
            err(&good.replace(r#"N="::1""#, r#"N="""#)),
            E::EmptyValue { ref what } if what.contains("listener 2")
        ));
        assert!(matches!(
            err(&good.replace(r#"P="3390""#, r#"P="3390" P="3391""#)),
            E::DuplicateAttribute { .. }
        ));
        assert_eq!(
            err(&good.replace("<C>", "<C></C><C>")),
            E::DuplicateElement("C")
        );
        assert_eq!(
            err(&good.replace(
                "<C><T ID=\"1\" SID=\"42\">",
                "<C><T ID=\"1\"></T><T ID=\"1\">"
            )),
            E::DuplicateElement("T")
        );
        assert_eq!(err("<E><A ID=\"x\"/></E>"), E::MissingElement("C"));
        assert_eq!(err("<E><C></C></E>"), E::MissingElement("T"));
        assert!(matches!(
            err(&good.replace("tick/et+=", "a&b")),
            E::BadEntity { .. }
        ));
        assert!(matches!(
            err(&good.replace("tick/et+=", "&#0;")),
            E::BadEntity { .. }
        ));
        assert!(matches!(
            err(&good.replace("127.0.0.1", "127.0.0.1&#10;")),
            E::ControlCharacter { .. }
        ));
        assert!(matches!(
            err(&good.replace("tick/et+=", &"x".repeat(MAX_VALUE_LEN + 1))),
            E::ValueTooLong { len, .. } if len == MAX_VALUE_LEN + 1
        ));
        assert!(matches!(err("<E>< C></E>"), E::Markup { offset: 4, .. }));
        assert_eq!(
            err(&format!("{}{good}", " ".repeat(MAX_INPUT_LEN))),
            E::TooLarge {
                len: MAX_INPUT_LEN + good.len()
            }
        );
        let deep = format!("<E>{}", "<x>".repeat(MAX_DEPTH + 1));
        assert_eq!(err(&deep), E::TooDeep);
        // Unknown attributes are ignored even when repeated or oddly escaped.
        assert!(ConnectionString::parse(&good.replace("<C>", "<C q=\"&bogus\" q=\"\">")).is_ok());
    }

    #[test]
    fn validate_matches_what_parse_accepts() {
        let mut s = sample();
        assert_eq!(s.validate(), Ok(()));
        s.listeners[1].port = 0;
        assert!(matches!(
            s.validate(),
            Err(ConnectionStringError::BadPort { index: 2, .. })
        ));
        let mut s = sample();
        s.listeners.clear();
        assert_eq!(s.validate(), Ok(()), "a reverse-connect-only invitation lists no address");
        s.ticket = None;
        assert_eq!(s.validate(), Err(ConnectionStringError::NoListener), "a viewer's string must name one");
        let mut s = sample();
        s.ticket = Some(String::new());
        assert!(s.validate().is_err());
        assert!(ConnectionString::parse(&s.to_string()).is_err());
    }

    #[test]
    fn freerdp_usability() {
        let s = ConnectionString::parse(WIN_IPV6).unwrap();
        assert_eq!(s.freerdp_usable().len(), 4);
        assert!(s.freerdp_problems().is_empty());
        let mut s = sample();
        s.listeners.push(Listener {
            port: 1,
            name: "10.0.0.1".into(),
        });
        assert_eq!(
            s.freerdp_usable()
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>(),
            ["127.0.0.1"]
        );
        let problems = s.freerdp_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("listener 2 (::1:65535)"),
            "{problems:?}"
        );
        assert!(problems[1].contains("10.0.0.1"), "{problems:?}");
        s.listeners.remove(0);
        s.kh = None;
        let problems = s.freerdp_problems();
        assert!(problems[0].contains("KH"), "{problems:?}");
        assert!(
            problems.last().unwrap().contains("no address"),
            "{problems:?}"
        );
        s.ticket = None;
        assert!(s.freerdp_problems()[0].contains("ticket"));
    }

    #[test]
    fn too_many_listeners() {
        let mut s = sample();
        s.listeners = (1..=MAX_LISTENERS as u16 + 1)
            .map(|port| Listener {
                port,
                name: "127.0.0.1".into(),
            })
            .collect();
        let many = ConnectionStringError::TooManyListeners {
            count: MAX_LISTENERS + 1,
        };
        assert_eq!(s.validate(), Err(many.clone()));
        assert_eq!(ConnectionString::parse(&s.to_string()), Err(many.clone()));
        let cs1 = format!("65538,1,{},*,id,*,*,kh", "h:1;".repeat(MAX_LISTENERS + 1));
        assert_eq!(ConnectionString::parse(&cs1), Err(many));
        s.listeners.pop();
        assert_eq!(ConnectionString::parse(&s.to_string()), Ok(s));
    }

    /// xorshift64*: deterministic pseudo-random numbers without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Tokens that steer mutations into the interesting corners of the grammar.
    const TOKENS: &[&str] = &[
        "<E>",
        "</E>",
        "<A ",
        "/>",
        "<C>",
        "</C>",
        "<T ID=\"1\" SID=\"0\">",
        "</T>",
        "<L P=\"3390\" N=\"127.0.0.1\"/>",
        "<L P=\"",
        "\" N=\"",
        "KH=\"",
        "ID=\"",
        "&lt;E&gt;",
        "&lt;/E&gt;",
        "&amp;",
        "&#x",
        "&#",
        ";",
        "\"",
        "'",
        "=",
        "<",
        ">",
        "<!--",
        "-->",
        "<?",
        "?>",
        "<![CDATA[",
        "65538,1,",
        ",*,",
        ":3389;",
        "RCTICKET=\"",
        "LHTICKET=\"",
        "\n",
        " ",
        "\u{feff}",
        "ü",
        "中",
        "\u{10FFFF}",
        "%3",
        "65535",
        "0",
        "99999",
    ];

    fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(7) {
                0 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    input[i] ^= 1 << rng.below(8);
                }
                1 => input.insert(at, rng.next() as u8),
                2 if at < input.len() => {
                    let end = (at + 1 + rng.below(16)).min(input.len());
                    input.drain(at..end);
                }
                3 => {
                    let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    input.splice(at..at, token.iter().copied());
                }
                4 => input.truncate(at),
                5 if at < input.len() => {
                    let end = (at + 1 + rng.below(64)).min(input.len());
                    let copy = input[at..end].to_vec();
                    input.splice(end..end, copy);
                }
                _ => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    let end = (from + rng.below(64)).min(other.len());
                    input.splice(at..at, other[from..end].iter().copied());
                }
            }
        }
    }

    /// What the fuzz targets do, deterministically and briefly, so that CI runs it: random
    /// bytes, and mutations of real connection strings and invitation files. No input may
    /// panic, and whatever is accepted must read back equal after formatting.
    #[test]
    fn readers_survive_random_and_mutated_input() {
        let escaped = WIN_MULTILINE
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        let seeds: Vec<Vec<u8>> = [
            sample().to_string(),
            sample().to_msrc_incident(),
            WIN_IPV6.to_string(),
            WIN_MULTILINE.to_string(),
            format!("<UPLOADINFO><UPLOADDATA RCTICKET=\"{escaped}\" PassStub=\"x\"/></UPLOADINFO>"),
            "65538,1,172.31.243.138:3389;[::1]:3389,*,ID,*,*,KH".to_string(),
            "<UPLOADINFO><UPLOADDATA RCTICKET=\"65538,1,h.example:1,*,I,*,*,K\" RCTICKETENCRYPTED=\"0\"/></UPLOADINFO>".to_string(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        let mut rng = Rng(0x5EED_CAFE_F00D_BEEF);
        let mut accepted = 0;
        for round in 0..6000 {
            let input = if round % 4 == 0 {
                let len = rng.below(300);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut input = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &seeds, &mut input);
                input
            };
            check_parsers(&input);
            // UTF-16 with a byte-order mark, as Windows saves invitation files.
            if round % 8 == 1 {
                let mut utf16 = vec![0xFF, 0xFE];
                utf16.extend(
                    String::from_utf8_lossy(&input)
                        .encode_utf16()
                        .flat_map(u16::to_le_bytes),
                );
                check_parsers(&utf16);
            }
            accepted += usize::from(ConnectionString::parse_bytes(&input).is_ok());
        }
        // The mutations must keep some inputs valid, or the round-trip checks test nothing.
        assert!(accepted > 300, "only {accepted} inputs were accepted");
        // Big inputs: just under and over the bound, deep nesting, many attributes.
        check_parsers(format!("<E>{}", "<x a=\"1\">".repeat(8000)).as_bytes());
        check_parsers(
            format!(
                "<E><C><T ID=\"1\"><L P=\"1\" N=\"h\" {}/></T></C></E>",
                "a=\"\" ".repeat(10000)
            )
            .as_bytes(),
        );
        check_parsers(&vec![b'<'; MAX_INPUT_LEN]);
        check_parsers(&vec![b'&'; MAX_INPUT_LEN + 1]);
        check_parsers("&lt;E&gt;".repeat(7000).as_bytes());
    }
}
