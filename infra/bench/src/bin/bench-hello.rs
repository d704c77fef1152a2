//! The floor: a bare `lambda_runtime` function built with the same profile and on the same
//! one-thread tokio runtime as keyward's functions, answering every event with a fixed API Gateway
//! response.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(
            json!({"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{\"status\":\"ok\"}"}),
        )
    }))
    .await
}
