//! Why a connection attempt failed, in an operator's words, and whether trying again can
//! help. async-nats reports a failed attempt as a `ConnectError` whose kind is often just
//! "IO error"; the real cause (a refused TCP connection, a rustls certificate verdict, an
//! alert from the server) sits in its source chain, so this walks the chain to find it.

use std::error::Error as StdError;
use std::io;

use async_nats::rustls::{self, AlertDescription, CertificateError};
use async_nats::ConnectErrorKind;

use crate::config::Auth;

/// What went wrong, as far as it decides what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The settings or files cannot work (bad URL, unreadable or invalid key material).
    Settings,
    /// The server refused the credentials.
    Authorization,
    /// TLS could not be set up or the handshake failed (certificates, TLS on one side only).
    Tls,
    /// Nobody listens there (yet).
    Refused,
    /// No answer in time.
    TimedOut,
    /// The host name did not resolve.
    Dns,
    /// Anything else (a connection closed early, a server error such as too many
    /// connections).
    Other,
}

impl Cause {
    /// Whether retrying cannot help: the operator has to change something.
    pub fn is_permanent(self) -> bool {
        matches!(self, Cause::Settings | Cause::Authorization | Cause::Tls)
    }
}

/// Classifies a failed attempt made with `auth`.
pub(crate) fn classify(err: &async_nats::ConnectError, auth: &Auth) -> (Cause, String) {
    match err.kind() {
        ConnectErrorKind::AuthorizationViolation => (Cause::Authorization, authorization(auth)),
        ConnectErrorKind::Authentication => (
            Cause::Settings,
            format!(
                "invalid nkey seed or credentials: cannot sign the server's nonce with {}",
                auth.describe()
            ),
        ),
        ConnectErrorKind::ServerParse => {
            (Cause::Settings, format!("invalid server URL: {}", detail(err)))
        }
        ConnectErrorKind::Dns => (Cause::Dns, format!("DNS lookup failed: {}", detail(err))),
        ConnectErrorKind::TimedOut => (Cause::TimedOut, "timed out waiting for the server".into()),
        ConnectErrorKind::Tls => (Cause::Tls, format!("TLS: {}", detail(err))),
        ConnectErrorKind::Io | ConnectErrorKind::MaxReconnects => io_cause(err),
    }
}

fn authorization(auth: &Auth) -> String {
    match auth {
        Auth::None => "authorization violation: the server requires credentials and none were \
                       given (nats.user/password, token, nkey_seed_file or credentials)"
            .to_owned(),
        auth => format!("authorization violation: the server refused {}", auth.describe()),
    }
}

/// The cause of an "IO error": TCP, TLS or the server's reply, found in the source chain.
fn io_cause(err: &async_nats::ConnectError) -> (Cause, String) {
    let chain = chain(err);
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return (Cause::Tls, tls_words(tls));
    }
    if let Some(io) = chain.iter().find_map(|e| e.downcast_ref::<io::Error>()) {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                return (
                    Cause::Refused,
                    "connection refused (is nats-server running there?)".into(),
                )
            }
            io::ErrorKind::TimedOut => return (Cause::TimedOut, "timed out".into()),
            _ => {}
        }
    }
    (Cause::Other, detail(err))
}

/// rustls' verdicts, in words, with what to check.
fn tls_words(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: unknown certificate authority: the server's certificate is not signed by a CA \
             this client trusts (set nats.tls_ca_file to the CA that signed it)"
                .into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "TLS: the server's certificate is not valid for the host name in nats.url".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the server's certificate has expired".into(),
        rustls::Error::InvalidCertificate(other) => {
            format!("TLS: invalid server certificate: {other:?}")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "TLS: certificate required: the server wants a client certificate (set \
             nats.tls_cert_file and nats.tls_key_file)"
                .into()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        ) => format!("TLS: the server rejected the client certificate ({alert:?})"),
        rustls::Error::InvalidMessage(_) => {
            format!("TLS: handshake failed ({err}); does the server have TLS enabled?")
        }
        other => format!("TLS: {other}"),
    }
}

/// The error and its sources, including what an `io::Error` wraps (which `io::Error`'s own
/// `source` skips).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => {
                let inner: &(dyn StdError + 'static) = inner;
                out.push(inner);
                inner.source()
            }
            None => e.source(),
        };
    }
    out
}

/// The most specific text in the chain (the kind alone says little: "IO error").
fn detail(err: &async_nats::ConnectError) -> String {
    match err.source() {
        Some(source) => source.to_string(),
        None => err.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::ConnectError;

    fn user() -> Auth {
        Auth::UserPassword { user: "app".into(), password: "secret".into() }
    }

    #[test]
    fn authorization_names_the_method_not_the_secret() {
        let err = ConnectError::new(ConnectErrorKind::AuthorizationViolation);
        let (cause, text) = classify(&err, &user());
        assert_eq!(cause, Cause::Authorization);
        assert_eq!(
            text,
            "authorization violation: the server refused user \"app\" and its password"
        );
        let (_, text) = classify(&err, &Auth::None);
        assert!(text.contains("none were given"), "{text}");
    }

    #[test]
    fn refused_and_timeouts_are_transient() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let (cause, text) = classify(&ConnectError::from(refused), &Auth::None);
        assert_eq!((cause, cause.is_permanent()), (Cause::Refused, false));
        assert!(text.starts_with("connection refused"), "{text}");
        let (cause, _) = classify(&ConnectError::new(ConnectErrorKind::TimedOut), &Auth::None);
        assert!(!cause.is_permanent());
        let dns = ConnectError::with_source(ConnectErrorKind::Dns, "no such host");
        assert_eq!(classify(&dns, &Auth::None).1, "DNS lookup failed: no such host");
    }

    #[test]
    fn certificate_verdicts_inside_io_errors_are_found() {
        let wrap =
            |e: rustls::Error| ConnectError::from(io::Error::new(io::ErrorKind::InvalidData, e));
        let unknown_ca = wrap(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        let (cause, text) = classify(&unknown_ca, &Auth::None);
        assert_eq!(cause, Cause::Tls);
        assert!(text.starts_with("TLS: unknown certificate authority"), "{text}");
        let required = wrap(rustls::Error::AlertReceived(AlertDescription::CertificateRequired));
        let (cause, text) = classify(&required, &Auth::None);
        assert!(cause.is_permanent());
        assert!(text.starts_with("TLS: certificate required"), "{text}");
    }
}
