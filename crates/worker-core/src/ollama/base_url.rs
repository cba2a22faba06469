//! `OLLAMA_BASE_URL` as a validated value. A proxied Ollama may sit behind basic
//! authentication (`https://user:pass@host`), so the URL can hold a secret:
//! `Debug` and `Display` show `***@` in place of the credentials, and the raw text
//! leaves this type only towards the HTTP client.

/// An `http://` or `https://` URL with a host; trailing slashes trimmed.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    url: String,
}

/// Why a text is not an Ollama base URL. Never includes the text, which may hold
/// credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaseUrlError {
    /// No `scheme://`, e.g. `ollama:11434`.
    #[error(
        "expected an http:// or https:// URL such as http://host:11434 (the scheme is missing)"
    )]
    NoScheme,
    /// A scheme other than `http` or `https`.
    #[error("expected an http:// or https:// URL such as http://host:11434")]
    NotHttp,
    /// Nothing between `://` and the port or path.
    #[error("the URL has no host")]
    NoHost,
    /// White space or a control character anywhere.
    #[error("the URL contains white space or a control character")]
    Whitespace,
}

impl BaseUrl {
    /// Validates `text`. The error names what is wrong, never the value.
    pub fn parse(text: &str) -> Result<BaseUrl, BaseUrlError> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(BaseUrlError::NoScheme);
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(BaseUrlError::NotHttp);
        }
        let rest = rest.trim_end_matches('/');
        let url = format!("{scheme}://{rest}");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(BaseUrlError::NoHost);
        }
        if url
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(BaseUrlError::Whitespace);
        }
        Ok(BaseUrl { url })
    }

    /// The URL for the HTTP client, credentials included.
    pub(crate) fn api(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for BaseUrl {
    /// The URL with `user:password@` replaced by `***@`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => write!(f, "{scheme}://***@{}", &rest[at + 1..]),
            None => f.write_str(&self.url),
        }
    }
}

impl std::fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::BaseUrl;

    #[test]
    fn credentials_never_show() {
        let url = BaseUrl::parse("https://admin:hunter2@ollama.internal:11434/").unwrap();
        assert_eq!(url.to_string(), "https://***@ollama.internal:11434");
        assert_eq!(
            format!("{url:?}"),
            "BaseUrl(https://***@ollama.internal:11434)"
        );
        assert_eq!(url.api(), "https://admin:hunter2@ollama.internal:11434");
    }

    #[test]
    fn operator_typos_are_refused_without_echoing_the_value() {
        for text in [
            "ollama:11434",
            "hunter2@ollama:11434",
            "ftp://ollama",
            "http://",
            "http://user:hunter2@",
            "http://:11434",
            "http://oll ama:11434",
            "",
        ] {
            let error = BaseUrl::parse(text).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{text:?}: {error}");
            assert!(text.len() < 8 || !error.contains(text), "{text:?}: {error}");
        }
        assert!(BaseUrl::parse("HTTP://ollama:11434").is_ok());
    }
}
