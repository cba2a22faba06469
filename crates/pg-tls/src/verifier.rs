//! What is checked of the server's certificate, one rustls configuration per mode.
//!
//! `verify-full` uses rustls's own `WebPkiServerVerifier` unchanged. The weaker
//! modes need a verifier rustls does not ship: libpq's `require` accepts any
//! certificate, and `verify-ca` checks the chain but not the name. Both still verify
//! the handshake signatures, so the server must hold the key of the certificate it
//! shows.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// What the client checks of the server's certificate.
pub(crate) enum Checks {
    /// Encryption without authentication (`prefer`, `require` without a root).
    Nothing,
    /// The chain up to one of these roots (`verify-ca`, or a weaker mode with
    /// `sslrootcert`).
    Chain(RootCertStore),
    /// The chain and the host name (`verify-full`).
    ChainAndHost(RootCertStore),
}

pub(crate) fn client_config(checks: Checks) -> Result<ClientConfig, Error> {
    // The provider is passed in, not installed process-wide: a library must not
    // decide that for the program it is linked into.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(Error::Setup)?;
    let roots = match checks {
        Checks::ChainAndHost(roots) => {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| Error::Setup(rustls::Error::General(error.to_string())))?;
            return Ok(builder.with_webpki_verifier(verifier).with_no_client_auth());
        }
        Checks::Chain(roots) => Some(roots),
        Checks::Nothing => None,
    };
    let verifier = LibpqVerifier {
        roots,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// libpq's `require` (no roots) and `verify-ca` (roots, no host name).
#[derive(Debug)]
struct LibpqVerifier {
    roots: Option<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
