//! The `[nats]` rules, the URL credentials and the redaction of secrets.

use std::path::PathBuf;

use super::*;

fn existing_file() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

fn rule_error(cfg: &NatsConfig) -> String {
    match cfg.validate() {
        Err(ConfigError::Rule(text)) => text,
        other => panic!("expected a rule error, got {other:?} for {cfg:?}"),
    }
}

#[test]
fn defaults_are_valid_and_unauthenticated() {
    let resolved = NatsConfig::default().resolve().unwrap();
    assert_eq!(resolved.servers, ["nats://127.0.0.1:4222"]);
    assert_eq!(resolved.auth, Auth::None);
    assert!(!resolved.tls_required);
}

#[test]
fn one_way_to_authenticate_at_most() {
    let seed = existing_file();
    let cfg = NatsConfig {
        user: Some("app".into()),
        password: Some("pw".into()),
        token: Some("tok".into()),
        nkey_seed_file: Some(seed.path().to_owned()),
        ..Default::default()
    };
    let text = rule_error(&cfg);
    assert!(text.contains("user/password, token, nkey_seed_file"), "{text}");

    let cfg = NatsConfig { password: Some("pw".into()), ..Default::default() };
    assert!(rule_error(&cfg).contains("nats.password is set but nats.user is not"));

    let cfg = NatsConfig {
        url: "nats://app:pw@127.0.0.1:4222".into(),
        token: Some("tok".into()),
        ..Default::default()
    };
    let text = rule_error(&cfg);
    assert!(text.contains("nats.url carries credentials") && text.contains("token"), "{text}");
    assert!(!text.contains("pw"), "{text}");
}

#[test]
fn url_credentials_are_used_when_the_settings_have_none() {
    let cfg = NatsConfig { url: "nats://app:p%20w@127.0.0.1:4222".into(), ..Default::default() };
    let resolved = cfg.resolve().unwrap();
    assert_eq!(resolved.servers, ["nats://127.0.0.1:4222"]);
    assert_eq!(resolved.shown_url, "nats://app:***@127.0.0.1:4222");
    assert_eq!(resolved.auth, Auth::UserPassword { user: "app".into(), password: "p w".into() });
    let cfg = NatsConfig { url: "tok@127.0.0.1:4222".into(), ..Default::default() };
    assert_eq!(cfg.resolve().unwrap().auth, Auth::Token("tok".into()));
}

#[test]
fn client_certificate_needs_its_key_and_files_must_exist() {
    let cert = existing_file();
    let cfg = NatsConfig { tls_cert_file: Some(cert.path().to_owned()), ..Default::default() };
    assert!(rule_error(&cfg).contains("tls_key_file is not"));
    let cfg = NatsConfig { tls_key_file: Some(cert.path().to_owned()), ..Default::default() };
    assert!(rule_error(&cfg).contains("tls_cert_file is not"));

    let missing = PathBuf::from("/nonexistent/ca.pem");
    let cfg = NatsConfig { tls_ca_file: Some(missing), ..Default::default() };
    assert_eq!(rule_error(&cfg), "nats.tls_ca_file: /nonexistent/ca.pem does not exist");
    let dir = tempfile::tempdir().unwrap();
    let cfg = NatsConfig { credentials: Some(dir.path().to_owned()), ..Default::default() };
    assert!(
        rule_error(&cfg).contains("nats.credentials: ")
            && rule_error(&cfg).contains("is not a file")
    );

    let cfg = NatsConfig {
        tls_ca_file: Some(cert.path().to_owned()),
        tls_cert_file: Some(cert.path().to_owned()),
        tls_key_file: Some(cert.path().to_owned()),
        ..Default::default()
    };
    assert!(cfg.resolve().unwrap().tls_required, "a CA file implies TLS");
}

#[test]
fn the_inbox_prefix_defaults_from_the_user_name() {
    let inbox = |cfg: NatsConfig| cfg.resolve().unwrap().inbox_prefix;
    assert_eq!(inbox(NatsConfig::default()), "_INBOX");
    let user = |name: &str| NatsConfig { user: Some(name.into()), ..Default::default() };
    assert_eq!(inbox(user("worker-1")), "_INBOX_worker-1");
    assert_eq!(user("worker-1").inbox(), "_INBOX_worker-1");
    let url = NatsConfig { url: "nats://client:pw@127.0.0.1:4222".into(), ..Default::default() };
    assert_eq!(inbox(url), "_INBOX_client", "a user in the URL counts too");
    assert_eq!(inbox(user("a b")), "_INBOX", "a name that cannot stand in a subject");
    let set = NatsConfig { inbox_prefix: Some("_INBOX".into()), ..user("worker-1") };
    assert_eq!(inbox(set), "_INBOX", "a prefix set wins");
    let token = NatsConfig { token: Some("t".into()), ..Default::default() };
    assert_eq!(inbox(token), "_INBOX", "a token names no user");
}

#[test]
fn inbox_prefixes_must_be_subject_prefixes() {
    for good in ["_INBOX_worker", "acme.replies", "_I-1"] {
        let cfg = NatsConfig { inbox_prefix: Some(good.into()), ..Default::default() };
        assert!(cfg.validate().is_ok(), "{good}");
    }
    for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "x*"] {
        let cfg = NatsConfig { inbox_prefix: Some(bad.into()), ..Default::default() };
        assert!(rule_error(&cfg).contains("not a valid subject prefix"), "{bad:?}");
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let cfg = NatsConfig {
        url: "nats://app:url-secret@h:1,nats://app:url-secret@h:2".into(),
        user: Some("app".into()),
        password: Some("field-secret".into()),
        token: Some("token-secret".into()),
        ..Default::default()
    };
    let shown = format!("{cfg:?} {:?}", cfg.resolve().ok());
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("nats://app:***@h:1") && shown.contains("app"), "{shown}");
    let auth = Auth::Token("token-secret".into());
    assert_eq!(format!("{auth:?}"), "a token");
}
