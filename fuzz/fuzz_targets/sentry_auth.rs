//! Request credentials: `X-Sentry-Auth` / `Authorization` values, the `sentry_key` query
//! parameter and envelope DSNs.
//!
//! The input is up to three newline-separated parts: the `X-Sentry-Auth` value, the
//! `Authorization` value and the query string (an absent or empty part is no header). Checks:
//! every key relay accepts is 32 lowercase hex characters; `from_request` agrees with
//! `parse_auth_header` + `validate_key` on the header that wins; a key and a DSN that parse
//! are read back unchanged from a header and a DSN written with them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_fuzz::split;
use silo_relay::auth::{self, AuthError, Credentials};

fn assert_key(key: &str) {
    assert_eq!(key.len(), 32, "{key:?}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key:?}"
    );
}

fn check_header(value: &str) {
    if let Ok(Some(key)) = auth::parse_auth_header(value)
        && let Ok(valid) = auth::validate_key(&key)
    {
        assert_key(&valid);
        let written = format!("Sentry sentry_key={valid}, sentry_version=7");
        assert_eq!(auth::parse_auth_header(&written), Ok(Some(valid.clone())));
    }
}

fn check_dsn(dsn: &str) {
    match auth::parse_dsn(dsn) {
        Ok(Credentials {
            public_key,
            dsn_project_id,
        }) => {
            assert_key(&public_key);
            let project = dsn_project_id.expect("a DSN names its project");
            let written = format!("https://{public_key}@o1.ingest.example.com/{project}");
            let again = auth::parse_dsn(&written).expect("a written DSN parses");
            assert_eq!(again.public_key, public_key);
            assert_eq!(again.dsn_project_id, Some(project));
        }
        Err(AuthError::MalformedDsn { dsn: quoted, .. }) => assert_eq!(quoted, dsn),
        Err(AuthError::InvalidKey(k)) => assert!(k.chars().count() <= 64),
        Err(e) => panic!("unexpected DSN error {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let [header, authorization, query] = split::<3>(text.as_bytes(), b'\n')
        .map(|p| std::str::from_utf8(p).expect("split at an ASCII byte"));
    let (header, authorization, query) = (
        (!header.is_empty()).then_some(header),
        (!authorization.is_empty()).then_some(authorization),
        (!query.is_empty()).then_some(query),
    );

    for value in [header, authorization].into_iter().flatten() {
        check_header(value);
    }
    check_dsn(text);
    if let Ok(key) = auth::validate_key(text) {
        assert_key(&key);
        assert_eq!(key, text.to_ascii_lowercase());
    }

    let result = auth::from_request(header, authorization, query);
    if let Ok(Some(credentials)) = &result {
        assert_key(&credentials.public_key);
        assert_eq!(credentials.dsn_project_id, None);
    }
    // The first header carrying a sentry_key decides, exactly as parsed on its own.
    for value in [header, authorization].into_iter().flatten() {
        match auth::parse_auth_header(value) {
            Err(e) => {
                assert_eq!(result, Err(e));
                return;
            }
            Ok(Some(key)) => {
                let expected = auth::validate_key(&key).map(|public_key| {
                    Some(Credentials {
                        public_key,
                        dsn_project_id: None,
                    })
                });
                assert_eq!(result, expected);
                return;
            }
            Ok(None) => {}
        }
    }
});
