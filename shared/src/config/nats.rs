//! The `[nats]` section: where the servers are and how to prove who we are to them (user and
//! password, token, nkey seed, JWT credentials, TLS client certificate), plus the rules that
//! keep those settings coherent, checked at load so a mistake is reported before anything
//! connects. [`NatsConfig::resolve`] turns the settings into what [`crate::connect`] needs.
//!
//! Secrets (password, token, credentials in the URL) never appear in `Debug` output or in
//! error messages: settings structs are logged and printed in places.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::nats_url::{self, UrlAuth};
use super::ConfigError;

/// How to reach NATS.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated. `user:password@host` or `token@host` is accepted.
    pub url: String,
    /// Connection name shown by the server (`nats server report connections`); each binary
    /// has its own default.
    pub name: Option<String>,
    /// User name (user/password authentication).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// File holding a user nkey seed (`SU…`).
    pub nkey_seed_file: Option<PathBuf>,
    /// JWT credentials file (`.creds`, NATS decentralised auth).
    pub credentials: Option<PathBuf>,
    /// PEM file with the root certificate(s) to trust instead of the system's; implies
    /// `tls_required`.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `tls_key_file`); implies `tls_required`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Require TLS even without `tls_ca_file` (the server is then checked against the system
    /// roots).
    pub tls_required: bool,
    /// Prefix of reply subjects, for servers that let each user read replies only below its
    /// own prefix. Default: `_INBOX_<user>` when a user name is given (in `user` or the URL:
    /// the shipped `nats.conf`'s convention), else `_INBOX` (the client library's). Set
    /// `_INBOX` for a server whose users all read `_INBOX.>`.
    pub inbox_prefix: Option<String>,
    /// Timeout for JetStream API calls and publish acknowledgements.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often an idle connection pings the server. Three unanswered pings in a row (about
    /// three intervals of silence) count as a dead link: the client reconnects, to another
    /// server of the cluster if one answers. The client library's own default (60 s) leaves a
    /// process on a frozen server idle for minutes.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            name: None,
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            credentials: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            inbox_prefix: None,
            request_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(2),
        }
    }
}

/// Written by hand so that passwords and tokens (in their fields or in the URL) are never
/// printed.
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("NatsConfig")
            .field("url", &nats_url::redact(&self.url))
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("credentials", &self.credentials)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_required", &self.tls_required)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("request_timeout", &self.request_timeout)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

/// How the connection authenticates, once the settings and the URL are reconciled.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// User and password (from the settings or the URL).
    UserPassword { user: String, password: String },
    /// A token (from the settings or the URL).
    Token(String),
    /// A user nkey seed, read from this file when connecting.
    NkeySeedFile(PathBuf),
    /// A JWT credentials file.
    Credentials(PathBuf),
}

impl Auth {
    /// The method in words, for messages (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            Auth::None => "no credentials".to_owned(),
            Auth::UserPassword { user, .. } => format!("user {user:?} and its password"),
            Auth::Token(_) => "a token".to_owned(),
            Auth::NkeySeedFile(path) => format!("the nkey seed in {}", path.display()),
            Auth::Credentials(path) => format!("the credentials file {}", path.display()),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The settings checked and put in the shape a connection needs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Server URLs without credentials.
    pub servers: Vec<String>,
    /// The URL list as messages show it (secrets replaced by `***`).
    pub shown_url: String,
    pub auth: Auth,
    /// Whether TLS is required by these settings (`tls_required`, or a CA file or client
    /// certificate given); the server may require it on its own.
    pub tls_required: bool,
    /// The prefix of reply subjects: `nats.inbox_prefix`, else `_INBOX_<user>` with a user
    /// name, else `_INBOX`.
    pub inbox_prefix: String,
}

impl NatsConfig {
    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolve().map(|_| ())
    }

    /// The prefix of reply subjects these settings use (see [`Resolved::inbox_prefix`]);
    /// `nats.inbox_prefix` or `_INBOX` if the settings do not resolve.
    pub fn inbox(&self) -> String {
        match self.resolve() {
            Ok(resolved) => resolved.inbox_prefix,
            Err(_) => self.inbox_prefix.clone().unwrap_or_else(|| DEFAULT_INBOX_PREFIX.into()),
        }
    }

    /// Checks the settings and reconciles the URL's credentials with the others.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let rule = |text: String| ConfigError::Rule(text);
        let urls = nats_url::parse(&self.url).map_err(rule)?;
        if self.password.is_some() && self.user.is_none() {
            return Err(rule("nats.password is set but nats.user is not".into()));
        }
        let methods: Vec<&str> = [
            (self.user.is_some(), "user/password"),
            (self.token.is_some(), "token"),
            (self.nkey_seed_file.is_some(), "nkey_seed_file"),
            (self.credentials.is_some(), "credentials"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if methods.len() > 1 {
            return Err(rule(format!(
                "nats: give one way to authenticate, not several ({})",
                methods.join(", ")
            )));
        }
        if urls.auth.is_some() && !methods.is_empty() {
            return Err(rule(format!(
                "nats.url carries credentials and nats.{} is set too; give them in one place",
                methods[0]
            )));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(rule("nats.tls_cert_file is set but nats.tls_key_file is not".into()))
            }
            (None, Some(_)) => {
                return Err(rule("nats.tls_key_file is set but nats.tls_cert_file is not".into()))
            }
            _ => {}
        }
        for (setting, path) in [
            ("nkey_seed_file", &self.nkey_seed_file),
            ("credentials", &self.credentials),
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ] {
            if let Some(path) = path {
                must_be_a_file(setting, path)?;
            }
        }
        if let Some(prefix) = &self.inbox_prefix {
            check_inbox_prefix(prefix)?;
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(rule("nats.name must not be empty".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(rule("nats.request_timeout must be positive".into()));
        }
        if self.ping_interval < Duration::from_millis(100) {
            return Err(rule("nats.ping_interval must be at least 100ms".into()));
        }
        let auth = match (urls.auth, self) {
            (Some(UrlAuth::UserPassword { user, password }), _) => {
                Auth::UserPassword { user, password }
            }
            (Some(UrlAuth::Token(token)), _) => Auth::Token(token),
            (None, NatsConfig { user: Some(user), password, .. }) => Auth::UserPassword {
                user: user.clone(),
                password: password.clone().unwrap_or_default(),
            },
            (None, NatsConfig { token: Some(token), .. }) => Auth::Token(token.clone()),
            (None, NatsConfig { nkey_seed_file: Some(path), .. }) => {
                Auth::NkeySeedFile(path.clone())
            }
            (None, NatsConfig { credentials: Some(path), .. }) => Auth::Credentials(path.clone()),
            (None, _) => Auth::None,
        };
        let inbox_prefix = match (&self.inbox_prefix, &auth) {
            (Some(prefix), _) => prefix.clone(),
            (None, Auth::UserPassword { user, .. }) => user_inbox_prefix(user),
            (None, _) => DEFAULT_INBOX_PREFIX.to_owned(),
        };
        Ok(Resolved {
            inbox_prefix,
            servers: urls.servers,
            shown_url: nats_url::redact(&self.url),
            auth,
            // A CA file or a client certificate only make sense over TLS: never fall back to
            // plain text with them.
            tls_required: self.tls_required
                || self.tls_ca_file.is_some()
                || self.tls_cert_file.is_some(),
        })
    }
}

/// The client library's own inbox prefix.
pub const DEFAULT_INBOX_PREFIX: &str = "_INBOX";

/// `_INBOX_<user>`, the shipped `nats.conf`'s prefix for `user`; `_INBOX` for a user name
/// that cannot stand in a subject (spaces, wildcards, empty tokens).
fn user_inbox_prefix(user: &str) -> String {
    let prefix = format!("{DEFAULT_INBOX_PREFIX}_{user}");
    match check_inbox_prefix(&prefix) {
        Ok(()) => prefix,
        Err(_) => DEFAULT_INBOX_PREFIX.to_owned(),
    }
}

fn must_be_a_file(setting: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        return Ok(());
    }
    let what = if path.exists() { "is not a file" } else { "does not exist" };
    Err(ConfigError::Rule(format!("nats.{setting}: {} {what}", path.display())))
}

/// An inbox prefix is the start of every reply subject: plain subject tokens, no wildcards.
fn check_inbox_prefix(prefix: &str) -> Result<(), ConfigError> {
    let bad_token = |t: &str| {
        t.is_empty()
            || t == "*"
            || t == ">"
            || t.chars().any(|c| c.is_whitespace() || c == '*' || c == '>')
    };
    if prefix.split('.').any(bad_token) {
        return Err(ConfigError::Rule(format!(
            "nats.inbox_prefix {prefix:?} is not a valid subject prefix (dot-separated tokens \
             without spaces or wildcards, e.g. _INBOX_worker)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
