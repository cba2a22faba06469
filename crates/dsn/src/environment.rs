//! Configuration sources: a snapshot of the environment, `NAME_FILE` secrets, and
//! the precedence between several DSN variables.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use crate::Dsn;
use crate::error::Error;
use crate::secret::Secret;

/// A secret file larger than this is a mistake (a wrong path), not a secret.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A snapshot of environment variables, so that resolution is a pure function of it.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, Vec<u8>>,
}

impl Environment {
    /// The current process's environment.
    pub fn from_process() -> Environment {
        use std::os::unix::ffi::OsStringExt as _;
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_vec())))
            .collect();
        Environment { vars }
    }

    /// An environment with exactly these variables (for tests and embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        let vars = pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
            .collect();
        Environment { vars }
    }

    /// A plain (non-secret) variable: `None` when unset or empty.
    pub fn var(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.vars.get(name).filter(|value| !value.is_empty()) {
            Some(value) => std::str::from_utf8(value)
                .map(Some)
                .map_err(|_| Error::NotUtf8 {
                    variable: name.to_owned(),
                }),
            None => Ok(None),
        }
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE` (trailing line
    /// breaks, `\n` or `\r\n`, trimmed; a leading byte-order mark or a second line
    /// refused). `None` when neither is set and non-empty; an error when both are,
    /// or when the file cannot be read or is empty.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, Error> {
        let direct = self.var(name)?;
        let file_variable = format!("{name}_FILE");
        let file = crate::setting(self.var(&file_variable)?, &file_variable)?;
        match (direct, file) {
            (Some(_), Some(_)) => Err(Error::BothSet {
                variable: name.to_owned(),
            }),
            (Some(value), None) => Ok(Some(Secret::new(value.to_owned()))),
            (None, Some(path)) => read_secret_file(name, PathBuf::from(path)),
            (None, None) => Ok(None),
        }
    }
}

fn read_secret_file(name: &str, path: PathBuf) -> Result<Option<Secret>, Error> {
    let unreadable = |reason| Error::SecretFile {
        variable: name.to_owned(),
        path: path.clone(),
        reason,
    };
    let file = std::fs::File::open(&path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::SecretFileTooLarge {
            variable: name.to_owned(),
            path,
            limit: MAX_SECRET_FILE,
        });
    }
    let mut value = String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        variable: name.to_owned(),
    })?;
    if value.starts_with('\u{feff}') {
        return Err(Error::SecretFileByteOrderMark {
            variable: name.to_owned(),
            path,
        });
    }
    // `\r\n` too: libpq's own password file reader trims both.
    let trimmed = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(trimmed);
    if value.is_empty() {
        return Err(Error::SecretFileEmpty {
            variable: name.to_owned(),
            path,
        });
    }
    if value.contains(['\n', '\r']) {
        return Err(Error::SecretFileLines {
            variable: name.to_owned(),
            path,
        });
    }
    Ok(Some(Secret::new(value)))
}

/// The DSN that won, and which variable it came from.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The base name of the winning variable (`SESSION_DATABASE_URL` also when the
    /// value came from `SESSION_DATABASE_URL_FILE`). Safe to log and record.
    pub variable: &'static str,
    /// The parsed DSN.
    pub dsn: Dsn,
}

/// The first of `variables` that is set and non-empty (directly or through
/// `NAME_FILE`), parsed. `Ok(None)` when none is set.
pub fn resolve(env: &Environment, variables: &[&'static str]) -> Result<Option<Resolved>, Error> {
    for &variable in variables {
        if let Some(secret) = env.secret(variable)? {
            let dsn = Dsn::parse(secret.expose()).map_err(|reason| Error::Invalid {
                variable: variable.to_owned(),
                reason,
            })?;
            return Ok(Some(Resolved { variable, dsn }));
        }
    }
    Ok(None)
}
