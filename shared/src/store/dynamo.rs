//! DynamoDB adapter: keyward's single table, with conditions as condition expressions and
//! transactions as `TransactWriteItems`. Throttling is retried by the SDK's standard retry strategy.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};

use super::StoreError;
use super::table::{
    Attr, Changes, Condition, Cursor, EXPIRES_AT, GSI1, GSI1PK, GSI1SK, Index, Item, Key, PK, Page, Query, SK, Table,
    Write, now_epoch,
};
use crate::aws_client::LazyClient;

/// `BatchGetItem`'s limit of keys per request.
const BATCH_GET_MAX_KEYS: usize = 100;
/// How often unprocessed keys of a batch are asked again, and the first back-off (doubling): 25,
/// 50, 100, 200 ms, under the SDK's 5 s operation limit and well inside a function's timeout.
const UNPROCESSED_RETRIES: u32 = 4;
const UNPROCESSED_BACKOFF: Duration = Duration::from_millis(25);

#[derive(Clone)]
pub struct DynamoTable {
    client: LazyClient<Client>,
    table_name: String,
}

impl DynamoTable {
    pub fn new(client: impl Into<LazyClient<Client>>, table_name: impl Into<String>) -> Self {
        Self { client: client.into(), table_name: table_name.into() }
    }

    /// One `UpdateItem`, answering with what `returning` asks for.
    async fn update_item(
        &self,
        key: &Key,
        changes: &Changes,
        when: Option<&Condition>,
        returning: ReturnValue,
    ) -> Result<UpdateItemOutput, StoreError> {
        let mut expr = Expr::default();
        let update = expr.update(changes);
        let condition = when.map(|c| expr.condition(c, now_epoch()));
        self.client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(key)))
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(returning)
            .send()
            .await
            .map_err(classify)
    }
}

/// Creates keyward's table (on-demand, the GSI, TTL on `expires_at`): the same schema as
/// `template.yaml`, for moto and local bootstrap.
pub async fn create_table(client: &Client, table_name: &str) -> Result<(), StoreError> {
    let attr =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1PK, KeyType::Hash).map_err(invalid)?)
        .key_schema(key(GSI1SK, KeyType::Range).map_err(invalid)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(invalid)?;
    client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK).map_err(invalid)?)
        .attribute_definitions(attr(SK).map_err(invalid)?)
        .attribute_definitions(attr(GSI1PK).map_err(invalid)?)
        .attribute_definitions(attr(GSI1SK).map_err(invalid)?)
        .key_schema(key(PK, KeyType::Hash).map_err(invalid)?)
        .key_schema(key(SK, KeyType::Range).map_err(invalid)?)
        .global_secondary_indexes(gsi)
        .send()
        .await
        .map_err(classify)?;
    client
        .update_time_to_live()
        .table_name(table_name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name(EXPIRES_AT).build().map_err(invalid)?,
        )
        .send()
        .await
        .map_err(classify)?;
    Ok(())
}

fn invalid(err: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(err.to_string())
}

fn to_av(attr: &Attr) -> AttributeValue {
    match attr {
        Attr::S(s) => AttributeValue::S(s.clone()),
        Attr::N(n) => AttributeValue::N(n.to_string()),
        Attr::B(b) => AttributeValue::B(Blob::new(b.clone())),
        Attr::Bool(b) => AttributeValue::Bool(*b),
        Attr::L(list) => AttributeValue::L(list.iter().cloned().map(AttributeValue::S).collect()),
    }
}

fn from_av(name: &str, value: &AttributeValue) -> Result<Attr, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("attribute `{name}` has an unsupported type"));
    Ok(match value {
        AttributeValue::S(s) => Attr::S(s.clone()),
        AttributeValue::N(n) => Attr::N(n.parse().map_err(|_| corrupt())?),
        AttributeValue::B(b) => Attr::B(b.as_ref().to_vec()),
        AttributeValue::Bool(b) => Attr::Bool(*b),
        AttributeValue::L(list) => {
            Attr::L(list.iter().map(|v| v.as_s().cloned().map_err(|_| corrupt())).collect::<Result<_, _>>()?)
        }
        _ => return Err(corrupt()),
    })
}

fn to_map(item: &Item) -> HashMap<String, AttributeValue> {
    item.0.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()
}

fn from_map(map: &HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    map.iter().map(|(k, v)| Ok((k.clone(), from_av(k, v)?))).collect::<Result<_, _>>().map(Item)
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// Placeholder names and values of one request's expressions.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, name: &str) -> String {
        let placeholder = format!("#{name}");
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn condition(&mut self, condition: &Condition, now: i64) -> String {
        match condition {
            Condition::Absent => {
                let (pk, exp, now) =
                    (self.name(PK), self.name(EXPIRES_AT), self.value(AttributeValue::N(now.to_string())));
                format!("(attribute_not_exists({pk}) OR {exp} <= {now})")
            }
            Condition::Present => {
                let (pk, exp, now) =
                    (self.name(PK), self.name(EXPIRES_AT), self.value(AttributeValue::N(now.to_string())));
                format!("(attribute_exists({pk}) AND (attribute_not_exists({exp}) OR {exp} > {now}))")
            }
            Condition::Equals(name, value) => {
                let (n, v) = (self.name(name), self.value(to_av(value)));
                format!("{n} = {v}")
            }
            Condition::MissingOrBelow(name, bound) => {
                let (n, v) = (self.name(name), self.value(AttributeValue::N(bound.to_string())));
                format!("(attribute_not_exists({n}) OR {n} < {v})")
            }
            Condition::All(parts) => {
                let parts: Vec<String> = parts.iter().map(|c| self.condition(c, now)).collect();
                format!("({})", parts.join(" AND "))
            }
        }
    }

    fn update(&mut self, changes: &Changes) -> String {
        let mut set: Vec<String> = Vec::new();
        for (name, value) in &changes.set {
            let (n, v) = (self.name(name), self.value(to_av(value)));
            set.push(format!("{n} = {v}"));
        }
        for (name, value) in &changes.set_if_missing {
            let (n, v) = (self.name(name), self.value(to_av(value)));
            set.push(format!("{n} = if_not_exists({n}, {v})"));
        }
        let mut clauses = Vec::new();
        if !set.is_empty() {
            clauses.push(format!("SET {}", set.join(", ")));
        }
        if !changes.add.is_empty() {
            let adds: Vec<String> = changes
                .add
                .iter()
                .map(|(name, delta)| {
                    let (n, v) = (self.name(name), self.value(AttributeValue::N(delta.to_string())));
                    format!("{n} {v}")
                })
                .collect();
            clauses.push(format!("ADD {}", adds.join(", ")));
        }
        if !changes.remove.is_empty() {
            let removes: Vec<String> = changes.remove.iter().map(|name| self.name(name)).collect();
            clauses.push(format!("REMOVE {}", removes.join(", ")));
        }
        clauses.join(" ")
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Maps an SDK failure to the store's outcome. Throttling reaches here only after the SDK's retries.
fn classify<E: ProvideErrorMetadata>(err: SdkError<E, HttpResponse>) -> StoreError {
    match &err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ConditionalCheckFailedException") => StoreError::ConditionFailed { failed: vec![0] },
            Some("ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded") => {
                StoreError::Throttled
            }
            Some("TransactionConflictException") => StoreError::Conflict,
            Some("InternalServerError" | "ServiceUnavailable") => {
                StoreError::Unavailable(service.err().code().unwrap_or_default().to_owned())
            }
            _ if service.raw().status().is_server_error() => {
                StoreError::Unavailable(format!("DynamoDB answered {}", service.raw().status().as_u16()))
            }
            code => StoreError::Invalid(format!(
                "{}: {}",
                code.unwrap_or("unknown DynamoDB error"),
                service.err().message().unwrap_or_default()
            )),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable("DynamoDB unreachable".into())
        }
        _ => StoreError::Invalid("DynamoDB request could not be built".into()),
    }
}

fn classify_transaction(err: SdkError<TransactWriteItemsError, HttpResponse>) -> StoreError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() {
        let reasons = cancel.cancellation_reasons();
        let failed: Vec<usize> = reasons
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
            .map(|(i, _)| i)
            .collect();
        if !failed.is_empty() {
            return StoreError::ConditionFailed { failed };
        }
        if reasons.iter().any(|r| matches!(r.code(), Some("ThrottlingError" | "ProvisionedThroughputExceeded"))) {
            return StoreError::Throttled;
        }
        return StoreError::Conflict;
    }
    classify(err)
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let now = now_epoch();
        out.item.as_ref().map(from_map).transpose().map(|item| item.filter(|i| i.is_live(now)))
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        // One key (an internal fetch of one provider's key, the usual one) is a GetItem: the
        // cheapest read DynamoDB serves, with no unprocessed keys to ask for again.
        if let [key] = keys {
            return Ok(self.get(key).await?.into_iter().collect());
        }
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(key_map).collect()))
                .consistent_read(true)
                .build()
                .map_err(invalid)?;
            // DynamoDB answers what its throughput allowed and names the rest `UnprocessedKeys`,
            // to be asked again after a back-off; a key left out must not read as a missing item.
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table_name, pending)
                    .send()
                    .await
                    .map_err(classify)?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table_name)).unwrap_or_default() {
                    items.push(from_map(&item)?);
                }
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table_name)) {
                    Some(rest) if !rest.keys.is_empty() => {
                        if attempt == UNPROCESSED_RETRIES {
                            return Err(StoreError::Throttled);
                        }
                        tokio::time::sleep(UNPROCESSED_BACKOFF * 2u32.pow(attempt)).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        let now = now_epoch();
        Ok(items.into_iter().filter(|i| i.is_live(now)).collect())
    }

    async fn put(&self, item: Item, when: Option<Condition>) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let condition = when.map(|c| expr.condition(&c, now_epoch()));
        self.client
            .put_item()
            .table_name(&self.table_name)
            .set_item(Some(to_map(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn update(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<Item, StoreError> {
        let out = self.update_item(key, &changes, when.as_ref(), ReturnValue::AllNew).await?;
        from_map(out.attributes.as_ref().ok_or_else(|| StoreError::Corrupt("update returned no item".into()))?)
    }

    async fn update_blind(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<(), StoreError> {
        self.update_item(key, &changes, when.as_ref(), ReturnValue::None).await.map(|_| ())
    }

    async fn delete(&self, key: &Key, when: Option<Condition>) -> Result<Option<Item>, StoreError> {
        let mut expr = Expr::default();
        let now = now_epoch();
        let condition = when.map(|c| expr.condition(&c, now));
        let out = self
            .client
            .delete_item()
            .table_name(&self.table_name)
            .set_key(Some(key_map(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        out.attributes.as_ref().map(from_map).transpose().map(|item| item.filter(|i| i.is_live(now)))
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let mut expr = Expr::default();
        let (pk_name, sk_name) = match query.index {
            Index::Table => (PK, SK),
            Index::Gsi1 => (GSI1PK, GSI1SK),
        };
        let (pk, partition) = (expr.name(pk_name), expr.value(AttributeValue::S(query.partition.clone())));
        let mut key_condition = format!("{pk} = {partition}");
        if let Some(prefix) = &query.sort_prefix {
            let (sk, prefix) = (expr.name(sk_name), expr.value(AttributeValue::S(prefix.clone())));
            key_condition.push_str(&format!(" AND begins_with({sk}, {prefix})"));
        }
        let (exp, now) = (expr.name(EXPIRES_AT), expr.value(AttributeValue::N(now_epoch().to_string())));
        let filter = format!("attribute_not_exists({exp}) OR {exp} > {now}");
        let start = query.start_after.as_ref().map(start_key);
        let out = self
            .client
            .query()
            .table_name(&self.table_name)
            .set_index_name((query.index == Index::Gsi1).then(|| GSI1.to_owned()))
            .key_condition_expression(key_condition)
            .filter_expression(filter)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(query.ascending)
            .limit(query.limit.min(1000) as i32)
            .set_consistent_read((query.index == Index::Table).then_some(true))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        let items = out.items().iter().map(from_map).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: out.last_evaluated_key.map(cursor_of).transpose()? })
    }

    async fn scan(&self, after: Option<&Cursor>, limit: u32) -> Result<Page, StoreError> {
        let mut expr = Expr::default();
        let (exp, now) = (expr.name(EXPIRES_AT), expr.value(AttributeValue::N(now_epoch().to_string())));
        let filter = format!("attribute_not_exists({exp}) OR {exp} > {now}");
        let out = self
            .client
            .scan()
            .table_name(&self.table_name)
            .filter_expression(filter)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .set_exclusive_start_key(after.map(start_key))
            .send()
            .await
            .map_err(classify)?;
        let items = out.items().iter().map(from_map).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: out.last_evaluated_key.map(cursor_of).transpose()? })
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let now = now_epoch();
        let mut items = Vec::with_capacity(writes.len());
        for write in &writes {
            let mut expr = Expr::default();
            let item = match write {
                Write::Put { item, when } => {
                    let condition = when.as_ref().map(|c| expr.condition(c, now));
                    let put = Put::builder()
                        .table_name(&self.table_name)
                        .set_item(Some(to_map(item)))
                        .set_condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(invalid)?;
                    TransactWriteItem::builder().put(put).build()
                }
                Write::Update { key, changes, when } => {
                    let update_expression = expr.update(changes);
                    let condition = when.as_ref().map(|c| expr.condition(c, now));
                    let update = Update::builder()
                        .table_name(&self.table_name)
                        .set_key(Some(key_map(key)))
                        .update_expression(update_expression)
                        .set_condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(invalid)?;
                    TransactWriteItem::builder().update(update).build()
                }
                Write::Delete { key, when } => {
                    let condition = when.as_ref().map(|c| expr.condition(c, now));
                    let delete = Delete::builder()
                        .table_name(&self.table_name)
                        .set_key(Some(key_map(key)))
                        .set_condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(invalid)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
            };
            items.push(item);
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(classify_transaction)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "dynamodb"
    }
}

/// DynamoDB's `ExclusiveStartKey` for a cursor.
fn start_key(cursor: &Cursor) -> HashMap<String, AttributeValue> {
    cursor.0.iter().map(|(k, v)| (k.clone(), AttributeValue::S(v.clone()))).collect()
}

/// A cursor for DynamoDB's `LastEvaluatedKey`.
fn cursor_of(key: HashMap<String, AttributeValue>) -> Result<Cursor, StoreError> {
    key.iter()
        .map(|(k, v)| v.as_s().map(|s| (k.clone(), s.clone())))
        .collect::<Result<_, _>>()
        .map(Cursor)
        .map_err(|_| StoreError::Corrupt("non-string key attribute".into()))
}
