//! A string that must not be printed.

/// A secret value (a password, or a whole DSN read from a variable). `Debug` and
/// `Display` print `***`; the value itself is only readable inside this crate.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it holds a control character (a line break from a second line of
    /// its file, say), which no password has and no pgpass line can carry.
    pub fn has_control_character(&self) -> bool {
        self.0.contains(char::is_control)
    }

    /// The value, for a client library that must sign with it (the S3 secret key
    /// reaching `object_store`'s request signer). Never print it, log it or put it
    /// on a command line or in a child's environment.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
