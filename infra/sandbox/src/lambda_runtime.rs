//! A Lambda Runtime API emulator on loopback (`/2018-06-01/runtime/...`): hands one event at a time
//! to the function process it serves and reports when each answer arrives. The benchmarks run the
//! release-built functions under it; the tests run the real function binaries under it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc, oneshot};

/// A function's answer to one invocation.
pub struct Answer {
    pub ok: bool,
    pub body: Bytes,
}

struct Shared {
    first_next: std::sync::Mutex<Option<oneshot::Sender<Instant>>>,
    events: Mutex<mpsc::Receiver<(String, Bytes)>>,
    answers: mpsc::UnboundedSender<(String, Answer)>,
}

/// The runtime API of one function process.
pub struct Emulator {
    pub addr: SocketAddr,
    events: mpsc::Sender<(String, Bytes)>,
    answers: mpsc::UnboundedReceiver<(String, Answer)>,
    first_next: Option<oneshot::Receiver<Instant>>,
    invocations: u64,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl Emulator {
    pub async fn start() -> std::io::Result<Self> {
        let (events_tx, events_rx) = mpsc::channel(1);
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            first_next: std::sync::Mutex::new(Some(first_tx)),
            events: Mutex::new(events_rx),
            answers: answers_tx,
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(response))
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, events: events_tx, answers: answers_rx, first_next: Some(first_rx), invocations: 0 })
    }

    /// When the process first asked for an event (the end of its init).
    pub async fn first_next(&mut self, timeout: Duration) -> Option<Instant> {
        let waiting = self.first_next.take()?;
        tokio::time::timeout(timeout, waiting).await.ok()?.ok()
    }

    /// Delivers `event` and waits for its answer; the time from delivery to answer.
    pub async fn invoke(&mut self, event: &[u8]) -> Result<(Duration, Answer), String> {
        self.invocations += 1;
        let id = format!("invocation-{:08}", self.invocations);
        let started = Instant::now();
        self.events.send((id.clone(), Bytes::copy_from_slice(event))).await.map_err(|_| "emulator stopped")?;
        let (answered, answer) = tokio::time::timeout(Duration::from_secs(30), self.answers.recv())
            .await
            .map_err(|_| format!("{id}: no answer in 30 s"))?
            .ok_or("emulator stopped")?;
        if answered != id {
            return Err(format!("answer for {answered}, expected {id}"));
        }
        Ok((started.elapsed(), answer))
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(first) = shared.first_next.lock().ok().and_then(|mut f| f.take()) {
        let _ = first.send(Instant::now());
    }
    let Some((id, event)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
    let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:emulated".into());
    set("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".into());
    set("content-type", "application/json".into());
    (headers, event).into_response()
}

async fn response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let _ = shared.answers.send((id, Answer { ok: true, body }));
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let _ = shared.answers.send((id, Answer { ok: false, body }));
    StatusCode::ACCEPTED
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!("function init error: {}", String::from_utf8_lossy(&body));
    StatusCode::ACCEPTED
}
