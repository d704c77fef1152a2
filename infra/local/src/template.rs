//! The routes of `template.yaml`, read from the template itself so the local gateway cannot drift
//! from what API Gateway serves, and matched the way an HTTP API selects a route.

use std::collections::HashMap;

use serde_norway::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("function {resource}: {problem}")]
    Function { resource: String, problem: String },
    #[error("route {route}: {problem}")]
    Route { route: String, problem: String },
}

/// One `HttpApi` event of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// The path template, e.g. `/internal/users/{uid}/llm-keys`.
    pub path: String,
    /// The function's binary name (`BuildProperties.Binary`).
    pub function: String,
    /// Whether API Gateway authorizes the route with IAM (SigV4).
    pub iam: bool,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path.
    Greedy(String),
}

impl Route {
    /// API Gateway's route key, e.g. `GET /health/llm-keys`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path parameters when `path` (raw, percent-encoded) matches this route.
    fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut params = HashMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if parts.next()? != literal {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.next().filter(|p| !p.is_empty())?;
                    params.insert(name.clone(), decode(part));
                }
                Segment::Greedy(name) => {
                    let rest = path.strip_prefix('/')?.splitn(i + 1, '/').nth(i).filter(|r| !r.is_empty())?;
                    params.insert(name.clone(), decode(rest));
                    return Some(params);
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Most specific first: literals beat parameters, parameters beat greedy ones, a named method
    /// beats `ANY` (API Gateway's route selection).
    fn specificity(&self) -> (Vec<u8>, bool) {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param(_) => 1,
                Segment::Greedy(_) => 0,
            })
            .collect();
        (segments, self.method != "ANY")
    }
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned()
}

fn parse_path(route: &str, path: &str) -> Result<Vec<Segment>, TemplateError> {
    let bad = |problem: &str| TemplateError::Route { route: route.to_owned(), problem: problem.to_owned() };
    let rest = path.strip_prefix('/').ok_or_else(|| bad("path must start with /"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => match name.strip_suffix('+') {
                Some(greedy) if i == last && !greedy.is_empty() => Ok(Segment::Greedy(greedy.to_owned())),
                Some(_) => Err(bad("a greedy parameter must be the last segment")),
                None if !name.is_empty() => Ok(Segment::Param(name.to_owned())),
                None => Err(bad("empty parameter name")),
            },
            None if !part.is_empty() && !part.contains(['{', '}']) => Ok(Segment::Literal((*part).to_owned())),
            None => Err(bad("empty or malformed segment")),
        })
        .collect()
}

/// Every route of the template, in a table that selects routes like API Gateway.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads every `AWS::ApiGatewayV2::Route` of the template, following its target integration to
    /// the function it invokes.
    pub fn from_template(yaml: &str) -> Result<Self, TemplateError> {
        let template: Value = serde_norway::from_str(yaml)?;
        let resources = template.get("Resources").and_then(Value::as_mapping).cloned().unwrap_or_default();
        let resource = |name: &str| resources.get(name).map(|r| (r.get("Type").and_then(Value::as_str), r));
        let mut routes = Vec::new();
        for (name, spec) in &resources {
            if spec.get("Type").and_then(Value::as_str) != Some("AWS::ApiGatewayV2::Route") {
                continue;
            }
            let name = name.as_str().unwrap_or_default().to_owned();
            let bad = |problem: &str| TemplateError::Route { route: name.clone(), problem: problem.into() };
            let props = spec.get("Properties").ok_or_else(|| bad("no Properties"))?;
            let key = props.get("RouteKey").and_then(Value::as_str).ok_or_else(|| bad("no RouteKey"))?;
            let (method, path) = key.split_once(' ').ok_or_else(|| bad("RouteKey is not `METHOD /path`"))?;
            let iam = match props.get("AuthorizationType").and_then(Value::as_str) {
                None | Some("NONE") => false,
                Some("AWS_IAM") => true,
                Some(other) => return Err(bad(&format!("authorization {other} cannot be emulated locally"))),
            };
            // `Target: !Sub "integrations/${XIntegration}"`, whose `IntegrationUri: !GetAtt XFunction.Arn`.
            let integration = props
                .get("Target")
                .and_then(|t| tagged(t, "!Sub"))
                .and_then(|t| t.strip_prefix("integrations/${")?.strip_suffix('}'))
                .ok_or_else(|| bad("Target is not !Sub \"integrations/${Integration}\""))?;
            let function = match resource(integration) {
                Some((Some("AWS::ApiGatewayV2::Integration"), spec)) => spec
                    .get("Properties")
                    .and_then(|p| p.get("IntegrationUri"))
                    .and_then(|uri| tagged(uri, "!GetAtt"))
                    .and_then(|att| att.strip_suffix(".Arn")),
                _ => None,
            }
            .ok_or_else(|| bad("its integration does not name a function (!GetAtt Function.Arn)"))?;
            let binary = match resource(function) {
                Some((Some("AWS::Serverless::Function"), spec)) => spec
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str),
                _ => None,
            }
            .ok_or_else(|| TemplateError::Function {
                resource: function.to_owned(),
                problem: "Metadata.BuildProperties.Binary is missing".into(),
            })?;
            let method = method.to_ascii_uppercase();
            let key = format!("{method} {path}");
            let segments = parse_path(&key, path)?;
            if routes.iter().any(|r: &Route| r.key() == key) {
                return Err(TemplateError::Route { route: key, problem: "declared twice".into() });
            }
            routes.push(Route { method, path: path.to_owned(), function: binary.to_owned(), iam, segments });
        }
        routes.sort_by(|a, b| b.specificity().cmp(&a.specificity()).then_with(|| a.key().cmp(&b.key())));
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route API Gateway would select for `method` and the raw `path`, with its parameters.
    pub fn select(&self, method: &str, path: &str) -> Option<(&Route, HashMap<String, String>)> {
        self.routes
            .iter()
            .filter(|r| r.method == "ANY" || r.method == method)
            .find_map(|r| r.matches(path).map(|params| (r, params)))
    }
}

/// The text of a CloudFormation intrinsic written with its short tag (`!Sub "…"`, `!GetAtt X.Arn`).
fn tagged<'v>(value: &'v Value, tag: &str) -> Option<&'v str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => tagged.value.as_str(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-t"
  Keys:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {Binary: keys}
  KeysIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Keys.Arn}
  Fetch:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: "get /internal/users/{uid}/keys", AuthorizationType: AWS_IAM, Target: !Sub "integrations/${KeysIntegration}"}
  Me:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: "GET /users/me/keys", AuthorizationType: NONE, Target: !Sub "integrations/${KeysIntegration}"}
  Any:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: "ANY /users/{uid}/keys", Target: !Sub "integrations/${KeysIntegration}"}
  Files:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: "GET /files/{path+}", Target: !Sub "integrations/${KeysIntegration}"}
  Queue:
    Type: AWS::SQS::Queue
"#;

    fn table() -> RouteTable {
        RouteTable::from_template(TEMPLATE).unwrap()
    }

    #[test]
    fn reads_routes_their_function_and_their_authorization() {
        let table = table();
        let mut keys: Vec<_> = table.routes().iter().map(|r| (r.key(), r.function.as_str(), r.iam)).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("ANY /users/{uid}/keys".to_owned(), "keys", false),
                ("GET /files/{path+}".to_owned(), "keys", false),
                ("GET /internal/users/{uid}/keys".to_owned(), "keys", true),
                ("GET /users/me/keys".to_owned(), "keys", false),
            ]
        );
    }

    #[test]
    fn selects_the_most_specific_route_and_decodes_parameters() {
        let table = table();
        let (route, params) = table.select("GET", "/users/me/keys").unwrap();
        assert_eq!(route.path, "/users/me/keys");
        assert!(params.is_empty());

        let (route, params) = table.select("DELETE", "/users/auth0%7C42/keys").unwrap();
        assert_eq!(route.key(), "ANY /users/{uid}/keys");
        assert_eq!(params["uid"], "auth0|42");

        let (route, params) = table.select("GET", "/files/a/b%20c").unwrap();
        assert_eq!(route.key(), "GET /files/{path+}");
        assert_eq!(params["path"], "a/b c");
    }

    #[test]
    fn serves_nothing_else() {
        let table = table();
        for (method, path) in [
            ("POST", "/internal/users/u/keys"),
            ("GET", "/internal/users//keys"),
            ("GET", "/internal/users/u/keys/extra"),
            ("GET", "/users/me"),
            ("GET", "/files/"),
            ("GET", "/"),
            ("GET", ""),
        ] {
            assert!(table.select(method, path).is_none(), "{method} {path}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_emulate() {
        let custom = TEMPLATE.replace("AuthorizationType: AWS_IAM", "AuthorizationType: JWT");
        assert!(matches!(RouteTable::from_template(&custom), Err(TemplateError::Route { .. })));
        let untargeted = TEMPLATE.replace(
            r#"Target: !Sub "integrations/${KeysIntegration}"}
  Me:"#,
            "}\n  Me:",
        );
        assert!(matches!(RouteTable::from_template(&untargeted), Err(TemplateError::Route { .. })));
        let unnamed = TEMPLATE.replace("BuildProperties: {Binary: keys}", "BuildProperties: {}");
        assert!(matches!(RouteTable::from_template(&unnamed), Err(TemplateError::Function { .. })));
        let greedy_inside = TEMPLATE.replace("/files/{path+}", "/files/{path+}/x");
        assert!(matches!(RouteTable::from_template(&greedy_inside), Err(TemplateError::Route { .. })));
    }

    #[test]
    fn reads_the_project_template() {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).unwrap();
        let table = RouteTable::from_template(&yaml).unwrap();
        assert!(table.routes().iter().any(|r| r.key() == "GET /health/llm-keys"));
    }
}
