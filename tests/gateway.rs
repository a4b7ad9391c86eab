//! The gateway over real TCP on loopback: HTTP in, authenticated RPC out, typed errors back as
//! HTTP statuses, and bad requests that never take it down.
//!
//! Every test starts `service.account` and `service.auth` on 127.0.0.1 ephemeral ports (the
//! framework's tokio TCP transport, found through a registry), a gateway on another, and speaks
//! HTTP/1.1 to it by hand, so the test controls exactly what goes on the wire (a lying
//! `Content-Length`, a chunked body, broken JSON). Every test is bounded by a timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use windtunnel::framework::middleware::{ServerMiddleware, ServerNext, ServerRequest};
use windtunnel::framework::transport::{BoxFuture, TcpTransport, Tokio, Transport};
use windtunnel::framework::{
    Client, ClientConfig, Context, Endpoint, Error, Listen, NullSink, Registry, Server,
};
use windtunnel::gateway::{serve, Gateway, GatewayConfig, Route, Routes};
use windtunnel::services::{account, auth};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "tok-alice";
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Counts the requests a server receives, and the user each one carried.
#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    users: Mutex<Vec<String>>,
}

impl ServerMiddleware for Seen {
    fn handle<'a>(
        &'a self,
        ctx: Context,
        req: ServerRequest,
        next: ServerNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let user = ctx.meta("user").unwrap_or("").to_string();
        self.users.lock().expect("users lock").push(user);
        next.run(ctx, req)
    }
}

/// The system under test: its gateway's address and what the account service saw.
struct System {
    gateway: SocketAddr,
    account_seen: Arc<Seen>,
}

fn routes() -> Result<Routes, Box<dyn std::error::Error + Send + Sync>> {
    let create = Route::new(Method::POST, "/accounts", account::NAME, "create")?
        .with_status(StatusCode::CREATED)?;
    Ok(Routes::new()
        .with(create)?
        .with(Route::new(
            Method::GET,
            "/accounts/:id",
            account::NAME,
            "read",
        )?)?
        .with(Route::new(Method::GET, "/slow", account::NAME, "slow")?)?)
}

/// An endpoint that outlives any reasonable deadline.
fn slow_endpoint() -> Endpoint {
    Endpoint::new("slow", |_ctx: Context, _req: Value| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(json!({}))
    })
}

/// Starts `server` on its own transport: a transport listens on an address once, and every
/// server here binds `127.0.0.1:0`.
async fn start_server(server: Server) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    server
        .start(transport(), &Listen::on("127.0.0.1:0"))
        .await?;
    Ok(())
}

fn transport() -> Arc<dyn Transport> {
    let key = windtunnel::framework::DeploymentKey::from_seed(1);
    let credential = windtunnel::framework::Credential::with_os_nonces(key, "test");
    Arc::new(TcpTransport::<Tokio>::with_credential(credential))
}

/// Starts account, auth and the gateway on loopback.
async fn start() -> Result<System, Box<dyn std::error::Error + Send + Sync>> {
    start_with(1024).await
}

/// [`start`], with a gateway that serves at most `max_connections` at once.
async fn start_with(
    max_connections: usize,
) -> Result<System, Box<dyn std::error::Error + Send + Sync>> {
    let registry = Registry::new();
    let events = Arc::new(NullSink);
    let account_srv = Server::with(account::config(), events.clone(), Some(registry.clone()));
    account_srv.add_endpoints(account::endpoints());
    account_srv.add_endpoints([slow_endpoint()]);
    let account_seen = Arc::new(Seen::default());
    account_srv.add_middleware(account_seen.clone());
    start_server(account_srv).await?;
    let tokens = auth::Tokens::from([(
        TOKEN.to_string(),
        auth::Identity::new("alice", &["accounts:write"]),
    )]);
    let auth_srv = Server::with(auth::config(), events, Some(registry.clone()));
    auth_srv.add_endpoints(auth::endpoints(tokens));
    start_server(auth_srv).await?;
    let mut config = ClientConfig::new("gateway");
    config.seed = 1;
    let client = Client::new(config, transport(), registry);
    let mut config = GatewayConfig::new("gateway", Some(auth::NAME));
    config.max_connections = max_connections;
    let gateway = Gateway::new(config, routes()?, client)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, Arc::new(gateway)));
    Ok(System {
        gateway: addr,
        account_seen,
    })
}

/// How a request body goes on the wire.
enum Body {
    None,
    /// With a `Content-Length`.
    Sized(Vec<u8>),
    /// `Transfer-Encoding: chunked`, no length declared.
    Chunked(Vec<u8>),
}

/// One HTTP response, headers keyed in lower case.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn encode(line: &str, headers: &[(&str, &str)], body: Body) -> Vec<u8> {
    let mut out = format!("{line} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut bytes = match &body {
        Body::None => format!("{out}\r\n").into_bytes(),
        Body::Sized(b) => format!("{out}Content-Length: {}\r\n\r\n", b.len()).into_bytes(),
        Body::Chunked(_) => format!("{out}Transfer-Encoding: chunked\r\n\r\n").into_bytes(),
    };
    match body {
        Body::None => {}
        Body::Sized(b) => bytes.extend_from_slice(&b),
        Body::Chunked(b) => {
            for chunk in b.chunks(64 * 1024) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
    }
    bytes
}

/// Sends raw bytes and reads until the server closes; writing runs alongside reading so a
/// server that answers before reading the whole body is still heard.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may stop reading and close early (413): a failed write is expected then.
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived (unread body) ends the exchange, not the test.
            Err(e) if !out.is_empty() => {
                eprintln!("read ended with {e} after {} bytes", out.len());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    writer.abort();
    Ok(out)
}

fn parse(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(n) = headers.get("content-length").and_then(|n| n.parse().ok()) {
        body.truncate(n);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn send(
    addr: SocketAddr,
    line: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let raw = tokio::time::timeout(
        Duration::from_secs(10),
        exchange(addr, encode(line, headers, body)),
    )
    .await??;
    Ok(parse(&raw)?)
}

const AUTH: (&str, &str) = ("Authorization", "Bearer tok-alice");

fn account_json(id: &str) -> Body {
    Body::Sized(
        json!({"id": id, "owner": "alice", "name": "Alice's"})
            .to_string()
            .into_bytes(),
    )
}

/// Runs `test` on a fresh runtime, bounded by [`TEST_LIMIT`].
fn run<F>(test: impl FnOnce() -> F) -> TestResult
where
    F: std::future::Future<Output = TestResult>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async { tokio::time::timeout(TEST_LIMIT, test()).await? })
}

fn is_hex_id(v: Option<&str>) -> bool {
    v.is_some_and(|s| s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn create_answers_201_with_the_account_and_read_returns_it() -> TestResult {
    // Goal: the happy path, end to end. Method: create through the gateway, read it back, and
    // check what the account service saw (one request each, carrying the user).
    run(|| async {
        let sys = start().await?;
        let created = send(
            sys.gateway,
            "POST /accounts",
            &[AUTH],
            account_json("acc-1"),
        )
        .await?;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.json()["id"], "acc-1");
        assert_eq!(created.header("content-type"), Some("application/json"));
        assert!(is_hex_id(created.header("x-request-id")), "{created:?}");
        assert!(is_hex_id(created.header("x-trace-id")), "{created:?}");
        let read = send(sys.gateway, "GET /accounts/acc-1", &[AUTH], Body::None).await?;
        assert_eq!(read.status, 200, "{read:?}");
        assert_eq!(
            read.json(),
            json!({"id": "acc-1", "owner": "alice", "name": "Alice's"})
        );
        assert_ne!(read.header("x-request-id"), created.header("x-request-id"));
        assert_ne!(read.header("x-trace-id"), created.header("x-trace-id"));
        let users = sys.account_seen.users.lock().expect("users lock").clone();
        assert_eq!(users, ["alice", "alice"]);
        Ok(())
    })
}

#[test]
fn requests_without_a_valid_token_are_401_and_reach_no_service() -> TestResult {
    // Goal: authentication comes before routing. Method: no header, a non-bearer header and an
    // unknown token, on a route that exists; the account service must count zero requests.
    run(|| async {
        let sys = start().await?;
        let cases: [(&[(&str, &str)], &str); 3] = [
            (&[], "unauthorized.missing_token"),
            (
                &[("Authorization", "Basic YWxpY2U6eA==")],
                "unauthorized.malformed_token",
            ),
            (
                &[("Authorization", "Bearer nope")],
                "unauthorized.invalid_token",
            ),
        ];
        for (headers, code) in cases {
            let r = send(sys.gateway, "POST /accounts", headers, account_json("x")).await?;
            assert_eq!(r.status, 401, "{r:?}");
            assert_eq!(r.code(), code);
            assert!(is_hex_id(r.header("x-request-id")), "{r:?}");
            assert!(is_hex_id(r.header("x-trace-id")), "{r:?}");
        }
        assert_eq!(sys.account_seen.count.load(Ordering::SeqCst), 0);
        Ok(())
    })
}

#[test]
fn service_errors_map_to_statuses_with_their_code() -> TestResult {
    // Goal: a typed error from a service keeps its code and gets its kind's status. Method: a
    // missing account (404), a duplicate create (412), a deadline shorter than the handler (504).
    run(|| async {
        let sys = start().await?;
        let missing = send(sys.gateway, "GET /accounts/unknown", &[AUTH], Body::None).await?;
        assert_eq!(missing.status, 404, "{missing:?}");
        assert_eq!(missing.code(), "not_found.account");
        assert!(missing.json()["message"].is_string());
        assert!(missing.json()["params"].is_object());
        let first = send(sys.gateway, "POST /accounts", &[AUTH], account_json("dup")).await?;
        assert_eq!(first.status, 201, "{first:?}");
        let again = send(sys.gateway, "POST /accounts", &[AUTH], account_json("dup")).await?;
        assert_eq!(again.status, 412, "{again:?}");
        assert_eq!(again.code(), "precondition_failed.exists");
        let slow = send(
            sys.gateway,
            "GET /slow",
            &[AUTH, ("X-Deadline-Ms", "100")],
            Body::None,
        )
        .await?;
        assert_eq!(slow.status, 504, "{slow:?}");
        assert!(slow.code().starts_with("timeout"), "{slow:?}");
        let bad = send(
            sys.gateway,
            "GET /slow",
            &[AUTH, ("X-Deadline-Ms", "soon")],
            Body::None,
        )
        .await?;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert_eq!(bad.code(), "bad_request.invalid_deadline");
        Ok(())
    })
}

#[test]
fn path_params_merge_into_the_body_and_conflicts_are_refused() -> TestResult {
    // Goal: the path wins no silent fights. Method: a body naming another id than the path.
    run(|| async {
        let sys = start().await?;
        let created = send(sys.gateway, "POST /accounts", &[AUTH], account_json("p-1")).await?;
        assert_eq!(created.status, 201, "{created:?}");
        let same = br#"{"id":"p-1"}"#.to_vec();
        let ok = send(sys.gateway, "GET /accounts/p-1", &[AUTH], Body::Sized(same)).await?;
        assert_eq!(ok.status, 200, "{ok:?}");
        let other = br#"{"id":"p-2"}"#.to_vec();
        let r = send(
            sys.gateway,
            "GET /accounts/p-1",
            &[AUTH],
            Body::Sized(other),
        )
        .await?;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.code(), "bad_request.param_conflict");
        Ok(())
    })
}

/// Sends one bad request and checks its status and JSON error code.
async fn expect_error(
    addr: SocketAddr,
    line: &str,
    body: Body,
    status: u16,
    code: &str,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let r = send(addr, line, &[AUTH], body).await?;
    assert_eq!(r.status, status, "{line}: {r:?}");
    assert_eq!(r.code(), code, "{line}: {r:?}");
    assert!(is_hex_id(r.header("x-request-id")), "{line}: {r:?}");
    Ok(r)
}

#[test]
fn bad_requests_get_json_errors_and_the_gateway_keeps_serving() -> TestResult {
    // Goal: no input takes the gateway down. Method: broken and non-object JSON, 2 MiB bodies
    // (declared, and chunked with no length), an unknown path, a wrong method, bytes that are
    // not HTTP; none may reach the account service, and a good request must still succeed.
    run(|| async {
        let sys = start().await?;
        let gw = sys.gateway;
        let big = vec![b' '; 2 << 20];
        expect_error(
            gw,
            "POST /accounts",
            Body::Sized(b"{\"id\":".to_vec()),
            400,
            "bad_request.invalid_json",
        )
        .await?;
        expect_error(
            gw,
            "POST /accounts",
            Body::Sized(b"[1,2]".to_vec()),
            400,
            "bad_request.not_an_object",
        )
        .await?;
        expect_error(
            gw,
            "POST /accounts",
            Body::Sized(big.clone()),
            413,
            "bad_request.body_too_large",
        )
        .await?;
        expect_error(
            gw,
            "POST /accounts",
            Body::Chunked(big),
            413,
            "bad_request.body_too_large",
        )
        .await?;
        expect_error(gw, "GET /nowhere", Body::None, 404, "not_found.route").await?;
        let r = expect_error(
            gw,
            "DELETE /accounts/a1",
            Body::None,
            405,
            "bad_request.method_not_allowed",
        )
        .await?;
        assert_eq!(r.header("allow"), Some("GET"));
        let r = expect_error(
            gw,
            "GET /accounts",
            Body::None,
            405,
            "bad_request.method_not_allowed",
        )
        .await?;
        assert_eq!(r.header("allow"), Some("POST"));
        let garbage = tokio::time::timeout(
            Duration::from_secs(10),
            exchange(gw, b"\x00\x01 not http at all\r\n\r\n".to_vec()),
        )
        .await?;
        // hyper answers what it cannot parse with a 400, or closes: either way, not a hang.
        if let Ok(raw) = garbage {
            let head = String::from_utf8_lossy(&raw);
            assert!(raw.is_empty() || head.starts_with("HTTP/1.1 400"), "{head}");
        }
        assert_eq!(sys.account_seen.count.load(Ordering::SeqCst), 0);
        let good = send(gw, "POST /accounts", &[AUTH], account_json("after")).await?;
        assert_eq!(good.status, 201, "{good:?}");
        assert_eq!(sys.account_seen.count.load(Ordering::SeqCst), 1);
        Ok(())
    })
}

#[test]
fn a_body_that_never_arrives_is_408_at_the_deadline() -> TestResult {
    // Goal: a client trickling its body cannot hold the gateway past the request's deadline.
    // Method: declare 100 bytes, send 5 and wait; the answer must come at the 100 ms deadline,
    // and the account service must not be called.
    run(|| async {
        let sys = start().await?;
        let raw = "POST /accounts HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\
                   Authorization: Bearer tok-alice\r\nX-Deadline-Ms: 100\r\n\
                   Content-Length: 100\r\n\r\n{\"id\"";
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            exchange(sys.gateway, raw.as_bytes().to_vec()),
        )
        .await??;
        let r = parse(&reply)?;
        assert_eq!(r.status, 408, "{r:?}");
        assert_eq!(r.code(), "timeout.body");
        assert_eq!(sys.account_seen.count.load(Ordering::SeqCst), 0);
        Ok(())
    })
}

#[test]
fn a_client_that_half_closes_after_its_request_still_gets_the_answer() -> TestResult {
    // Goal: `printf 'GET ...' | nc -N` style clients (write the request, shut down their
    // sending side, then read) are answered. Method: twenty such requests on fresh connections.
    run(|| async {
        let sys = start().await?;
        for i in 0..20 {
            let mut stream = TcpStream::connect(sys.gateway).await?;
            let request = format!(
                "GET /accounts/acc-{i} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            stream.shutdown().await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            let reply = parse(&raw)?;
            assert_eq!(reply.status, 404, "request {i}: {reply:?}");
        }
        Ok(())
    })
}

#[test]
fn idle_connections_cannot_keep_a_new_client_out() -> TestResult {
    // Goal: a client that opens connections and leaves them idle does not fill the gateway
    // for the header timeout (10 s). Method: a gateway of 4 connections, 4 idle ones held
    // open, then a request on a fifth: it is answered within a second, and the oldest idle
    // connection was closed to make room.
    run(|| async {
        let sys = start_with(4).await?;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(sys.gateway).await?);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            send(sys.gateway, "GET /accounts/nope", &[AUTH], Body::None),
        )
        .await
        .map_err(|_| "the fifth client waited for an idle connection's slot")??;
        assert_eq!(answered.status, 404, "{answered:?}");
        let mut buf = [0u8; 1];
        let oldest =
            tokio::time::timeout(std::time::Duration::from_secs(1), idle[0].read(&mut buf)).await;
        assert!(
            matches!(oldest, Ok(Ok(0)) | Ok(Err(_))),
            "the oldest idle connection was closed"
        );
        Ok(())
    })
}
