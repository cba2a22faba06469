//! The three connection-string syntaxes: libpq URLs, PgJDBC URLs and libpq
//! `key=value` strings. All of them end in the same [`Builder`], which checks each
//! field once.

use crate::error::{ParseError, displayable_name};
use crate::secret::Secret;
use crate::{Dsn, PARAMETERS, Parameter, SslMode};

/// No real connection string is longer; a huge value is a mistake or an attack.
const MAX_LEN: usize = 16 * 1024;

pub(crate) fn parse(text: &str) -> Result<Dsn, ParseError> {
    if text.len() > MAX_LEN {
        return Err(ParseError::TooLong { limit: MAX_LEN });
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(rest) = strip_prefix_ignore_case(text, "jdbc:postgresql://") {
        return parse_url(rest, Flavour::Jdbc);
    }
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = strip_prefix_ignore_case(text, scheme) {
            return parse_url(rest, Flavour::Libpq);
        }
    }
    if text.contains("://") || !text.contains('=') {
        return Err(ParseError::UnsupportedFormat);
    }
    parse_key_value(text)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Libpq,
    Jdbc,
}

fn parse_url(rest: &str, flavour: Flavour) -> Result<Dsn, ParseError> {
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut builder = Builder::default();
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            builder.set("user", decode(user, "user")?)?;
            if let Some(password) = password {
                builder.set("password", decode(password, "password")?)?;
            }
            host_port
        }
        None => authority,
    };
    if host_port.contains(',') {
        return Err(ParseError::MultipleHosts);
    }
    let (host, port) = split_host_port(host_port)?;
    builder.set("host", decode(host, "host")?)?;
    if let Some(port) = port {
        builder.set("port", port.to_owned())?;
    }
    builder.set("dbname", decode(path, "database name")?)?;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key, "parameter name")?;
        let value = decode(value, "parameter value")?;
        match flavour {
            Flavour::Libpq => builder.set(&key, value)?,
            Flavour::Jdbc => builder.set_jdbc(&key, value)?,
        }
    }
    builder.finish()
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or empty.
fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), ParseError> {
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(ParseError::UnterminatedIpv6)?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or(ParseError::InvalidPort),
        };
    }
    Ok(match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    })
}

fn parse_key_value(text: &str) -> Result<Dsn, ParseError> {
    let mut builder = Builder::default();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ParseError::MissingEquals);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or(ParseError::UnterminatedQuote)?),
                    Some(c) => value.push(c),
                    None => return Err(ParseError::UnterminatedQuote),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        builder.set(&key, value)?;
    }
    builder.finish()
}

/// Collects fields from any syntax; each may be given once.
#[derive(Default)]
struct Builder {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    dbname: Option<String>,
    parameters: Vec<(Parameter, String)>,
    ignored: Vec<String>,
    jdbc_ssl: bool,
}

impl Builder {
    /// A libpq keyword. Empty values count as not given, as in libpq.
    fn set(&mut self, key: &str, value: String) -> Result<(), ParseError> {
        let field = match key {
            "host" => "host",
            "port" => "port",
            "user" => "user",
            "password" => "password",
            "dbname" => "database name",
            _ => "parameter value",
        };
        if value.chars().any(char::is_control) {
            return Err(ParseError::ControlCharacter { field });
        }
        if value.is_empty() {
            return Ok(());
        }
        match key {
            "host" => set_once(&mut self.host, value, key),
            "port" => {
                let port = value
                    .parse()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or(ParseError::InvalidPort)?;
                set_once(&mut self.port, port, key)
            }
            "user" => set_once(&mut self.user, value, key),
            "password" => set_once(&mut self.password, Secret::new(value), key),
            "dbname" => set_once(&mut self.dbname, value, key),
            _ => {
                let parameter = PARAMETERS
                    .iter()
                    .find(|parameter| parameter.name == key)
                    .ok_or_else(|| ParseError::unsupported(key))?;
                if self.parameters.iter().any(|(known, _)| known == parameter) {
                    return Err(ParseError::DuplicateParameter {
                        name: displayable_name(parameter.name),
                    });
                }
                if parameter.name == "sslmode" {
                    // libpq refuses an unknown mode too; a typo must not connect
                    // with less protection than the operator asked for.
                    SslMode::parse(&value)?;
                }
                self.parameters.push((*parameter, value));
                Ok(())
            }
        }
    }

    /// A PgJDBC URL parameter: the ones with a libpq meaning are translated, the
    /// driver-only ones (`currentSchema`, `prepareThreshold`, …) are set aside.
    fn set_jdbc(&mut self, key: &str, value: String) -> Result<(), ParseError> {
        let libpq_key = match key {
            "user" | "password" | "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "options" => {
                key
            }
            "ApplicationName" => "application_name",
            "connectTimeout" => "connect_timeout",
            "gssEncMode" => "gssencmode",
            "channelBinding" => "channel_binding",
            "ssl" => {
                self.jdbc_ssl = value == "true";
                return Ok(());
            }
            _ => {
                self.ignored.push(displayable_name(key));
                return Ok(());
            }
        };
        self.set(libpq_key, value)
    }

    fn finish(mut self) -> Result<Dsn, ParseError> {
        let has_sslmode = self
            .parameters
            .iter()
            .any(|(parameter, _)| parameter.name == "sslmode");
        if self.jdbc_ssl && !has_sslmode {
            self.set("sslmode", "require".to_owned())?;
        }
        Ok(Dsn {
            host: self.host,
            port: self.port,
            user: self.user,
            password: self.password,
            dbname: self.dbname,
            parameters: self.parameters,
            ignored: self.ignored,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateParameter {
            name: displayable_name(name),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// Percent-decoding as libpq does it: `%XX` only (a `+` stays a `+`).
fn decode(text: &str, field: &'static str) -> Result<String, ParseError> {
    let error = ParseError::InvalidPercentEncoding { field };
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .ok_or_else(|| error.clone())?;
            let hex = std::str::from_utf8(hex).map_err(|_| error.clone())?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| error.clone())?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| error)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}
