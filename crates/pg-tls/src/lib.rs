//! TLS for tokio-postgres clients, over rustls, with the rules of libpq's `sslmode`.
//!
//! An operator who writes `?sslmode=verify-full&sslrootcert=/run/secrets/ca.pem` into
//! a DSN expects what `psql` does with the same string. [`MakeTls`] is the
//! `tokio_postgres::tls::MakeTlsConnect` that gives exactly that, for the worker's
//! pool, its LISTEN connection and `check` alike:
//!
//! | `sslmode` | TLS | certificate chain | host name |
//! |---|---|---|---|
//! | `disable` | never | — | — |
//! | `allow`, `prefer` | if the server offers it | checked only when `sslrootcert` is given | not checked |
//! | `require` | always | checked only when `sslrootcert` is given (libpq's rule) | not checked |
//! | `verify-ca` | always | checked against `sslrootcert` | not checked |
//! | `verify-full` | always | checked against `sslrootcert`, else the system roots | must name the host |
//!
//! Whether TLS is attempted at all is the client's `ssl_mode`, which
//! `dsn::Dsn::to_tokio_postgres` sets from the same DSN; this crate decides what
//! is checked once TLS is up.
//!
//! Two decisions go beyond libpq, both because the looser reading would accept a
//! stranger's certificate without anyone noticing:
//!
//! - `verify-ca` without `sslrootcert` is refused. Against the system's public roots,
//!   a chain check that ignores the host name accepts any publicly issued
//!   certificate for any site.
//! - `sslrootcert=system` (the public roots, as libpq 16 spells it) requires
//!   `verify-full`, as libpq does.
//!
//! The handshake's own signatures are always verified, whatever the mode: without a
//! chain check the connection is encrypted but not authenticated, never less.
//! Channel binding (SCRAM-SHA-256-PLUS) is not offered; `verify-full` is what
//! defeats a man in the middle.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let dsn = dsn::Dsn::parse(
//!     "postgres://gustav_worker@db.internal/app?sslmode=verify-full&sslrootcert=/run/secrets/db-ca.pem",
//! )?;
//! let tls = pg_tls::MakeTls::for_dsn(&dsn)?;
//! let (client, connection) = dsn.to_tokio_postgres()?.connect(tls).await?;
//! tokio::spawn(connection);
//! client.simple_query("select 1").await?;
//! # Ok(())
//! # }
//! ```
//!
//! A failed handshake reaches the caller as a `tokio_postgres::Error` whose source
//! chain holds the `rustls::Error` (see [`failure_of`] to name it).

mod error;
mod stream;
mod verifier;

use std::path::Path;
use std::sync::Arc;

use dsn::{Dsn, SslMode};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

pub use error::{Error, HandshakeFailure, failure_of};
pub use stream::TlsStream;

/// The value of `sslrootcert` that means "the system's root certificates".
pub const SYSTEM_ROOTS: &str = "system";

/// Makes a TLS connector per connection, checking what the `sslmode` asks for.
/// Cheap to clone: the rustls configuration is shared.
#[derive(Clone)]
pub struct MakeTls {
    /// `None` under `sslmode=disable`: any attempt at TLS is an error.
    client: Option<Arc<ClientConfig>>,
}

impl MakeTls {
    /// The connector for a DSN's `sslmode` and `sslrootcert`.
    pub fn for_dsn(dsn: &Dsn) -> Result<MakeTls, Error> {
        MakeTls::new(dsn.ssl_mode(), dsn.parameter("sslrootcert"))
    }

    /// The connector for an `sslmode` and an optional `sslrootcert` (a PEM file with
    /// one or more CA certificates, or [`SYSTEM_ROOTS`]).
    pub fn new(mode: SslMode, root_cert: Option<&str>) -> Result<MakeTls, Error> {
        if mode == SslMode::Disable {
            return Ok(MakeTls { client: None });
        }
        let checks = match (mode, root_cert) {
            (SslMode::VerifyFull, None | Some(SYSTEM_ROOTS)) => {
                verifier::Checks::ChainAndHost(system_roots()?)
            }
            (_, Some(SYSTEM_ROOTS)) => return Err(Error::SystemRootsNeedVerifyFull { mode }),
            (SslMode::VerifyFull, Some(path)) => {
                verifier::Checks::ChainAndHost(roots_from_file(Path::new(path))?)
            }
            (SslMode::VerifyCa, None) => return Err(Error::VerifyCaNeedsRootCert),
            (_, Some(path)) => verifier::Checks::Chain(roots_from_file(Path::new(path))?),
            (_, None) => verifier::Checks::Nothing,
        };
        let client = verifier::client_config(checks)?;
        Ok(MakeTls {
            client: Some(Arc::new(client)),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Self::Error> {
        // tokio-postgres asks for a connector before it knows whether the server
        // speaks TLS, with an empty name for unix sockets: a bad name may never
        // matter, so it is an error only when a handshake needs it.
        Ok(Connect {
            client: self.client.clone(),
            server_name: ServerName::try_from(domain.to_owned()).ok(),
        })
    }
}

/// The connector for one connection, made by [`MakeTls`].
pub struct Connect {
    client: Option<Arc<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<TlsStream<S>, std::io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let client = self.client.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::Unsupported, Error::Disabled)
            })?;
            let server_name = self.server_name.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, Error::InvalidHostName)
            })?;
            let stream = tokio_rustls::TlsConnector::from(client)
                .connect(server_name, stream)
                .await?;
            Ok(TlsStream::new(stream))
        })
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|source| Error::RootCertUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| Error::RootCertNotPem {
            path: path.to_owned(),
        })?;
        roots.add(cert).map_err(|reason| Error::RootCertInvalid {
            path: path.to_owned(),
            reason,
        })?;
    }
    if roots.is_empty() {
        return Err(Error::RootCertNotPem {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    // Unreadable entries of the system store are skipped, as every TLS client does;
    // an empty store is the error that matters.
    let (added, _unusable) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        return Err(Error::NoSystemRoots);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
