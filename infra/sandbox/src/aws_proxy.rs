//! A loopback proxy in front of an AWS-protocol server (moto) that counts each AWS operation and
//! can fail chosen ones the way AWS fails: a throttling answer, a 500, an answer that never comes,
//! a connection reset, or a write that happened but whose answer was lost. The benchmark counts a
//! function process's calls from outside it; the fault suite makes DynamoDB, KMS and Secrets
//! Manager misbehave under a running API.
//!
//! It speaks just enough HTTP/1.1 for the AWS SDK's JSON protocols: requests framed by
//! `Content-Length`, connections kept alive on both sides as the client and upstream keep them (so
//! latency through it is what the SDK would see); a throttle or 500 answers on the same connection,
//! as AWS does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How an operation fails while a fault is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 `ThrottlingException`, as every one of the three services sends it.
    Throttle,
    /// 500 with the service's internal-error code.
    ServerError,
    /// The request is read and never answered.
    Timeout,
    /// The connection is reset (TCP RST) instead of answered.
    Reset,
    /// The request reaches the service and takes effect, then the answer is lost (a reset): the
    /// caller cannot tell it from `Reset`, and its retry repeats a write that already happened.
    LostAnswer,
    /// The request reaches the service and takes effect; its answer comes after [`LATE`], longer
    /// than keyward's attempt timeout, as a service queueing requests can answer.
    Late,
    /// A `BatchGetItem` answered 200 with every requested key in `UnprocessedKeys` and no item, as
    /// DynamoDB answers when the table's throughput is exhausted.
    Unprocessed,
}

impl Fault {
    pub const ALL: [Fault; 5] = [Fault::Throttle, Fault::ServerError, Fault::Timeout, Fault::Reset, Fault::LostAnswer];
}

/// How late [`Fault::Late`] answers.
pub const LATE: Duration = Duration::from_secs(3);

struct Rule {
    operation: String,
    /// Calls let through before the fault starts.
    pass: usize,
    /// Calls failed before the fault ends by itself; `None`: until healed.
    times: Option<usize>,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<BTreeMap<String, usize>>,
    /// Time spent waiting on the upstream, by operation (forwarded calls only).
    upstream: Mutex<BTreeMap<String, Duration>>,
    rules: Mutex<Vec<Rule>>,
    /// `PutItem`s whose partition key starts with `.0` go to the upstream `.1`.
    partitions: Mutex<Option<(String, String)>>,
}

/// A running proxy; it stops when dropped.
pub struct AwsProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl AwsProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, upstream.clone(), Arc::clone(&serving)));
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Fails every call of `operation` (`DynamoDB.Query`, `KMS.Decrypt`, `SecretsManager.GetSecretValue`…)
    /// after the next `pass` calls, until [`heal`](Self::heal).
    pub fn fail(&self, operation: &str, pass: usize, fault: Fault) {
        self.add_rule(Rule { operation: operation.to_owned(), pass, times: None, fault });
    }

    /// Fails the `times` calls of `operation` after the next `pass`; the calls after them go through.
    pub fn fail_times(&self, operation: &str, pass: usize, times: usize, fault: Fault) {
        self.add_rule(Rule { operation: operation.to_owned(), pass, times: Some(times), fault });
    }

    fn add_rule(&self, rule: Rule) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(rule);
        }
    }

    /// Ends every fault.
    pub fn heal(&self) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.clear();
        }
    }

    /// Sends each `PutItem` whose partition key (`pk`) starts with `prefix` to `upstream`
    /// (`http://host:port`) instead: a second server standing for the storage nodes that hold
    /// those partitions, which DynamoDB serves in parallel with the others. Only single-item writes
    /// move, so a caller must not read those items back or write them in a transaction.
    pub fn serve_partitions_from(&self, prefix: &str, upstream: &str) {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        if let Ok(mut partitions) = self.shared.partitions.lock() {
            *partitions = Some((prefix.to_owned(), upstream));
        }
    }

    /// The calls seen since the last `take`, by operation (each SDK retry is a call).
    pub fn take_counts(&self) -> BTreeMap<String, usize> {
        self.shared.counts.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
    }

    /// The time the upstream took to answer the calls forwarded since the last `take`, by
    /// operation: what a route spends inside AWS, as against in its own code.
    pub fn take_upstream_time(&self) -> BTreeMap<String, Duration> {
        self.shared.upstream.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `X-Amz-Target` as `Service.Operation`.
fn operation(target: &str) -> String {
    let (service, operation) = target.split_once('.').unwrap_or(("unknown", target));
    let service = match service {
        "TrentService" => "KMS",
        "secretsmanager" => "SecretsManager",
        s if s.starts_with("DynamoDB") => "DynamoDB",
        other => other,
    };
    format!("{service}.{operation}")
}

/// The fault for this call of `operation`, if any; counts the call against each rule's `pass`.
fn fault_for(shared: &Shared, operation: &str) -> Option<Fault> {
    let mut rules = shared.rules.lock().ok()?;
    let rule = rules.iter_mut().find(|r| r.operation == operation && r.times != Some(0))?;
    if rule.pass > 0 {
        rule.pass -= 1;
        return None;
    }
    if let Some(times) = &mut rule.times {
        *times -= 1;
    }
    Some(rule.fault)
}

/// One HTTP/1.1 message as read: its head (start line and headers), the headers in it, its body.
struct Message {
    head: Vec<u8>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

type Headers = Vec<(String, String)>;

fn pairs(headers: &[httparse::Header<'_>]) -> Headers {
    headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect()
}

fn request_head(buf: &[u8]) -> Option<(usize, Headers)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Some((len, pairs(request.headers))),
        _ => None,
    }
}

fn response_head(buf: &[u8]) -> Option<(usize, Headers)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Some((len, pairs(response.headers))),
        _ => None,
    }
}

/// Reads one message: a head `parse` accepts, then a body of `Content-Length` bytes (or, without
/// one, none for a request and everything until the peer closes for a response). `None` when the
/// peer closes first.
async fn read_message(
    stream: &mut TcpStream,
    parse: fn(&[u8]) -> Option<(usize, Headers)>,
    body_until_close: bool,
) -> std::io::Result<Option<Message>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let (head_len, headers) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse(&buf) {
            break head;
        }
    };
    let body = buf.split_off(head_len);
    let mut message = Message { head: buf, headers, body };
    match message.content_length() {
        Some(length) => {
            while message.body.len() < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                message.body.extend_from_slice(&chunk[..n]);
            }
        }
        None if body_until_close => {
            stream.read_to_end(&mut message.body).await?;
        }
        None => {}
    }
    Ok(Some(message))
}

/// The upstream [`AwsProxy::serve_partitions_from`] names for this request, if it moves.
fn partition_upstream(shared: &Shared, operation: &str, request: &Message) -> Option<String> {
    let partitions = shared.partitions.lock().ok()?;
    let (prefix, upstream) = partitions.as_ref().filter(|_| operation == "DynamoDB.PutItem")?;
    let body: serde_json::Value = serde_json::from_slice(&request.body).ok()?;
    let pk = body.pointer("/Item/pk/S")?.as_str()?;
    pk.starts_with(prefix.as_str()).then(|| upstream.clone())
}

async fn serve(mut stream: TcpStream, main_upstream: String, shared: Arc<Shared>) {
    // One connection per upstream and client connection, kept alive as the client keeps its own.
    let (mut main_conn, mut partition_conn) = (None, None);
    while let Ok(Some(request)) = read_message(&mut stream, request_head, false).await {
        let operation = operation(request.header("x-amz-target").unwrap_or_default());
        let moved = partition_upstream(&shared, &operation, &request);
        let (upstream, upstream_conn) = match &moved {
            Some(upstream) => (upstream, &mut partition_conn),
            None => (&main_upstream, &mut main_conn),
        };
        if let Ok(mut counts) = shared.counts.lock() {
            *counts.entry(operation.clone()).or_default() += 1;
        }
        let answer = match fault_for(&shared, &operation) {
            None => {
                let started = Instant::now();
                let forwarded = forward(&request, upstream, upstream_conn).await;
                if let Ok(mut upstream) = shared.upstream.lock() {
                    *upstream.entry(operation.clone()).or_default() += started.elapsed();
                }
                forwarded.unwrap_or_else(|_| canned(502, "application/json", "{}"))
            }
            Some(Fault::Throttle) => error_answer(&operation, 400, "ThrottlingException", "Rate exceeded"),
            Some(Fault::ServerError) => {
                error_answer(&operation, 500, internal_error_code(&operation), "Internal error")
            }
            Some(Fault::Timeout) => {
                // Holds the connection well past any client timeout keyward sets.
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
            Some(Fault::Reset) => {
                // Linger 0: closing sends RST, not FIN.
                let _ = stream.set_zero_linger();
                return;
            }
            Some(Fault::Unprocessed) => unprocessed_answer(&request.body),
            Some(Fault::Late) => {
                let forwarded = forward(&request, upstream, upstream_conn).await;
                tokio::time::sleep(LATE).await;
                forwarded.unwrap_or_else(|_| canned(502, "application/json", "{}"))
            }
            Some(Fault::LostAnswer) => {
                let _ = forward(&request, upstream, upstream_conn).await;
                let _ = stream.set_zero_linger();
                return;
            }
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Sends the request on to the upstream over `conn` (connecting first if needed, and once more if
/// a kept connection turns out closed) and returns its whole answer.
async fn forward(request: &Message, upstream: &str, conn: &mut Option<TcpStream>) -> std::io::Result<Vec<u8>> {
    for attempt in 0..2 {
        let reused = conn.is_some();
        let out = match conn {
            Some(out) => out,
            None => conn.insert(TcpStream::connect(upstream).await?),
        };
        let sent = async {
            out.write_all(&request.head).await?;
            out.write_all(&request.body).await?;
            read_message(out, response_head, true)
                .await?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        };
        match sent.await {
            Ok(answer) => {
                let close = answer.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"));
                if close || answer.content_length().is_none() {
                    *conn = None;
                }
                return Ok([answer.head, answer.body].concat());
            }
            Err(e) => {
                *conn = None;
                if !reused || attempt == 1 {
                    return Err(e);
                }
            }
        }
    }
    Err(std::io::Error::other("unreachable"))
}

fn internal_error_code(operation: &str) -> &'static str {
    match operation.split_once('.').map(|(service, _)| service) {
        Some("KMS") => "KMSInternalException",
        Some("SecretsManager") => "InternalServiceError",
        _ => "InternalServerError",
    }
}

/// An AWS JSON-protocol error answer: DynamoDB speaks awsJson 1.0 with a namespaced `__type`; KMS
/// and Secrets Manager speak awsJson 1.1.
fn error_answer(operation: &str, status: u16, code: &str, message: &str) -> Vec<u8> {
    let (content_type, kind) = if operation.starts_with("DynamoDB.") {
        ("application/x-amz-json-1.0", format!("com.amazonaws.dynamodb.v20120810#{code}"))
    } else {
        ("application/x-amz-json-1.1", code.to_owned())
    };
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    canned(status, content_type, &body)
}

/// `BatchGetItem`'s answer when nothing could be read: no item, every requested key unprocessed.
fn unprocessed_answer(request: &[u8]) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(request).unwrap_or_default();
    let requested = request.get("RequestItems").and_then(serde_json::Value::as_object).cloned().unwrap_or_default();
    let responses: serde_json::Map<_, _> =
        requested.keys().map(|table| (table.clone(), serde_json::json!([]))).collect();
    let body = serde_json::json!({ "Responses": responses, "UnprocessedKeys": requested }).to_string();
    canned(200, "application/x-amz-json-1.0", &body)
}

fn canned(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Bad Gateway",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-amzn-requestid: \
         keyward-fault\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers every request with `name` as its body.
    async fn upstream(name: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = read_message(&mut stream, request_head, false).await {
                        let answer = canned(200, "application/x-amz-json-1.0", name);
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    /// Which upstream answered `target` with `body`, over one kept-alive connection.
    async fn answered_by(conn: &mut TcpStream, target: &str, body: &str) -> String {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: proxy\r\nx-amz-target: {target}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let answer = read_message(conn, response_head, false).await.unwrap().unwrap();
        String::from_utf8(answer.body).unwrap()
    }

    #[tokio::test]
    async fn puts_to_the_named_partitions_go_to_their_own_upstream_and_nothing_else_does() {
        let proxy = AwsProxy::start(&upstream("main").await).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let put = |pk: &str| format!(r#"{{"TableName":"t","Item":{{"pk":{{"S":"{pk}"}},"sk":{{"S":"x"}}}}}}"#);
        assert_eq!(answered_by(&mut conn, "DynamoDB_20120810.PutItem", &put("AUDIT#u#3")).await, "main");

        proxy.serve_partitions_from("AUDIT#", &upstream("audit").await);
        assert_eq!(answered_by(&mut conn, "DynamoDB_20120810.PutItem", &put("AUDIT#u#3")).await, "audit");
        assert_eq!(answered_by(&mut conn, "DynamoDB_20120810.PutItem", &put("USER#u")).await, "main");
        let get = r#"{"TableName":"t","Key":{"pk":{"S":"AUDIT#u#3"},"sk":{"S":"x"}}}"#;
        assert_eq!(answered_by(&mut conn, "DynamoDB_20120810.GetItem", get).await, "main");
        assert_eq!(answered_by(&mut conn, "DynamoDB_20120810.PutItem", &put("AUDIT#u#4")).await, "audit");
        assert_eq!(proxy.take_counts().get("DynamoDB.PutItem"), Some(&4));
    }
}
