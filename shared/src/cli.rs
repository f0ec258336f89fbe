//! The command-line flags every binary takes for its NATS connection ([`NatsArgs`], flattened
//! into each binary's arguments), applied over the `[nats]` settings from the file and
//! `JETWORK_NATS__*` variables.
//!
//! Several flags also read a `NATS_*` variable, the names the `nats` CLI uses (`NATS_URL`,
//! `NATS_USER`, `NATS_PASSWORD`, `NATS_CREDS`, `NATS_NKEY`, `NATS_CA`, `NATS_CERT`,
//! `NATS_KEY`), plus `NATS_TOKEN`. Secrets are better passed that way (or in the file) than
//! as flags, which other users of the machine can read in the process list; `--help` never
//! shows their values.

use std::fmt;
use std::path::PathBuf;

use clap::Args;

use crate::config::{redact_url, LogConfig, LogFormat, NatsConfig};

/// Connection flags, shared by `jetwork-master`, `jetwork-worker` and `jetwork-frontend`.
#[derive(Clone, Default, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma separated; `user:password@host` or `token@host` accepted.
    #[arg(long, env = "NATS_URL", global = true, hide_env_values = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// User name (with --nats-password).
    #[arg(long, env = "NATS_USER", global = true, value_name = "USER")]
    pub nats_user: Option<String>,
    /// Password of --nats-user (prefer the NATS_PASSWORD variable: flags show in `ps`).
    #[arg(
        long,
        env = "NATS_PASSWORD",
        global = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub nats_password: Option<String>,
    /// Authentication token (prefer the NATS_TOKEN variable: flags show in `ps`).
    #[arg(long, env = "NATS_TOKEN", global = true, hide_env_values = true, value_name = "TOKEN")]
    pub nats_token: Option<String>,
    /// File holding a user nkey seed (SU…).
    #[arg(long, env = "NATS_NKEY", global = true, value_name = "FILE")]
    pub nats_nkey_seed: Option<PathBuf>,
    /// JWT credentials file (.creds).
    #[arg(long, env = "NATS_CREDS", global = true, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// PEM root certificate(s) to trust (implies TLS).
    #[arg(long, env = "NATS_CA", global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --tls-key).
    #[arg(long, env = "NATS_CERT", global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "NATS_KEY", global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require TLS even without --tls-ca (the server is checked against the system roots).
    #[arg(long, global = true)]
    pub tls_required: bool,
    /// Prefix of reply subjects (default: `_INBOX_<user>` with a user name, else `_INBOX`).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub inbox_prefix: Option<String>,
    /// Connection name shown by the server (default: the binary's name).
    #[arg(long, global = true, value_name = "NAME")]
    pub connection_name: Option<String>,
}

impl NatsArgs {
    /// Applies the flags given over `cfg`. An authentication flag replaces the configured
    /// method (a `--nats-token` drops a configured user and password, and so on; user and
    /// password count as one method, so `--nats-password` alone keeps the configured user).
    /// Check the result with [`NatsConfig::validate`].
    pub fn apply(&self, cfg: &mut NatsConfig) {
        let user_password = self.nats_user.is_some() || self.nats_password.is_some();
        let token = self.nats_token.is_some();
        let nkey = self.nats_nkey_seed.is_some();
        let creds = self.nats_creds.is_some();
        if user_password || token || nkey || creds {
            if !user_password {
                cfg.user = None;
                cfg.password = None;
            }
            if !token {
                cfg.token = None;
            }
            if !nkey {
                cfg.nkey_seed_file = None;
            }
            if !creds {
                cfg.credentials = None;
            }
        }
        if let Some(url) = &self.nats_url {
            cfg.url.clone_from(url);
        }
        set(&mut cfg.user, &self.nats_user);
        set(&mut cfg.password, &self.nats_password);
        set(&mut cfg.token, &self.nats_token);
        set(&mut cfg.nkey_seed_file, &self.nats_nkey_seed);
        set(&mut cfg.credentials, &self.nats_creds);
        set(&mut cfg.tls_ca_file, &self.tls_ca);
        set(&mut cfg.tls_cert_file, &self.tls_cert);
        set(&mut cfg.tls_key_file, &self.tls_key);
        set(&mut cfg.inbox_prefix, &self.inbox_prefix);
        set(&mut cfg.name, &self.connection_name);
        cfg.tls_required |= self.tls_required;
    }
}

/// The logging flag, the same on every binary, applied over `[log]` (and `JETWORK_LOG__*`).
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log lines as `text` or `json` (overrides `log.format`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl LogArgs {
    /// Applies the flag, if given, over `cfg`.
    pub fn apply(&self, cfg: &mut LogConfig) {
        if let Some(format) = self.log_format {
            cfg.format = format;
        }
    }
}

/// Sets `slot` from `flag` when the flag was given.
fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
    if let Some(value) = flag {
        *slot = Some(value.clone());
    }
}

/// Written by hand so that passwords and tokens are never printed.
impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("nats_user", &self.nats_user)
            .field("nats_password", &hidden(&self.nats_password))
            .field("nats_token", &hidden(&self.nats_token))
            .field("nats_nkey_seed", &self.nats_nkey_seed)
            .field("nats_creds", &self.nats_creds)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_required", &self.tls_required)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

/// A binary's exit: success, or the error's words and causes on one line on stderr (an
/// error returned from `main` would be printed with a backtrace whenever `RUST_BACKTRACE` is
/// set, which says nothing to an operator).
pub fn exit_code<E: fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn parse(args: &[&str]) -> NatsArgs {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap().nats
    }

    #[test]
    fn flags_override_and_an_auth_flag_replaces_the_configured_method() {
        let mut cfg = NatsConfig {
            token: Some("file-token".into()),
            tls_ca_file: Some("/etc/ca.pem".into()),
            ..Default::default()
        };
        parse(&[
            "--nats-url=nats://h:1",
            "--nats-user=app",
            "--nats-password=pw",
            "--tls-cert=/c.pem",
            "--tls-key=/k.pem",
            "--inbox-prefix=_INBOX_app",
            "--connection-name=svc",
            "--tls-required",
        ])
        .apply(&mut cfg);
        assert_eq!(cfg.url, "nats://h:1");
        assert_eq!((cfg.user.as_deref(), cfg.password.as_deref()), (Some("app"), Some("pw")));
        assert_eq!(cfg.token, None, "the flags' user/password replace the file's token");
        assert_eq!(cfg.tls_ca_file.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(cfg.tls_cert_file.as_deref(), Some(std::path::Path::new("/c.pem")));
        assert_eq!(cfg.inbox_prefix.as_deref(), Some("_INBOX_app"));
        assert_eq!(cfg.name.as_deref(), Some("svc"));
        assert!(cfg.tls_required);

        let mut cfg = NatsConfig { user: Some("app".into()), ..Default::default() };
        parse(&["--nats-password=pw"]).apply(&mut cfg);
        assert_eq!(cfg.user.as_deref(), Some("app"), "a password alone keeps the user");
        parse(&["--nats-creds=/x.creds"]).apply(&mut cfg);
        assert_eq!((cfg.user, cfg.password), (None, None));
        assert!(cfg.credentials.is_some());
    }

    #[test]
    fn no_flags_change_nothing_and_debug_hides_secrets() {
        let before = NatsConfig { user: Some("app".into()), ..Default::default() };
        let mut cfg = before.clone();
        NatsArgs::default().apply(&mut cfg);
        assert_eq!(cfg, before);
        let args = parse(&["--nats-url=nats://u:secret@h:1", "--nats-token=secret"]);
        let shown = format!("{args:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
