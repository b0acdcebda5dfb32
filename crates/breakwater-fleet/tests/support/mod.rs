//! A real `redis-server` on loopback for each test that asks (Debian's package; `.ci/run`
//! installs it). Without the binary, a test is skipped with a line saying so, unless
//! `BREAKWATER_REQUIRE_REDIS=1` (CI), where it fails.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own, stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    binary: String,
}

fn binary() -> Option<String> {
    if let Ok(path) = std::env::var("BREAKWATER_REDIS_SERVER") {
        return Some(path);
    }
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| "redis-server".to_owned())
}

impl RedisServer {
    /// Starts one on a free port of 127.0.0.1, or `None` (skip) if there is no
    /// `redis-server` and it is not required.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var("BREAKWATER_REQUIRE_REDIS").as_deref() != Ok("1"),
                "{test}: redis-server is required (BREAKWATER_REQUIRE_REDIS=1) and not installed"
            );
            println!("{test}: skipped: no redis-server (apt-get install redis-server)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            child: None,
            binary,
        };
        server.spawn();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its data goes with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops it answering (SIGSTOP): connections stay open, nothing comes back.
    pub fn stall(&self) {
        self.signal("-STOP");
    }

    /// Lets a stalled server answer again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Runs one command through a plain RESP exchange; the reply's first line, without its
    /// type marker (`None` if the server does not answer).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        use std::io::{BufRead, BufReader, Write};
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        (&stream).write_all(request.as_bytes()).ok()?;
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        match line.chars().next()? {
            '$' if line == "$-1" => Some(String::new()),
            '$' => {
                let mut value = String::new();
                reader.read_line(&mut value).ok()?;
                Some(value.trim_end().to_owned())
            }
            _ => Some(line[1..].to_owned()),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stalled server does not die of SIGKILL any less; but resume it first so its
            // sockets close cleanly.
            let _ = self.child.as_ref().map(|c| {
                Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status()
            });
        }
        self.kill();
    }
}

/// Polls `condition` every 5 ms until it holds or `within` passes; how long it took.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
