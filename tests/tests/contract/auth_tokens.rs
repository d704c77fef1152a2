//! Auth0 access-token verification against a loopback JWKS endpoint (wiremock), one case per way a
//! token can be wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyward::auth::jwt::TokenSettings;
use keyward::auth::{AuthError, TokenVerifier};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISSUER: &str = "https://tenant.example.auth0.com/";
const AUDIENCE: &str = "https://api.keyward.dev";
const PRIVATE_PEM: &[u8] = include_bytes!("../../fixtures/test-rsa.pem");
const PUBLIC_PEM: &[u8] = include_bytes!("../../fixtures/test-rsa.pub.pem");
const JWKS: &str = include_str!("../../fixtures/test-jwks.json");

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "https://tenant.example.auth0.com/userinfo"],
        "sub": "auth0|alice",
        "exp": now() + 600,
        "iat": now(),
        "scope": "openid profile email",
        "email": "alice@example.com",
        "email_verified": true,
        "azp": "keyward-web",
    })
}

fn sign(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap()).unwrap()
}

fn valid(claims: &Value) -> String {
    sign(claims, Some("test-key-1"))
}

async fn jwks_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(JWKS, "application/json"))
        .mount(&server)
        .await;
    server
}

fn verifier(server: &MockServer) -> TokenVerifier {
    verifier_with(server, None, None)
}

fn verifier_with(
    server: &MockServer,
    required_scope: Option<&str>,
    email_verified_claim: Option<&str>,
) -> TokenVerifier {
    let settings = TokenSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_url: format!("{}/.well-known/jwks.json", server.uri()).parse().unwrap(),
        required_scope: required_scope.map(str::to_owned),
        allowed_clients: vec!["keyward-web".into(), "keyward-cli".into()],
        email_verified_claim: email_verified_claim.map(str::to_owned),
    };
    TokenVerifier::new(settings, keyward::outbound::Outbound::new())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn a_valid_token_yields_the_user() {
    let server = jwks_server().await;
    let claims = verifier(&server).verify(&valid(&claims())).await.unwrap();
    assert_eq!(claims.user.as_str(), "auth0|alice");
    assert_eq!(claims.email.as_deref(), Some("alice@example.com"));
    assert_eq!(claims.email_verified, Some(true));
}

#[tokio::test]
async fn every_forgery_is_refused_with_its_reason() {
    let server = jwks_server().await;
    let verifier = verifier(&server);
    let good = valid(&claims());
    let [head, body, sig]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();

    let with = |key: &str, value: Value| {
        let mut c = claims();
        c[key] = value;
        valid(&c)
    };
    let without = |key: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(key);
        valid(&c)
    };
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(PUBLIC_PEM)).unwrap()
    };
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-key-1"})), b64(&claims()));
    let mut tampered_claims = claims();
    tampered_claims["sub"] = json!("auth0|mallory");
    let tampered = format!("{head}.{}.{sig}", b64(&tampered_claims));
    let bobs_signature = {
        let mut c = claims();
        c["sub"] = json!("auth0|bob");
        valid(&c).rsplit('.').next().unwrap().to_owned()
    };
    let rs512 = {
        let mut header = Header::new(Algorithm::RS512);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap()).unwrap()
    };
    // RFC 7515 §4.1.11: a header naming extensions the recipient must understand (keyward
    // understands none), signed correctly all the same.
    let critical = |header: Value| {
        let signing_input = format!("{}.{}", b64(&header), b64(&claims()));
        let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap();
        let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
        format!("{signing_input}.{signature}")
    };
    let with_crit = critical(json!({"alg": "RS256", "typ": "JWT", "kid": "test-key-1", "crit": ["exp"], "exp": 1}));
    let with_empty_crit = critical(json!({"alg": "RS256", "kid": "test-key-1", "crit": []}));
    // Auth0's machine-to-machine tokens (client credentials) are an application's, not a user's.
    let client_credentials = with("gty", json!("client-credentials"));
    let client_grant_list = with("gty", json!(["client-credentials"]));
    let clients_subject = with("sub", json!("zG4HxkExAMPLEclientId@clients"));

    let cases: Vec<(&str, String, AuthError)> = vec![
        // jsonwebtoken cannot even represent `none`: the header fails to parse.
        ("alg none", alg_none, AuthError::Malformed),
        ("HS256 signed with the public key", hs256_with_public_key, AuthError::WrongAlgorithm),
        ("RS512", rs512, AuthError::WrongAlgorithm),
        ("expired", with("exp", json!(now() - 120)), AuthError::Expired),
        ("nbf in the future", with("nbf", json!(now() + 600)), AuthError::NotYetValid),
        ("wrong issuer", with("iss", json!("https://evil.auth0.com/")), AuthError::WrongIssuer),
        (
            "issuer without trailing slash",
            with("iss", json!("https://tenant.example.auth0.com")),
            AuthError::WrongIssuer,
        ),
        ("wrong audience", with("aud", json!("https://other.api")), AuthError::WrongAudience),
        ("an ID token (aud = client id)", with("aud", json!("client-id-123")), AuthError::WrongAudience),
        ("no exp", without("exp"), AuthError::MissingClaim),
        ("no iss", without("iss"), AuthError::MissingClaim),
        ("no aud", without("aud"), AuthError::MissingClaim),
        ("no sub", without("sub"), AuthError::MissingClaim),
        ("sub that is not a user id", with("sub", json!("../../etc")), AuthError::MissingClaim),
        ("unknown kid", sign(&claims(), Some("rotated-away")), AuthError::UnknownKey),
        ("kid path injection", sign(&claims(), Some("../../dev/null")), AuthError::UnknownKey),
        ("no kid", sign(&claims(), None), AuthError::UnknownKey),
        ("tampered payload", tampered, AuthError::BadSignature),
        ("signature of another token", format!("{head}.{body}.{bobs_signature}"), AuthError::BadSignature),
        ("truncated", good[..good.len() / 2].to_owned(), AuthError::Malformed),
        ("garbage", "not.a.jwt".to_owned(), AuthError::Malformed),
        ("empty", String::new(), AuthError::Malformed),
        ("oversized (100 KB)", format!("{head}.{}.{sig}", "A".repeat(100_000)), AuthError::Malformed),
        ("a crit header", with_crit, AuthError::CriticalExtension),
        ("an empty crit header", with_empty_crit, AuthError::CriticalExtension),
        ("gty client-credentials", client_credentials, AuthError::NotAUserToken),
        ("gty as a list", client_grant_list, AuthError::NotAUserToken),
        ("a sub ending in @clients", clients_subject, AuthError::NotAUserToken),
        // Another application of the tenant allowed to ask for keyward's audience.
        ("azp of another application", with("azp", json!("zG4HxkOtherAppId")), AuthError::WrongClient),
        ("azp differing in case", with("azp", json!("Keyward-Web")), AuthError::WrongClient),
        ("client_id of another application", with("client_id", json!("zG4HxkOtherAppId")), AuthError::WrongClient),
    ];
    for (name, token, expected) in cases {
        let err = verifier.verify(&token).await.unwrap_err();
        assert_eq!(err, expected, "{name}");
        let response = keyward::http::ApiError::from(err).into_response();
        assert_eq!(response.status(), 401, "{name}");
        assert!(response.headers().contains_key("www-authenticate"), "{name}");
    }
}

#[tokio::test]
async fn tokens_of_keywards_own_applications_act_as_users() {
    let server = jwks_server().await;
    let verifier = verifier(&server);
    let mut device = claims();
    device["azp"] = json!("keyward-cli");
    device["client_id"] = json!("keyward-cli");
    assert!(verifier.verify(&valid(&device)).await.is_ok(), "the device client");
    device.as_object_mut().unwrap().remove("azp");
    device.as_object_mut().unwrap().remove("client_id");
    assert!(verifier.verify(&valid(&device)).await.is_ok(), "a token naming no application (Auth0 names one)");
    let response = keyward::http::ApiError::from(AuthError::WrongClient).into_response();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("wrong_client"), "{challenge}");
}

#[tokio::test]
async fn a_required_scope_is_checked_and_email_verified_read_where_the_action_puts_it() {
    let server = jwks_server().await;
    let scoped = verifier_with(&server, Some("keyward:use"), Some("https://keyward.dev/email_verified"));
    let with_scope = |scope: &str| {
        let mut c = claims();
        c["scope"] = json!(scope);
        valid(&c)
    };
    assert!(scoped.verify(&with_scope("openid keyward:use email")).await.is_ok());
    for missing in ["openid profile email", "keyward:user", "keyward:use-more", ""] {
        let err = scoped.verify(&with_scope(missing)).await.unwrap_err();
        assert_eq!(err, AuthError::MissingScopes(vec!["keyward:use".into()]), "{missing:?}");
        let response = keyward::http::ApiError::from(err).into_response();
        assert_eq!(response.status(), 403, "RFC 6750: a missing scope is forbidden, not unauthenticated");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"insufficient_scope\", scope=\"keyward:use\""), "{challenge}");
    }
    let mut namespaced = claims();
    let object = namespaced.as_object_mut().unwrap();
    object.remove("email_verified");
    object.insert("scope".into(), json!("keyward:use"));
    object.insert("https://keyward.dev/email_verified".into(), json!(true));
    assert_eq!(scoped.verify(&valid(&namespaced)).await.unwrap().email_verified, Some(true));
    assert_eq!(verifier(&server).verify(&valid(&namespaced)).await.unwrap().email_verified, None, "not configured");
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_interval() {
    let server = jwks_server().await;
    let verifier = verifier(&server).with_refetch_interval(std::time::Duration::from_millis(300));
    let forged = |i: usize| sign(&claims(), Some(&format!("attacker-{i}")));
    verifier.verify(&valid(&claims())).await.unwrap();
    for i in 0..20 {
        assert_eq!(verifier.verify(&forged(i)).await.unwrap_err(), AuthError::UnknownKey);
    }
    // The first fetch stands for the whole interval: a flood of unknown kids adds no request.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    for i in 20..40 {
        assert_eq!(verifier.verify(&forged(i)).await.unwrap_err(), AuthError::UnknownKey);
    }
    // After the interval, one unknown kid forces one refetch (a rotated key would be found), no more.
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    verifier.verify(&valid(&claims())).await.unwrap();
}

#[tokio::test]
async fn a_jwks_endpoint_that_is_down_means_unavailable_never_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let err = verifier(&server).verify(&valid(&claims())).await.unwrap_err();
    assert_eq!(err, AuthError::KeysUnavailable);
    let response = keyward::http::ApiError::from(err).into_response();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn bearer_header_is_required_and_rejections_carry_a_challenge() {
    let server = jwks_server().await;
    let verifier = verifier(&server);
    let request = |auth: Option<String>| {
        let mut builder = lambda_http::http::Request::builder().uri("/me");
        if let Some(a) = auth {
            builder = builder.header("authorization", a);
        }
        builder.body(lambda_http::Body::Empty).unwrap()
    };
    assert_eq!(verifier.verify_request(&request(None)).await.unwrap_err(), AuthError::MissingToken);
    assert_eq!(verifier.verify_request(&request(Some("Basic abc".into()))).await.unwrap_err(), AuthError::MissingToken);
    let ok = verifier.verify_request(&request(Some(format!("Bearer {}", valid(&claims()))))).await.unwrap();
    assert_eq!(ok.user.as_str(), "auth0|alice");

    let expired = {
        let mut c = claims();
        c["exp"] = json!(now() - 120);
        valid(&c)
    };
    let err = verifier.verify_request(&request(Some(format!("Bearer {expired}")))).await.unwrap_err();
    let response = keyward::http::ApiError::from(err).into_response();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("token_expired"));
}
