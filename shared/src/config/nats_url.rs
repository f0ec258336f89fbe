//! Credentials written into `nats.url` (`nats://user:password@host`, `nats://token@host`):
//! taken out of the URL list, percent-decoded, and handed to the client library through its
//! builder, because async-nats ignores them in a URL. Also the redacted form of a URL list
//! that error messages and logs show instead of the secret.

use percent_encoding::percent_decode_str;

/// Credentials found in a URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum UrlAuth {
    /// `user:password@` (the password may be empty: `user:@` or `user@` is not this form).
    UserPassword { user: String, password: String },
    /// `token@`: NATS reads a user-info without a colon as a token.
    Token(String),
}

/// A URL list with the credentials taken out.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerUrls {
    /// The servers, without user-info, in the order given.
    pub servers: Vec<String>,
    /// The credentials the URLs carried (every URL that carries any carries the same).
    pub auth: Option<UrlAuth>,
}

/// Splits `url` (comma separated) into servers and the credentials they carry.
pub(crate) fn parse(url: &str) -> Result<ServerUrls, String> {
    let mut servers = Vec::new();
    let mut auth: Option<UrlAuth> = None;
    for entry in url.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(format!("nats.url has an empty entry: {:?}", redact(url)));
        }
        let (server, found) = split_entry(entry)?;
        if let Some(found) = found {
            match &auth {
                Some(known) if *known != found => {
                    return Err(
                        "nats.url: the servers carry different credentials; give one set".into()
                    );
                }
                _ => auth = Some(found),
            }
        }
        servers.push(server);
    }
    Ok(ServerUrls { servers, auth })
}

/// `url` (a comma-separated list) with every password and token replaced by `***`.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|entry| {
            let (scheme, rest) = split_scheme(entry.trim());
            let (userinfo, host) = split_userinfo(rest);
            match userinfo {
                None => entry.trim().to_owned(),
                Some(info) => match info.split_once(':') {
                    Some((user, _)) => format!("{scheme}{user}:***@{host}"),
                    None => format!("{scheme}***@{host}"),
                },
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One URL: the URL without user-info, and the credentials in it.
fn split_entry(entry: &str) -> Result<(String, Option<UrlAuth>), String> {
    let (scheme, rest) = split_scheme(entry);
    let (userinfo, host) = split_userinfo(rest);
    let Some(info) = userinfo else {
        return Ok((entry.to_owned(), None));
    };
    let shown = redact(entry);
    if host.is_empty() || host.starts_with(['/', ':']) {
        return Err(format!("nats.url {shown:?} has no host after the credentials"));
    }
    let auth = match info.split_once(':') {
        Some((user, password)) => {
            let user = decode(user, &shown)?;
            if user.is_empty() {
                return Err(format!("nats.url {shown:?}: a password needs a user name"));
            }
            UrlAuth::UserPassword { user, password: decode(password, &shown)? }
        }
        None => {
            let token = decode(info, &shown)?;
            if token.is_empty() {
                return Err(format!("nats.url {shown:?} has an empty token before '@'"));
            }
            UrlAuth::Token(token)
        }
    };
    Ok((format!("{scheme}{host}"), Some(auth)))
}

/// `("nats://", "rest")`, or `("", entry)` when there is no scheme.
fn split_scheme(entry: &str) -> (&str, &str) {
    match entry.find("://") {
        Some(at) => entry.split_at(at + 3),
        None => ("", entry),
    }
}

/// The user-info (before the last `@` of the authority) and the rest.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

fn decode(text: &str, shown: &str) -> Result<String, String> {
    percent_decode_str(text).decode_utf8().map(|s| s.into_owned()).map_err(|_| {
        format!("nats.url {shown:?}: the credentials are not valid UTF-8 once decoded")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(user: &str, password: &str) -> Option<UrlAuth> {
        Some(UrlAuth::UserPassword { user: user.into(), password: password.into() })
    }

    #[test]
    fn plain_urls_pass_through() {
        let urls = parse("nats://127.0.0.1:4222, tls://b:4222,c:4222").unwrap();
        assert_eq!(urls.servers, ["nats://127.0.0.1:4222", "tls://b:4222", "c:4222"]);
        assert!(urls.auth.is_none());
    }

    #[test]
    fn user_password_and_token_are_taken_out_and_decoded() {
        let urls = parse("nats://app:p%40ss%3Aw0rd@127.0.0.1:4222").unwrap();
        assert_eq!(urls.servers, ["nats://127.0.0.1:4222"]);
        assert!(urls.auth == user("app", "p@ss:w0rd"));
        let urls = parse("nats://s3cr%2Ft@host:4222,nats://s3cr%2Ft@other:4222").unwrap();
        assert_eq!(urls.servers, ["nats://host:4222", "nats://other:4222"]);
        assert!(urls.auth == Some(UrlAuth::Token("s3cr/t".into())));
        // A server without credentials next to one with them: the credentials apply to all.
        let urls = parse("u:p@host:4222,nats://other:4222").unwrap();
        assert_eq!(urls.servers, ["host:4222", "nats://other:4222"]);
        assert!(urls.auth == user("u", "p"));
    }

    #[test]
    fn bad_credentials_in_urls_are_errors_without_the_secret() {
        for (url, text) in [
            ("nats://a:1@h:1,nats://b:2@h:2", "different credentials"),
            ("nats://:secret@h:1", "needs a user"),
            ("nats://@h:1", "empty token"),
            ("nats://u:secret@", "no host"),
            ("nats://u:%FF%FE@h:1", "UTF-8"),
        ] {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} should be refused"));
            assert!(err.contains(text), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }

    #[test]
    fn redaction_hides_passwords_and_tokens_only() {
        assert_eq!(
            redact("nats://u:p@h:1, t@h:2,nats://h:3"),
            "nats://u:***@h:1,***@h:2,nats://h:3"
        );
        assert_eq!(redact("nats://h:4222/path@x"), "nats://h:4222/path@x");
    }
}
