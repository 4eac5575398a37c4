//! Test support shared by the origin and regional integration tests: real
//! servers on loopback, a real S3-compatible server, and a QUIC client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_origin::{Origin, OriginConfig, OriginServer, StoreConfig};
use kv_proto::{
    DeleteRequest, GetRequest, Key, ListRequest, Metadata, Namespace, Op, PutRequest, Request,
    Response,
};
use kv_runtime::quic::{Connector, Link, TransportOptions};
use kv_runtime::tls::{TlsConfig, TlsIdentity};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Dev certificates in `dir/certs`, generated once per test.
pub fn dev_tls(dir: &Path) -> TlsConfig {
    TlsConfig {
        dev_certs: Some(dir.join("certs")),
        ..TlsConfig::default()
    }
}

/// A client link to `addr` with the identity in `tls`.
pub fn link(tls: &TlsConfig, addr: SocketAddr) -> Link {
    let identity = tls.load().expect("test certificates load");
    let connector =
        Connector::new(&identity, TransportOptions::default()).expect("client endpoint");
    connector.link(addr, "localhost", Duration::from_secs(10))
}

/// A server spawned on the test runtime, stopped by [`Running::stop`].
pub struct Running<T> {
    pub addr: SocketAddr,
    pub node: Arc<T>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl<T> Running<T> {
    /// Shuts the server down gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("server stops within 20 s")
            .expect("server task ran to completion");
    }
}

/// Runs `serve` with a shutdown signal the returned handle controls.
pub fn spawn_server<T, F, Fut>(addr: SocketAddr, node: Arc<T>, serve: F) -> Running<T>
where
    F: FnOnce(oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(stopped));
    Running {
        addr,
        node,
        stop: Some(stop),
        task,
    }
}

/// An origin on an ephemeral loopback port over `store`.
pub fn start_origin(tls: &TlsConfig, store: StoreConfig) -> Running<Origin> {
    let config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store,
        tls: tls.clone(),
        ..OriginConfig::default()
    };
    serve_origin(OriginServer::bind(&config).expect("origin starts"))
}

/// Serves a bound origin on the test runtime.
pub fn serve_origin(server: OriginServer) -> Running<Origin> {
    let addr = server.local_addr().unwrap();
    let node = server.origin().clone();
    spawn_server(addr, node, move |stopped| async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await;
    })
}

/// A `file://` store in `dir`.
pub fn file_store(dir: &Path) -> StoreConfig {
    StoreConfig {
        url: format!("file://{}", dir.display()),
        ..StoreConfig::default()
    }
}

/// A real S3-compatible server (s3s-fs) on loopback, killed on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    _root: tempfile::TempDir,
}

pub const S3_ACCESS_KEY: &str = "tierkv-test";
pub const S3_SECRET_KEY: &str = "tierkv-test-secret";

impl S3Server {
    /// Starts s3s-fs with one bucket, `bucket`, and waits until it accepts connections.
    pub fn start(bucket: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        let port = free_tcp_port();
        let binary = which_s3s_fs();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(
            Duration::from_secs(20),
            || TcpStream::connect(addr).is_ok(),
            "s3s-fs to listen",
        );
        Self {
            child,
            endpoint: format!("http://{addr}"),
            _root: root,
        }
    }

    /// A store config for `s3://bucket/prefix` on this server.
    pub fn store(&self, bucket: &str, prefix: &str) -> StoreConfig {
        StoreConfig {
            url: format!("s3://{bucket}/{prefix}"),
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: Some("us-east-1".into()),
            s3_access_key_id: Some(S3_ACCESS_KEY.into()),
            s3_secret_access_key: Some(S3_SECRET_KEY.into()),
            s3_allow_http: true,
            ..StoreConfig::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which_s3s_fs() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")));
    for dir in candidates {
        let path = dir.join("s3s-fs");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "s3s-fs is not installed; the S3 tests need it: \
         cargo install s3s-fs --version 0.14.1 --features binary --locked"
    );
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` until it holds, failing the test after `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// As [`wait_until`], without blocking the runtime's thread, so that tasks
/// on a single-threaded test runtime go on while it waits.
pub async fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

pub fn key(name: &str) -> Key {
    Key::new(name).unwrap()
}

pub async fn get(link: &Link, namespace: &str, k: &str) -> Response {
    send(link, Op::Get(GetRequest::new(ns(namespace), key(k)))).await
}

pub async fn get_min(link: &Link, namespace: &str, k: &str, min_version: u64) -> Response {
    let mut request = GetRequest::new(ns(namespace), key(k));
    request.min_version = Some(min_version);
    send(link, Op::Get(request)).await
}

pub async fn put(link: &Link, namespace: &str, k: &str, value: impl Into<Bytes>) -> Response {
    put_with(link, namespace, k, value, None, None).await
}

pub async fn put_with(
    link: &Link,
    namespace: &str,
    k: &str,
    value: impl Into<Bytes>,
    expiration: Option<u64>,
    metadata: Option<&str>,
) -> Response {
    let mut request = PutRequest::new(ns(namespace), key(k), value.into()).unwrap();
    request.expiration = expiration;
    request.metadata =
        metadata.map(|m| Metadata::new(Bytes::copy_from_slice(m.as_bytes())).unwrap());
    send(link, Op::Put(request)).await
}

pub async fn delete(link: &Link, namespace: &str, k: &str) -> Response {
    send(link, Op::Delete(DeleteRequest::new(ns(namespace), key(k)))).await
}

pub async fn list(
    link: &Link,
    namespace: &str,
    prefix: &str,
    cursor: &str,
    limit: u16,
) -> Response {
    let request = ListRequest {
        namespace: ns(namespace),
        prefix: prefix.into(),
        cursor: cursor.into(),
        limit,
    };
    send(link, Op::List(request)).await
}

pub async fn send(link: &Link, op: Op) -> Response {
    link.request(&Request::new(op))
        .await
        .expect("request answered")
}

/// The value of a successful GET.
pub fn value(response: &Response) -> Bytes {
    match &response.body {
        kv_proto::Body::Entry(entry) => entry.value.clone(),
        other => panic!("expected a value, got {:?} {other:?}", response.status),
    }
}

/// The version of a successful PUT or DELETE.
pub fn written(response: &Response) -> u64 {
    match &response.body {
        kv_proto::Body::Written { version, .. } => *version,
        other => panic!("expected a write ack, got {:?} {other:?}", response.status),
    }
}

/// A raw client connection, for sending bytes that are not valid frames.
pub async fn raw_connection(tls: &TlsConfig, addr: SocketAddr) -> quinn::Connection {
    let identity: TlsIdentity = tls.load().unwrap();
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(identity.client_config().unwrap())
            .unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(addr, "localhost")
        .unwrap()
        .await
        .expect("raw connection")
}

/// Writes `bytes` on a new stream of `connection` and reads the response frame.
pub async fn raw_exchange(connection: &quinn::Connection, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // The server may stop reading early (an oversized frame); that is fine.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let body = kv_runtime::quic::frames::read_frame_body(&mut recv, kv_proto::FrameKind::Response)
        .await
        .expect("a response frame");
    kv_proto::decode_response(body).expect("a valid response")
}

/// Runs `command` to completion, killing it if it outlives `timeout`.
pub fn run_briefly(mut command: Command, timeout: Duration) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("still running after {timeout:?}: a bad config was accepted");
        }
    }
}

/// Runs `command --help` and checks that it lists every one of `flags`.
pub fn assert_help_lists(mut command: Command, flags: &[&str]) -> String {
    let out = command.arg("--help").output().unwrap();
    assert!(out.status.success(), "--help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in flags {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    help
}

/// Runs `command`, which must refuse its configuration: exit non-zero
/// (within 20 s) with `expected` in its stderr.
pub fn assert_refused(command: Command, expected: &str) {
    let what = format!("{:?}", command.get_args().collect::<Vec<_>>());
    let out = run_briefly(command, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} was accepted");
    assert!(
        stderr.contains(expected),
        "{what}: expected {expected:?} in {stderr}"
    );
}

/// Starts `command` with its stderr lines sent to the returned channel.
fn spawn_reading_stderr(mut command: Command) -> (Child, mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (child, received)
}

/// Starts `command`, waits for a stderr line containing `ready`, sends
/// SIGTERM, and checks that it exits successfully within 20 s. Returns the
/// stderr lines that followed readiness.
pub fn run_until_sigterm(command: Command, ready: &str) -> Vec<String> {
    let (mut child, received) = spawn_reading_stderr(command);
    let became_ready = received.iter().any(|line| line.contains(ready));
    assert!(became_ready, "never printed {ready:?}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = exited
        .recv_timeout(Duration::from_secs(20))
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    received.try_iter().collect()
}

/// A plain HTTP/1.0 GET over a TCP socket: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Starts `command`, waits for `ready` on stderr, runs `check` while it
/// serves, then stops it with SIGKILL.
pub fn while_serving(command: Command, ready: &str, check: impl FnOnce()) {
    let (mut child, received) = spawn_reading_stderr(command);
    let became_ready = received.iter().any(|line| line.contains(ready));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(became_ready, "never printed {ready:?}");
        check();
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
