//! `keyward-admin doctor`: who may invoke keyward's functions directly. Invoking one is every
//! internal grant at once (SECURITY.md), and the invoke guard protects only where it is attached,
//! so this asks IAM's policy simulator, for every role and user of the account, whether it may
//! invoke each function, and lists those that may: the principals outside the guard.

use std::collections::BTreeSet;

use aws_sdk_iam::Client;
use aws_sdk_iam::error::DisplayErrorContext;
use aws_sdk_iam::types::PolicyEvaluationDecisionType;

/// Every way to invoke a function (the actions the invoke guard denies).
const INVOKE_ACTIONS: [&str; 3] = ["lambda:InvokeFunction", "lambda:InvokeAsync", "lambda:InvokeWithResponseStream"];

/// A principal that may invoke some of the functions.
#[derive(Debug)]
pub struct Exposure {
    pub principal: String,
    /// The functions it may invoke, by name.
    pub functions: BTreeSet<String>,
}

/// What the simulation found.
#[derive(Debug, Default)]
pub struct Report {
    pub principals: usize,
    pub exposed: Vec<Exposure>,
    /// Context keys of conditions the simulator could not evaluate without a request (statements
    /// that may allow or deny in practice): the operator checks those principals by hand.
    pub unevaluated: BTreeSet<(String, String)>,
}

fn failed(what: &str, error: impl std::error::Error + 'static) -> String {
    format!("{what}: {}", DisplayErrorContext(error))
}

/// Every role's and user's ARN in the account.
async fn principals(iam: &Client) -> Result<Vec<String>, String> {
    let roles = iam.list_roles().into_paginator().items().send().try_collect().await;
    let users = iam.list_users().into_paginator().items().send().try_collect().await;
    let roles = roles.map_err(|e| failed("ListRoles", e))?.into_iter().map(|r| r.arn);
    Ok(roles.chain(users.map_err(|e| failed("ListUsers", e))?.into_iter().map(|u| u.arn)).collect())
}

/// Simulates every principal of the account invoking each of `functions` (ARNs).
pub async fn check(iam: &Client, functions: &[String]) -> Result<Report, String> {
    let mut report = Report::default();
    for principal in principals(iam).await? {
        report.principals += 1;
        let results = iam
            .simulate_principal_policy()
            .policy_source_arn(&principal)
            .set_action_names(Some(INVOKE_ACTIONS.map(String::from).to_vec()))
            .set_resource_arns(Some(functions.to_vec()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| failed("SimulatePrincipalPolicy", e))?;
        let mut may = BTreeSet::new();
        for result in results {
            if result.eval_decision() == &PolicyEvaluationDecisionType::Allowed {
                let function = result.eval_resource_name().unwrap_or("*");
                may.insert(function.rsplit(':').next().unwrap_or(function).to_owned());
            }
            for key in result.missing_context_values() {
                report.unevaluated.insert((principal.clone(), key.clone()));
            }
        }
        if !may.is_empty() {
            report.exposed.push(Exposure { principal, functions: may });
        }
    }
    Ok(report)
}
