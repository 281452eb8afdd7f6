//! The API client against a local Unix-socket server that answers as
//! Firecracker's does (`HTTP/1.1 204 ` without a reason or `Content-Length`,
//! connections kept alive), and the wait for the API socket. Request bodies
//! and canned answers are checked against Firecracker's API description.

#![allow(clippy::unwrap_used)]

use runcvm_vmm::firecracker::api::{LOG_TAIL_LINES, Method};
use runcvm_vmm::firecracker::schema::ApiDescription;
use runcvm_vmm::firecracker::{
    ActionType, ApiClient, ApiError, InstanceActionInfo, InstanceInfo, InstanceState, wait_for_socket,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;
use common::api;

/// What the fake server received.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &UnixStream) -> Request {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut words = line.split_whitespace();
    let method = words.next().unwrap().to_owned();
    let path = words.next().unwrap().to_owned();
    assert_eq!(words.next(), Some("HTTP/1.1"), "{line:?}");
    assert!(line.ends_with("\r\n"), "{line:?}");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.strip_suffix("\r\n").expect("headers end with CRLF");
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(": ").unwrap();
        headers.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    Request {
        method,
        path,
        headers,
        body,
    }
}

/// A server on a fresh socket that answers one connection with `answer`
/// (raw bytes) and then keeps it open until the client goes, as
/// Firecracker's keep-alive server does. Returns the socket and the request.
fn serve(answer: &'static [u8]) -> (tempfile::TempDir, PathBuf, mpsc::Receiver<Request>, JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (sender, receiver) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&stream);
        sender.send(request).unwrap();
        stream.write_all(answer).unwrap();
        // Keep-alive: wait for the client to close.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    (dir, socket, receiver, server)
}

fn firecracker_answer(status: u16, body: &str) -> &'static [u8] {
    let mut answer = format!("HTTP/1.1 {status} \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n");
    if body.is_empty() {
        answer.push_str("\r\n");
    } else {
        answer.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    Box::leak(answer.into_bytes().into_boxed_slice())
}

/// Checks a request the client sent and the answer the fake server gave
/// against the API description.
fn check_against_api(api: &ApiDescription, request: &Request, status: u16, answer_body: &str) {
    let body_schema = api.request_schema(&request.method, &request.path);
    match body_schema {
        Some(schema) => {
            assert!(
                request
                    .headers
                    .contains(&("content-type".into(), "application/json".into())),
                "{:?}",
                request.headers
            );
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let label = format!("{} {}", request.method, request.path);
            api.validate_schema(&label, schema, &body).unwrap();
        }
        None => {
            assert!(
                api.operation(&request.method, &request.path).is_some(),
                "{request:?} is not an API call"
            );
            assert!(request.body.is_empty(), "{request:?}");
        }
    }
    if !answer_body.is_empty() {
        let schema = api.response_schema(&request.method, &request.path, status).unwrap();
        api.validate_schema("answer", schema, &serde_json::from_str(answer_body).unwrap())
            .unwrap();
    }
}

const INSTANCE: &str =
    r#"{"id":"anonymous-instance","state":"Running","vmm_version":"1.16.1","app_name":"Firecracker"}"#;

#[test]
fn get_instance_info_reads_a_kept_alive_answer_by_its_length() {
    let api = api();
    let (_dir, socket, requests, server) = serve(firecracker_answer(200, INSTANCE));
    let started = Instant::now();
    let info = ApiClient::new(&socket).get_instance_info().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the connection to close"
    );
    assert_eq!(
        info,
        InstanceInfo {
            id: "anonymous-instance".into(),
            state: InstanceState::Running,
            vmm_version: "1.16.1".into(),
            app_name: "Firecracker".into(),
        }
    );
    let request = requests.recv().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/"));
    check_against_api(&api, &request, 200, INSTANCE);
    server.join().unwrap();
}

#[test]
fn send_ctrl_alt_del_puts_an_action_and_takes_204_without_a_length() {
    let api = api();
    let (_dir, socket, requests, server) = serve(firecracker_answer(204, ""));
    ApiClient::new(&socket).send_ctrl_alt_del().unwrap();
    let request = requests.recv().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("PUT", "/actions"));
    assert_eq!(request.body, br#"{"action_type":"SendCtrlAltDel"}"#);
    check_against_api(&api, &request, 204, "");
    server.join().unwrap();
}

#[test]
fn every_action_body_matches_the_api_description() {
    let api = api();
    for action_type in [
        ActionType::FlushMetrics,
        ActionType::InstanceStart,
        ActionType::SendCtrlAltDel,
    ] {
        let (_dir, socket, requests, server) = serve(firecracker_answer(204, ""));
        ApiClient::new(&socket)
            .put_actions(InstanceActionInfo { action_type })
            .unwrap();
        check_against_api(&api, &requests.recv().unwrap(), 204, "");
        server.join().unwrap();
    }
}

#[test]
fn a_400_surfaces_firecrackers_fault_message() {
    let api = api();
    let fault = r#"{"fault_message":"The requested operation is not supported after starting the microVM."}"#;
    let (_dir, socket, requests, server) = serve(firecracker_answer(400, fault));
    let error = ApiClient::new(&socket).send_ctrl_alt_del().unwrap_err();
    assert!(
        matches!(
            &error,
            ApiError::Fault {
                method: Method::Put,
                status: 400,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "Firecracker refused PUT /actions (400): The requested operation is not supported after starting the microVM."
    );
    check_against_api(&api, &requests.recv().unwrap(), 400, fault);
    server.join().unwrap();
}

#[test]
fn a_500_on_get_is_a_fault_too() {
    let (_dir, socket, _requests, server) = serve(firecracker_answer(500, r#"{"fault_message":"internal"}"#));
    let error = ApiClient::new(&socket).get_instance_info().unwrap_err();
    assert_eq!(error.to_string(), "Firecracker refused GET / (500): internal");
    server.join().unwrap();
}

#[test]
fn chunked_answers_are_read() {
    let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                   1e\r\n{\"firecracker_version\":\"1.16.1\r\n2\r\n\"}\r\n0\r\n\r\n";
    let (_dir, socket, _requests, server) = serve(answer);
    let version = ApiClient::new(&socket).get_version().unwrap();
    assert_eq!(version.firecracker_version, "1.16.1");
    server.join().unwrap();
}

#[test]
fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    // Bound and listening, never accepting: the connection is queued and
    // nothing is ever read or written.
    let _listener = UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    let error = ApiClient::new(&socket)
        .with_timeout(Duration::from_millis(200))
        .get_instance_info()
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, ApiError::Timeout { .. }), "{error:?}");
    assert_eq!(error.to_string(), "Firecracker did not answer GET / within 200ms");
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[test]
fn garbage_and_silence_are_malformed() {
    let (_dir, socket, _requests, server) = serve(b"SSH-2.0-OpenSSH_9.2\r\n");
    let error = ApiClient::new(&socket).get_instance_info().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Firecracker's answer to GET / is not HTTP: the status line is"),
        "{error}"
    );
    server.join().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let closer = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        read_request(&stream);
    });
    let error = ApiClient::new(&socket).get_instance_info().unwrap_err();
    assert_eq!(
        error.to_string(),
        "Firecracker's answer to GET / is not HTTP: the connection closed without an answer"
    );
    closer.join().unwrap();

    let (_dir, socket, _requests, server) = serve(firecracker_answer(200, "{\"id\":1}"));
    let error = ApiClient::new(&socket).get_instance_info().unwrap_err();
    assert_eq!(
        error.to_string(),
        "Firecracker's answer to GET / is not the JSON expected"
    );
    server.join().unwrap();
}

#[test]
fn a_missing_or_dead_socket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let error = ApiClient::new(&socket).get_instance_info().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("Firecracker's API socket {} does not exist", socket.display())
    );
    // The file of a socket whose listener is gone: Firecracker died.
    drop(UnixListener::bind(&socket).unwrap());
    let error = ApiClient::new(&socket).send_ctrl_alt_del().unwrap_err();
    assert!(matches!(error, ApiError::Refused { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .ends_with("refuses connections: Firecracker is not running"),
        "{error}"
    );
}

fn write_log(path: &Path, lines: usize) {
    let text: String = (1..=lines)
        .map(|i| format!("2026-11-29T12:00:00 [anonymous-instance:main] line {i}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_socket_that_never_appears_is_reported_with_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let log = dir.path().join("firecracker.log");
    write_log(&log, 30);
    let started = Instant::now();
    let error = wait_for_socket(&socket, Duration::from_millis(150), Some(&log), None).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "Firecracker's API socket {} did not appear within 150ms; the last lines of its log {}:\n    ",
            socket.display(),
            log.display()
        )),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1 + LOG_TAIL_LINES, "{message}");
    assert!(message.ends_with("line 30"), "{message}");
    assert!(
        message.contains("line 11\n") && !message.contains("line 10\n"),
        "{message}"
    );

    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let error = wait_for_socket(&socket, Duration::ZERO, Some(&empty), None).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with(&format!("; its log {} is empty", empty.display())),
        "{error}"
    );
    let error = wait_for_socket(&socket, Duration::ZERO, Some(&dir.path().join("none.log")), None).unwrap_err();
    assert!(error.to_string().contains("cannot be read"), "{error}");
}

#[test]
fn a_socket_that_appears_later_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let late = socket.clone();
    let (done, waited) = mpsc::channel::<()>();
    let binder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let listener = UnixListener::bind(&late).unwrap();
        // Listening until the wait is over, however slow the machine.
        let _ = waited.recv();
        drop(listener);
    });
    wait_for_socket(&socket, Duration::from_secs(5), None, None).unwrap();
    done.send(()).unwrap();
    binder.join().unwrap();
}

#[test]
fn firecracker_exiting_early_ends_the_wait_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let log = dir.path().join("firecracker.log");
    write_log(&log, 2);
    let mut child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let started = Instant::now();
    let error = wait_for_socket(&socket, Duration::from_secs(30), Some(&log), Some(&mut child)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "Firecracker exited (exit status: 3) before its API socket {} appeared; the last lines of its log",
            socket.display()
        )),
        "{message}"
    );
    assert!(message.ends_with("line 2"), "{message}");
}
