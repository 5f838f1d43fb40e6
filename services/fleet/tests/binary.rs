//! The vc-fleet binary with a real redis-server: the JSON line, the stdin
//! commands, Redis restarts with and without its keys, and no process left
//! behind when stdin closes or the launcher is SIGKILLed. (Nodes are covered by
//! the signaling crate's multi-node tests, which own the node binary.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Launcher {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Launcher {
    fn start(args: &[&str]) -> (Launcher, Value) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vc-fleet"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("vc-fleet runs");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut launcher = Launcher {
            child,
            stdin,
            stdout,
        };
        let description = launcher.line();
        assert!(description.get("error").is_none(), "{description}");
        (launcher, description)
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reads");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn command(&mut self, command: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("writes");
        let answer = self.line();
        assert_eq!(answer["command"], command, "{answer}");
        answer
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// One inline command, its first reply line.
fn redis(port: u64, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port as u16)).expect("redis listens");
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .expect("writes");
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).expect("reads");
    String::from_utf8_lossy(&reply[..n]).trim().to_owned()
}

fn alive(pid: u64) -> bool {
    // A zombie still has /proc/<pid>; its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn gone_soon(pid: u64) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn redis_restarts_with_or_without_its_keys_and_stops_when_stdin_closes() {
    let (mut fleet, description) = Launcher::start(&["--nodes", "0", "--redis", "standalone"]);
    let redis_info = &description["redis"];
    assert_eq!(redis_info["mode"], "standalone");
    assert_eq!(description["nodes"], serde_json::json!([]));
    let port = redis_info["ports"][0].as_u64().expect("port");
    assert_eq!(redis_info["url"], format!("redis://127.0.0.1:{port}"));
    assert_eq!(redis(port, "SET kept yes"), "+OK");

    let answer = fleet.command("restart redis");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(redis(port, "GET kept"), "$3\r\nyes");

    let answer = fleet.command("restart redis --empty");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(redis(port, "GET kept"), "$-1");

    assert_eq!(fleet.command("kill redis")["ok"], true);
    assert!(
        TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
        "redis still listens"
    );
    let answer = fleet.command("kill node-1");
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(fleet.command("stop it all")["ok"], false);
    let answer = fleet.command("restart redis --empty");
    let pid = answer["redis"]["pids"][0].as_u64().expect("pid");
    assert_eq!(redis(port, "PING"), "+PONG");

    drop(fleet.stdin.take());
    let status = fleet.child.wait().expect("exits");
    assert!(status.success(), "{status}");
    assert!(gone_soon(pid), "redis {pid} outlived the launcher");
}

#[test]
fn a_sigkilled_launcher_takes_its_cluster_along() {
    let (mut fleet, description) = Launcher::start(&["--nodes", "0", "--redis", "cluster"]);
    let pids: Vec<u64> = description["redis"]["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 3);
    let port = description["redis"]["ports"][0].as_u64().expect("port");
    assert!(redis(port, "CLUSTER INFO").contains("cluster_state:ok"));
    fleet.child.kill().expect("SIGKILL");
    fleet.child.wait().ok();
    for pid in pids {
        assert!(gone_soon(pid), "redis {pid} outlived the launcher");
    }
}

#[test]
fn a_node_that_cannot_start_is_an_error_line_and_exit_1() {
    let output = Command::new(env!("CARGO_BIN_EXE_vc-fleet"))
        .args(["--redis", "none", "--node-bin", "/nonexistent/vc-signaling"])
        .stdin(Stdio::null())
        .output()
        .expect("vc-fleet runs");
    assert_eq!(output.status.code(), Some(1));
    let line: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let error = line["error"].as_str().expect("error");
    assert!(error.contains("/nonexistent/vc-signaling"), "{error}");
}
