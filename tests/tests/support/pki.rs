//! A throw-away PKI for the TLS tests: a CA, a server certificate for 127.0.0.1 and
//! localhost, and a client certificate, written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files, removed with the directory when dropped.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Generates everything.
    pub fn generate() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir().context("temp dir for the certificates")?;
        let write = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).with_context(|| format!("writing {name}"))?;
            Ok(path)
        };

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "jetwork test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = write("ca.pem", ca_params.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let (server_cert, server_key) = leaf(
            &issuer,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            |cert, key| Ok((write("server.pem", cert)?, write("server-key.pem", key)?)),
        )?;
        let (client_cert, client_key) = leaf(
            &issuer,
            &["jetwork-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            |cert, key| Ok((write("client.pem", cert)?, write("client-key.pem", key)?)),
        )?;
        Ok(Pki { _dir: dir, ca, server_cert, server_key, client_cert, client_key })
    }

    /// The `tls { … }` block of a nats-server configuration; `verify` requires client
    /// certificates signed by the CA.
    pub fn server_block(&self, verify: bool) -> String {
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n  timeout: 5\n}}\n",
            quoted(&self.server_cert),
            quoted(&self.server_key),
            quoted(&self.ca),
        )
    }
}

/// A certificate for `names` signed by `issuer`, handed to `store` as PEM (cert, key).
fn leaf<T>(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    store: impl FnOnce(String, String) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    store(cert.pem(), key.serialize_pem())
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}
