//! Removing passwords from free text before it is logged.
//!
//! Log lines carry text we do not control: `pg_dump`'s stderr, error chains, echoed
//! configuration. Whatever looks like a credential in a connection string is
//! replaced by `***`: the password of a URL's user info (`scheme://user:***@`) and
//! the value of any `password=` key (libpq `key=value`, URL query, `PGPASSWORD=`).
//! Redaction errs on the side of removing too much.

/// `text` with every DSN-like password replaced by `***`.
pub fn redact(text: &str) -> String {
    redact_key_values(&redact_user_info(text))
}

/// `scheme://user:secret@host` → `scheme://user:***@host`. The password runs to the
/// last `@` before white space, so `/`, `?` or `@` inside it are covered too.
fn redact_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..token_end];
        if let Some(at) = token.rfind('@')
            && let Some(colon) = token[..at].find(':')
        {
            out.push_str(&token[..=colon]);
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// `password=secret` (any case, quoted or not) → `password=***`. An unquoted value
/// runs to the next white space, a quoted one to its closing quote.
fn redact_key_values(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    while let Some(found) = lower[position..].find(KEY) {
        let key_end = position + found + KEY.len();
        let after_key = &text[key_end..];
        let spaces = after_key.len() - after_key.trim_start_matches([' ', '\t']).len();
        if !after_key[spaces..].starts_with('=') {
            out.push_str(&text[position..key_end]);
            position = key_end;
            continue;
        }
        let value_start = key_end + spaces + 1;
        let value = &text[value_start..];
        let value_start = value_start + (value.len() - value.trim_start_matches([' ', '\t']).len());
        let value_end = value_start + value_length(&text[value_start..]);
        out.push_str(&text[position..value_start]);
        out.push_str("***");
        position = value_end;
    }
    out.push_str(&text[position..]);
    out
}

/// Bytes of a `key=value` value: quoted (with backslash escapes) or up to white space.
fn value_length(value: &str) -> usize {
    let mut chars = value.char_indices();
    match chars.next() {
        Some((_, quote @ ('\'' | '"'))) => {
            let mut escaped = false;
            for (index, c) in chars {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    c if c == quote => return index + c.len_utf8(),
                    _ => {}
                }
            }
            value.len()
        }
        _ => value.find(char::is_whitespace).unwrap_or(value.len()),
    }
}
