//! `openapi.yaml` is the contract: its routes, the template's routes and the routes the functions
//! serve are one set, and schemathesis, driving `keyward-local` in sandbox mode with a valid bearer
//! token and SigV4-signed internal calls, finds no 5xx and no response the contract does not describe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyward::model::UserId;
use keyward_tests::api::{Backend, LocalApi, NOTES_SERVICE, REGION, in_path};
use keyward_tests::sign_in::ADA;
use lambda_http::Body;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn spec() -> Value {
    serde_norway::from_str(&std::fs::read_to_string(root().join("openapi.yaml")).unwrap()).unwrap()
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `METHOD /path` of every operation, with whether it is SigV4-authorized.
fn spec_routes(spec: &Value) -> BTreeSet<(String, bool)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let sigv4 =
                    operation["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("sigv4").is_some()));
                routes.insert((format!("{} {path}", method.to_uppercase()), sigv4));
            }
        }
    }
    routes
}

#[test]
fn spec_template_and_gateway_routes_are_one_set() {
    let template = std::fs::read_to_string(keyward_local::default_template_path()).unwrap();
    let table = keyward_local::template::RouteTable::from_template(&template).unwrap();
    let template_routes: BTreeSet<(String, bool)> = table.routes().iter().map(|r| (r.key(), r.iam)).collect();
    assert_eq!(spec_routes(&spec()), template_routes, "openapi.yaml and template.yaml differ");
}

/// `openapi.yaml` names the credential each user route takes as the route tables declare it: a
/// scoped route, its scope for an Auth0 token, a personal access token and the session cookie
/// alike; a sign-in route, an Auth0 token or the session cookie.
#[test]
fn each_user_routes_security_is_its_declared_scope() {
    use keyward::auth::Access;
    let spec = spec();
    let (mut checked, mut scoped) = (0, 0);
    for routes in keyward_local::all_routes() {
        for (key, access) in routes.table() {
            let (method, path) = key.split_once(' ').unwrap();
            let security = &spec["paths"][path][method.to_lowercase()]["security"];
            let expected = match access {
                Access::User(scope) => serde_json::json!([
                    {"bearerAuth": [scope.as_str()]},
                    {"personalToken": [scope.as_str()]},
                    {"sessionCookie": [scope.as_str()]}
                ]),
                Access::SignedIn => serde_json::json!([{"bearerAuth": []}, {"sessionCookie": []}]),
                Access::Public | Access::Service(_) => continue,
            };
            assert_eq!(security, &expected, "{key}");
            checked += 1;
            scoped += usize::from(matches!(access, Access::User(_)));
        }
    }
    assert!(checked >= 13, "{checked}");
    let mentions = serde_norway::to_string(&spec["paths"]).unwrap().matches("personalToken").count();
    assert_eq!(mentions, scoped, "a personal token on the scoped routes only");
}

const CODES_BEGIN: &str = "    # Rendered from shared/src/model/problem.rs: KEYWARD_RENDER_OPENAPI=1 cargo test -p keyward-tests --test api problem_codes\n";
const CODES_END: &str = "    # End of the rendered problem codes.\n";

/// The `ProblemCode` schema as `ProblemCode::ALL` renders it: a code per wire name, each status
/// it comes with and what it means there.
fn rendered_problem_codes() -> String {
    use keyward::model::ProblemCode;
    let mut names: Vec<&str> = Vec::new();
    for code in ProblemCode::ALL {
        if !names.contains(&code.as_str()) {
            names.push(code.as_str());
        }
    }
    let mut yaml = String::from(
        "    ProblemCode:\n      type: string\n      description: The stable `code` of every problem keyward answers with.\n      oneOf:\n",
    );
    for name in names {
        let meanings: Vec<String> = ProblemCode::ALL
            .iter()
            .filter(|c| c.as_str() == name)
            .map(|c| format!("{}: {}", c.status(), c.doc()))
            .collect();
        let description = serde_json::to_string(&meanings.join(" ")).unwrap();
        yaml.push_str(&format!("        - const: {name}\n          description: {description}\n"));
    }
    yaml
}

/// Problem codes are a client's contract: a code that appears, disappears, is renamed or changes
/// its status or meaning fails here until `openapi.yaml` says so (rendered, then reviewed).
#[test]
fn problem_codes_in_openapi_are_the_enums() {
    let path = root().join("openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start =
        text.find(CODES_BEGIN).expect("openapi.yaml marks where problem codes are rendered") + CODES_BEGIN.len();
    let end = start + text[start..].find(CODES_END).expect("the end of the rendered problem codes");
    let rendered = rendered_problem_codes();
    if std::env::var_os("KEYWARD_RENDER_OPENAPI").is_some() {
        std::fs::write(&path, format!("{}{rendered}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    let listed = |yaml: &str| -> BTreeSet<String> {
        yaml.lines().filter_map(|l| l.trim().strip_prefix("- const: ")).map(str::to_owned).collect()
    };
    let (documented, enumerated) = (listed(&text[start..end]), listed(&rendered));
    assert_eq!(
        text[start..end],
        rendered,
        "openapi.yaml's problem codes are not the enum's: new {:?}, gone {:?} (or a status or meaning changed); \
         render them with KEYWARD_RENDER_OPENAPI=1",
        enumerated.difference(&documented).collect::<Vec<_>>(),
        documented.difference(&enumerated).collect::<Vec<_>>(),
    );
    assert_eq!(
        spec()["components"]["schemas"]["Problem"]["properties"]["code"]["$ref"],
        "#/components/schemas/ProblemCode"
    );
}

/// Every template route reaches a handler that serves it (not `route_not_found`), through the
/// same functions the local gateway mounts.
#[tokio::test]
async fn every_template_route_is_served_by_its_function() {
    let api = LocalApi::start(Backend::Embedded).await;
    let functions = keyward_local::functions(&api.state);
    let user = UserId::parse(&keyward_sandbox::auth0::sandbox_subject(ADA)).unwrap();
    for route in api.routes.routes() {
        let path = route.path.replace("{uid}", &in_path(&user)).replace("{provider}", "openai");
        let event = serde_json::json!({
            "version": "2.0", "routeKey": route.key(), "rawPath": path, "rawQueryString": "",
            "headers": {"accept": "application/json"},
            "pathParameters": {"uid": user.as_str(), "provider": "openai"},
            "requestContext": {
                "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
                "http": {"method": route.method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
                "requestId": "r", "routeKey": route.key(), "stage": "$default", "time": "23/Nov/2026:00:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = functions[&route.function](request).await;
        if let Body::Text(text) = response.body() {
            assert!(!text.contains("route_not_found"), "{}: {text}", route.key());
        }
    }
}

/// The Python of the schemathesis venv (`scripts/test` installs it, with botocore for signing).
fn schemathesis_python() -> String {
    match std::env::var("KEYWARD_TEST_SCHEMATHESIS") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!(
            "KEYWARD_TEST_SCHEMATHESIS is not set: run the tests with `scripts/test`, which installs schemathesis"
        ),
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    // The signing principal may use every internal route, so the handlers behind the authorizer run.
    let grants = serde_json::json!({ NOTES_SERVICE.arn: ["llm-keys:*", "google-oauth", "credits"] }).to_string();
    let api = LocalApi::start_with(Backend::Embedded, &[("KEYWARD_INTERNAL_PRINCIPALS", &grants)]).await;
    let token = api.user_token(ADA).await;
    let user = keyward_sandbox::auth0::sandbox_subject(ADA);
    let python = schemathesis_python();
    let base_url = api.base_url.clone();
    let reports = tempfile::tempdir().unwrap();
    let report_dir = reports.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-m", "schemathesis.cli", "run"])
            .arg(root().join("openapi.yaml"))
            .args(["--url", &base_url, "--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                "--seed",
                "20261123",
                // One worker: CPython 3.11's `ast` can fail "recursion depth mismatch" when
                // hypothesis inspects lambdas in two threads at once (seen here, a tool crash).
                "--workers",
                "1",
                "--no-color",
                "--generation-database",
                "none",
                "--report-dir",
            ])
            .arg(&report_dir)
            .current_dir(root().join("tests/schemathesis"))
            .env("SCHEMATHESIS_HOOKS", "hooks")
            .env("KEYWARD_CONTRACT_ACCESS_KEY", NOTES_SERVICE.access_key)
            .env("KEYWARD_CONTRACT_SECRET_KEY", NOTES_SERVICE.secret)
            .env("KEYWARD_CONTRACT_REGION", REGION)
            .env("KEYWARD_CONTRACT_USER", user)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The run reached every operation, the internal ones included.
    let operations = spec_routes(&spec()).len();
    assert!(stdout.contains(&format!("{operations} selected")), "{stdout}");
}
