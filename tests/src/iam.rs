//! The DynamoDB statements `template.yaml` gives a function's role, evaluated for each request the
//! way IAM does: by action and, where a statement has a `dynamodb:LeadingKeys` condition, by the
//! partition keys the request names. moto enforces no IAM, so a request the deployed role would
//! refuse shows here first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value as Json;
use serde_norway::Value;
use wildmatch::WildMatch;

/// One request as IAM authorises it. A transaction is authorised item by item, each as the
/// Put/Update/Delete/ConditionCheck it holds, so it makes one access per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub action: String,
    /// The partition keys the request names (empty for a Scan, which names none); `None` when the
    /// checker cannot name them (a query of an index), which no condition on them lets through.
    pub leading_keys: Option<BTreeSet<String>>,
    /// The top-level attributes a write names (its key's, its item's, its expressions'); `None`
    /// for a read, which a condition on them does not let through.
    pub attributes: Option<BTreeSet<String>>,
    /// `ReturnValues`, when the request sets it.
    pub return_values: Option<String>,
}

/// The accesses of one DynamoDB request, from its operation and its awsJson body.
pub fn accesses(operation: &str, body: &[u8]) -> Vec<Access> {
    let body: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    let access = |operation: &str, leading_keys| Access {
        action: format!("dynamodb:{operation}"),
        leading_keys,
        attributes: None,
        return_values: None,
    };
    // One item's request: `key` names it; a write names attributes.
    let one = |operation: &str, key: &Json, request: &Json| {
        let mut access = access(operation, partition_key(key).map(|pk| BTreeSet::from([pk])));
        if operation != "GetItem" {
            let named = request["ExpressionAttributeNames"].as_object().into_iter().flat_map(|n| n.values());
            let mut attributes: BTreeSet<String> = named.filter_map(|n| n.as_str().map(str::to_owned)).collect();
            attributes.extend(key.as_object().into_iter().flat_map(|k| k.keys().cloned()));
            access.attributes = Some(attributes);
        }
        access.return_values = request["ReturnValues"].as_str().map(str::to_owned);
        access
    };
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => vec![one(operation, &body["Key"], &body)],
        "PutItem" => vec![one(operation, &body["Item"], &body)],
        "BatchGetItem" => {
            let keys = body["RequestItems"].as_object().into_iter().flat_map(|tables| tables.values());
            let keys = keys.flat_map(|table| table["Keys"].as_array().into_iter().flatten());
            vec![access(operation, keys.map(partition_key).collect())]
        }
        "TransactWriteItems" => {
            let items = body["TransactItems"].as_array().into_iter().flatten();
            items
                .map(|item| match item.as_object().and_then(|o| o.iter().next()).map(|(kind, v)| (kind.as_str(), v)) {
                    Some(("Put", put)) => one("PutItem", &put["Item"], put),
                    Some(("Update", update)) => one("UpdateItem", &update["Key"], update),
                    Some(("Delete", delete)) => one("DeleteItem", &delete["Key"], delete),
                    Some(("ConditionCheck", check)) => one("ConditionCheckItem", &check["Key"], check),
                    _ => access("TransactWriteItems", None),
                })
                .collect()
        }
        "Query" if body.get("IndexName").is_none() => vec![access(operation, queried_partition(&body))],
        "Scan" => vec![access(operation, Some(BTreeSet::new()))],
        _ => vec![access(operation, None)],
    }
}

/// `(function, action, partition)` of every row of SECURITY.md's role table ("What each role may
/// do in the table"): what each function's role allows, and what its code uses.
pub fn documented_accesses() -> BTreeSet<(String, String, String)> {
    let security =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../SECURITY.md")).expect("SECURITY.md");
    let section = security.split("## What each role may do in the table").nth(1).expect("the role table");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut rows = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (function, partition) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'));
        for action in cells[3].split(',').map(str::trim) {
            rows.insert((function.to_owned(), format!("dynamodb:{action}"), partition.to_owned()));
        }
    }
    rows
}

/// The partition pattern of SECURITY.md's role table that a partition key falls under: a
/// purpose's keyring partition by its name (`KEYRING#llm-key`), any other by its kind (`USER#*`).
pub fn partition_pattern(pk: &str) -> String {
    match pk.split_once('#') {
        Some(("KEYRING", _)) => pk.to_owned(),
        Some((kind, _)) => format!("{kind}#*"),
        None => pk.to_owned(),
    }
}

/// With the leak audit's capture on (`scripts/test`), appends what `function` did to the table
/// (`function action pattern`, a line each) to `roles-<pid>.txt` there: the role audit, run after
/// the suite, checks that each access SECURITY.md grants a role is one its code makes.
pub fn record_use(function: &str, accesses: &[Access]) {
    use std::io::Write;
    let Some(mut file) = crate::leaks::append("roles") else { return };
    let lines: String = accesses
        .iter()
        .flat_map(|access| {
            let keys = access.leading_keys.iter().flatten();
            keys.map(move |pk| format!("{function} {} {}\n", access.action, partition_pattern(pk)))
        })
        .collect();
    let _ = file.write_all(lines.as_bytes());
}

/// keyward's tables are keyed by `pk` (a string) and `sk`.
fn partition_key(key: &Json) -> Option<String> {
    key["pk"]["S"].as_str().map(str::to_owned)
}

/// The partition a table query names: the value its key condition sets `pk` equal to.
fn queried_partition(body: &Json) -> Option<BTreeSet<String>> {
    let condition = body["KeyConditionExpression"].as_str()?;
    let (name, value) = condition.split(" AND ").next()?.split_once('=')?;
    let name = body["ExpressionAttributeNames"][name.trim()].as_str().unwrap_or(name.trim());
    if name != "pk" {
        return None;
    }
    let partition = body["ExpressionAttributeValues"][value.trim()]["S"].as_str()?;
    Some(BTreeSet::from([partition.to_owned()]))
}

/// The Allow statements of a role that name DynamoDB actions.
#[derive(Debug)]
pub struct Policy(Vec<Statement>);

#[derive(Debug, Default)]
struct Statement {
    actions: BTreeSet<String>,
    /// `dynamodb:LeadingKeys` (`ForAllValues:StringEquals` or `…StringLike`).
    leading_keys: Option<Patterns>,
    /// `ForAllValues:StringEquals` on `dynamodb:Attributes`: the attributes a write may name.
    attributes: Option<BTreeSet<String>>,
    /// `StringEqualsIfExists` on `dynamodb:ReturnValues`.
    return_values: Option<BTreeSet<String>>,
}

/// `ForAllValues:StringEquals` or `ForAllValues:StringLike` on `dynamodb:LeadingKeys`.
#[derive(Debug)]
enum Patterns {
    Equals(Vec<String>),
    /// IAM's `StringLike`: `*` matches any run of characters, `?` any one.
    Like(Vec<WildMatch>),
}

/// Every function's role in `template.yaml`, by resource name, with the binary it is built from;
/// read once per process.
fn roles() -> &'static BTreeMap<String, (String, Policy)> {
    static ROLES: OnceLock<BTreeMap<String, (String, Policy)>> = OnceLock::new();
    ROLES.get_or_init(|| {
        let text = std::fs::read_to_string(keyward_local::default_template_path()).expect("template.yaml");
        let template: Value = serde_norway::from_str(&text).expect("template.yaml parses");
        let resources = template["Resources"].as_mapping().expect("the template's resources");
        resources
            .iter()
            .filter_map(|(name, resource)| {
                let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str()?;
                let policies = resource["Properties"]["Policies"].as_sequence().expect("the role's policies");
                let statements: Vec<Value> =
                    policies.iter().filter_map(|p| p["Statement"].as_sequence()).flatten().cloned().collect();
                Some((name.as_str()?.to_owned(), (binary.to_owned(), Policy::from_statements(&statements))))
            })
            .collect()
    })
}

/// A string or a list of strings, as IAM statements give actions and condition values.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        other => other.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default(),
    }
}

impl Policy {
    /// The role of `function` (a resource name: `LlmKeysFunction`).
    pub fn of(function: &str) -> &'static Self {
        roles().get(function).map(|(_, policy)| policy).unwrap_or_else(|| panic!("template.yaml has no {function}"))
    }

    /// The role of the function built from `binary` (`internal-keys`).
    pub fn of_binary(binary: &str) -> &'static Self {
        let role = roles().values().find(|(built, _)| built == binary);
        role.map(|(_, policy)| policy).unwrap_or_else(|| panic!("template.yaml builds no function from {binary}"))
    }

    /// The DynamoDB part of `statements`. A condition the checker cannot evaluate fails the test
    /// rather than being read as "allowed".
    pub fn from_statements(statements: &[Value]) -> Self {
        let dynamodb = statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("dynamodb:")));
        Self(
            dynamodb
                .map(|s| {
                    let effect = s["Effect"].as_str();
                    assert_eq!(effect, Some("Allow"), "the checker evaluates Allow statements only: {s:?}");
                    let actions = strings(&s["Action"]).into_iter().collect();
                    let statement = Statement { actions, ..Statement::default() };
                    match s.get("Condition") {
                        Some(condition) => statement.with_condition(condition),
                        None => statement,
                    }
                })
                .collect(),
        )
    }

    pub fn allows(&self, access: &Access) -> bool {
        self.0.iter().any(|statement| statement.allows(access))
    }
}

impl Statement {
    /// The statement under its condition block: each operator and key it evaluates, any other
    /// failing the test.
    fn with_condition(mut self, condition: &Value) -> Self {
        let condition = condition.as_mapping().expect("a condition is a mapping");
        for (operator, keys) in condition {
            let keys = keys.as_mapping().expect("condition keys");
            for (key, values) in keys {
                let values = strings(values);
                match (operator.as_str(), key.as_str()) {
                    (Some("ForAllValues:StringEquals"), Some("dynamodb:LeadingKeys")) => {
                        self.leading_keys = Some(Patterns::Equals(values));
                    }
                    (Some("ForAllValues:StringLike"), Some("dynamodb:LeadingKeys")) => {
                        self.leading_keys = Some(Patterns::Like(values.iter().map(|v| WildMatch::new(v)).collect()));
                    }
                    (Some("ForAllValues:StringEquals"), Some("dynamodb:Attributes")) => {
                        self.attributes = Some(values.into_iter().collect());
                    }
                    (Some("StringEqualsIfExists"), Some("dynamodb:ReturnValues")) => {
                        self.return_values = Some(values.into_iter().collect());
                    }
                    other => panic!("the checker does not evaluate the condition {other:?}"),
                }
            }
        }
        self
    }

    fn allows(&self, access: &Access) -> bool {
        let leading_keys = match (&self.leading_keys, &access.leading_keys) {
            (None, _) => true,
            (Some(_), None) => false,
            // ForAllValues: every key the request names matches a value (a Scan names none).
            (Some(patterns), Some(keys)) => keys.iter().all(|key| patterns.matches(key)),
        };
        let attributes = match (&self.attributes, &access.attributes) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(allowed), Some(named)) => named.is_subset(allowed),
        };
        let return_values = match (&self.return_values, &access.return_values) {
            (Some(allowed), Some(asked)) => allowed.contains(asked),
            _ => true,
        };
        self.actions.contains(&access.action) && leading_keys && attributes && return_values
    }
}

impl Patterns {
    fn matches(&self, key: &str) -> bool {
        match self {
            Self::Equals(values) => values.iter().any(|value| value == key),
            Self::Like(patterns) => patterns.iter().any(|pattern| pattern.matches(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::from_statements(serde_norway::from_str::<Vec<Value>>(yaml).unwrap().as_slice())
    }

    fn get(pk: &str) -> Vec<Access> {
        accesses("GetItem", format!(r#"{{"TableName":"t","Key":{{"pk":{{"S":"{pk}"}},"sk":{{"S":"x"}}}}}}"#).as_bytes())
    }

    #[test]
    fn leading_keys_conditions_refuse_other_partitions() {
        let policy = policy(
            r#"
- {Effect: Allow, Action: [dynamodb:PutItem], Resource: t}
- Effect: Allow
  Action: [dynamodb:GetItem, dynamodb:BatchGetItem]
  Resource: t
  Condition: {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["USER#*", "KEYRING#llm-key"]}}
"#,
        );
        assert!(policy.allows(&get("USER#auth0|1")[0]));
        assert!(policy.allows(&get("KEYRING#llm-key")[0]));
        assert!(!policy.allows(&get("KEYRING#auth0-refresh")[0]));
        assert!(!policy.allows(&get("AUDIT#auth0|1#0")[0]));
        let batch = |pks: &[&str]| {
            let keys: Vec<String> =
                pks.iter().map(|pk| format!(r#"{{"pk":{{"S":"{pk}"}},"sk":{{"S":"x"}}}}"#)).collect();
            accesses(
                "BatchGetItem",
                format!(r#"{{"RequestItems":{{"t":{{"Keys":[{}]}}}}}}"#, keys.join(",")).as_bytes(),
            )
        };
        assert!(policy.allows(&batch(&["USER#a", "USER#b"])[0]));
        assert!(!policy.allows(&batch(&["USER#a", "STRIPE#cus_1"])[0]), "every key must match");
        assert!(!policy.allows(&accesses("UpdateItem", br#"{"Key":{"pk":{"S":"USER#a"}}}"#)[0]), "no such action");
    }

    #[test]
    fn transactions_are_authorised_item_by_item_and_queries_by_their_partition() {
        let body = json!({"TransactItems": [
            {"Put": {"Item": {"pk": {"S": "USER#a"}}}},
            {"Update": {"Key": {"pk": {"S": "AUDIT#a#3"}}}},
            {"ConditionCheck": {"Key": {"pk": {"S": "USER#a"}}}},
        ]});
        let items = accesses("TransactWriteItems", body.to_string().as_bytes());
        let actions: Vec<&str> = items.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]);
        assert_eq!(items[1].leading_keys, Some(BTreeSet::from(["AUDIT#a#3".to_owned()])));

        let query = json!({
            "KeyConditionExpression": "#n0 = :v0 AND begins_with(#n1, :v1)",
            "ExpressionAttributeNames": {"#n0": "pk", "#n1": "sk"},
            "ExpressionAttributeValues": {":v0": {"S": "USER#a"}, ":v1": {"S": "LLMKEY#"}},
        })
        .to_string();
        let query = &accesses("Query", query.as_bytes())[0];
        assert_eq!(query.leading_keys, Some(BTreeSet::from(["USER#a".to_owned()])));
        let index = json!({
            "IndexName": "gsi1",
            "KeyConditionExpression": "#n0 = :v0",
            "ExpressionAttributeNames": {"#n0": "gsi1pk"},
            "ExpressionAttributeValues": {":v0": {"S": "EMAIL#a"}},
        })
        .to_string();
        let index = &accesses("Query", index.as_bytes())[0];
        assert_eq!(index.leading_keys, None);
        let equals = policy(
            r#"
- Effect: Allow
  Action: [dynamodb:Query]
  Resource: t
  Condition: {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["USER#a"]}}
"#,
        );
        assert!(equals.allows(query));
        assert!(!equals.allows(index), "an index query's partition is not named");
    }

    #[test]
    fn string_like_is_iams_wildcard_match() {
        for (pattern, text, matches) in [
            ("USER#*", "USER#", true),
            ("USER#*", "USER#auth0|1", true),
            ("USER#*", "XUSER#1", false),
            ("*#llm-key", "KEYRING#llm-key", true),
            ("KEYRING#???-key", "KEYRING#llm-key", true),
            ("KEYRING#???-key", "KEYRING#llmx-key", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
        ] {
            let patterns = Patterns::Like(vec![WildMatch::new(pattern)]);
            assert_eq!(patterns.matches(text), matches, "{pattern} ~ {text}");
        }
    }

    #[test]
    #[should_panic(expected = "does not evaluate the condition")]
    fn a_condition_the_checker_cannot_evaluate_fails() {
        policy(
            r#"
- Effect: Allow
  Action: [dynamodb:GetItem]
  Resource: t
  Condition: {"StringEquals": {"aws:SourceVpce": "vpce-1"}}
"#,
        );
    }

    /// A role that may only mark keys used: an UpdateItem naming nothing but the key and
    /// `last_used_at`, answering with no item; one that names another attribute, or asks for the
    /// whole item back, is refused.
    #[test]
    fn attribute_and_return_value_conditions_bound_an_update() {
        let policy = policy(
            r#"
- Effect: Allow
  Action: [dynamodb:UpdateItem]
  Resource: t
  Condition:
    ForAllValues:StringLike: {"dynamodb:LeadingKeys": ["USER#*"]}
    ForAllValues:StringEquals: {"dynamodb:Attributes": [pk, sk, last_used_at]}
    StringEqualsIfExists: {"dynamodb:ReturnValues": [NONE, UPDATED_OLD, UPDATED_NEW]}
"#,
        );
        let update = |names: serde_json::Value, returning: &str| {
            let body = json!({"TableName": "t", "Key": {"pk": {"S": "USER#a"}, "sk": {"S": "LLMKEY#openai"}},
                "UpdateExpression": "SET #n0 = :v0", "ExpressionAttributeNames": names, "ReturnValues": returning});
            accesses("UpdateItem", body.to_string().as_bytes())
        };
        let touch = update(json!({"#n0": "last_used_at", "#n1": "sk"}), "NONE");
        assert!(touch.iter().all(|a| policy.allows(a)), "{touch:?}");
        for refused in [
            update(json!({"#n0": "sealed"}), "NONE"),
            update(json!({"#n0": "last_used_at", "#n1": "expires_at"}), "NONE"),
            update(json!({"#n0": "last_used_at"}), "ALL_NEW"),
        ] {
            assert!(!refused.iter().all(|a| policy.allows(a)), "{refused:?}");
        }
    }
}
