//! What can go wrong: setting TLS up (a configuration error, before any connection)
//! and the handshake (a connection error, named by [`failure_of`]).

use std::error::Error as _;
use std::path::PathBuf;

use dsn::SslMode;
use rustls::CertificateError;

/// Why a [`MakeTls`](crate::MakeTls) could not be built, or a handshake not begun.
/// The messages name the DSN parameter to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `sslrootcert` names a file that cannot be read.
    #[error("sslrootcert: cannot read {}: {source}", path.display())]
    RootCertUnreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `sslrootcert` names a file with no PEM certificate in it (empty, DER, a key).
    #[error("sslrootcert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    RootCertNotPem {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in `sslrootcert` cannot serve as a trust anchor.
    #[error("sslrootcert: {} holds a certificate that cannot be a root: {reason}", path.display())]
    RootCertInvalid {
        /// The file.
        path: PathBuf,
        /// What rustls found wrong with it.
        reason: rustls::Error,
    },
    /// `sslmode=verify-ca` without `sslrootcert`.
    #[error(
        "sslmode=verify-ca needs sslrootcert (the CA that signed the server's certificate): \
         checked against the public roots without the host name, any publicly issued certificate would pass; \
         or use sslmode=verify-full"
    )]
    VerifyCaNeedsRootCert,
    /// `sslrootcert=system` with a mode that does not check the host name.
    #[error("sslrootcert=system needs sslmode=verify-full, not {mode}")]
    SystemRootsNeedVerifyFull {
        /// The mode given.
        mode: SslMode,
    },
    /// `verify-full` against the system roots, and the system has none.
    #[error(
        "no system root certificates found: install the ca-certificates package, or set sslrootcert to the server's CA"
    )]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
    /// A handshake was attempted under `sslmode=disable`.
    #[error("TLS is disabled by sslmode=disable")]
    Disabled,
    /// The host is not a name or address a certificate could be checked against.
    #[error("the host is not a valid TLS server name")]
    InvalidHostName,
}

/// Why a TLS connection to the server failed, as an operator fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The server does not accept TLS, and `sslmode` requires it.
    Refused,
    /// The certificate does not chain to a trusted root, or has expired or been
    /// revoked.
    Untrusted,
    /// The certificate is valid but names another host.
    WrongHost,
    /// Any other handshake failure (protocol versions, ciphers, a broken peer).
    Other,
}

/// Names the TLS failure behind a connection error, or `None` when TLS was not
/// the problem.
pub fn failure_of(error: &tokio_postgres::Error) -> Option<HandshakeFailure> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(rustls) = rustls_error(cause) {
            return Some(match rustls {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => HandshakeFailure::WrongHost,
                rustls::Error::InvalidCertificate(_) => HandshakeFailure::Untrusted,
                _ => HandshakeFailure::Other,
            });
        }
        if cause.is::<Error>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<Error>())
        {
            return Some(HandshakeFailure::Other);
        }
        // tokio-postgres reports a server that answers "no TLS" with this fixed
        // message of its own (not the server's text) and no error kind callers
        // can see; a test against a real server without TLS pins it.
        if cause.source().is_none() && cause.to_string() == "server does not support TLS" {
            return Some(HandshakeFailure::Refused);
        }
        source = cause.source();
    }
    None
}

fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    cause.downcast_ref::<rustls::Error>().or_else(|| {
        cause
            .downcast_ref::<std::io::Error>()?
            .get_ref()?
            .downcast_ref::<rustls::Error>()
    })
}
