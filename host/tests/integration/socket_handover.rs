//! Restarts that drop nothing: the test holds the listening socket as systemd would (socket
//! activation, fd 3), restarts `pixsim7 serve` on it under load the way `systemctl restart`
//! does (SIGTERM, wait for the exit, start again), and counts every answer. Also the
//! handovers that must be refused or ignored.
//!
//! The load is what nginx sends upstream by default (no `keepalive` in the upstream block):
//! one connection per request, closed after the answer. See docs/operations.md for
//! keep-alive connections across a restart.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use crate::harness::{pixsim7, token_for, Exited, PluginDir, RunningHost};

/// Upper bound for anything this test waits for; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts `pixsim7 serve` (configured by `dir` as the harness does) as a supervisor would:
/// with `fd3` as file descriptor 3 (or none), `LISTEN_FDS=listen_fds` and `LISTEN_PID` set to
/// the pid of the process itself, through `sh -c 'LISTEN_PID=$$ ... exec pixsim7 serve'` (the
/// shell's pid is the one `exec` keeps).
fn spawn_activated(dir: &PluginDir, fd3: Option<RawFd>, listen_fds: &str) -> std::process::Child {
    let host = pixsim7(dir).into_command();
    let mut command = Command::new("/bin/sh");
    command.env_clear();
    for (key, value) in host.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command
        .env("LISTEN_FDS", listen_fds)
        .env("LISTEN_FDNAMES", "pixsim7-test")
        .arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
        .arg(host.get_program())
        .args(["serve", "--workers", "2", "--bind", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fd) = fd3 {
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) on
        // descriptors this process owns: `fd` becomes fd 3 without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let result = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if result < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command.spawn().expect("start pixsim7 through sh")
}

/// One request the load sends.
struct Call {
    method: &'static str,
    path: &'static str,
    token: Option<String>,
    body: &'static str,
}

/// One answer (or failure), and when it was asked for and completed.
struct Outcome {
    started: Instant,
    finished: Instant,
    result: Result<u16, String>,
}

/// Every outcome so far, shared by the client threads and the test.
#[derive(Default)]
struct Tally {
    outcomes: Mutex<Vec<Outcome>>,
    changed: Condvar,
}

impl Tally {
    fn record(&self, outcome: Outcome) {
        self.outcomes.lock().unwrap().push(outcome);
        self.changed.notify_all();
    }

    /// Waits until `count` requests started at or after `since` got a 2xx answer.
    #[track_caller]
    fn wait_for_successes_since(&self, since: Instant, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut outcomes = self.outcomes.lock().unwrap();
        loop {
            let done = outcomes
                .iter()
                .filter(|o| o.started >= since && o.result.is_ok())
                .count();
            if done >= count {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {done} of {count} requests answered; failures: {:?}",
                failures(&outcomes)
            );
            outcomes = self.changed.wait_timeout(outcomes, left).unwrap().0;
        }
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .map(String::as_str)
        .collect()
}

/// Sends `call` on a connection of its own and reads the whole answer: `Ok(status)` only for
/// a complete 2xx answer (status line, headers, exactly `Content-Length` bytes of body).
fn exchange(address: SocketAddr, call: &Call) -> Result<u16, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let authorization = call
        .token
        .as_ref()
        .map(|token| format!("authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{} {} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n{authorization}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        call.method,
        call.path,
        call.body.len(),
        call.body
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{} {}: write: {e}", call.method, call.path))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{} {}: read: {e}", call.method, call.path))?;
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!(
            "{} {}: incomplete answer ({} bytes): {text:?}",
            call.method,
            call.path,
            answer.len()
        ));
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{} {}: no status line: {head:?}", call.method, call.path))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("{} {}: no content-length: {head:?}", call.method, call.path))?;
    if body.len() != length {
        return Err(format!(
            "{} {}: body of {} bytes, content-length {length}",
            call.method,
            call.path,
            body.len()
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("{} {}: {status}: {body}", call.method, call.path));
    }
    Ok(status)
}

/// Client threads sending `calls` in turn against `address` until `stop` is set.
fn start_load(
    address: SocketAddr,
    threads: usize,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|thread| {
            let tally = tally.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let calls = [
                    Call {
                        method: "POST",
                        path: "/api/v1/dice-game/roll",
                        token: None,
                        body: r#"{"dice": "2d6+1"}"#,
                    },
                    Call {
                        method: "POST",
                        path: "/api/v1/game/worlds",
                        token: Some(token_for(1, &["admin"])),
                        body: r#"{"name": "Harbor"}"#,
                    },
                    Call {
                        method: "GET",
                        path: "/healthz",
                        token: None,
                        body: "",
                    },
                ];
                let mut next = thread;
                while !stop.load(Ordering::Relaxed) {
                    let call = &calls[next % calls.len()];
                    next += 1;
                    let started = Instant::now();
                    let result = exchange(address, call);
                    tally.record(Outcome {
                        started,
                        finished: Instant::now(),
                        result,
                    });
                }
            })
        })
        .collect()
}

#[test]
fn a_restart_on_an_inherited_socket_drops_no_request() {
    let dir = PluginDir::with(&["dice_game", "game_worlds"]);
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind the supervisor's socket");
    let address = socket.local_addr().unwrap();
    let fd = socket.as_raw_fd();

    let first = RunningHost::serving(spawn_activated(&dir, Some(fd), "1"));
    assert_eq!(
        first.address(),
        address,
        "serves the inherited socket, not --bind"
    );
    let inherited = first.wait_for_log("Using the socket inherited from the supervisor");
    assert_eq!(inherited.field("socket").as_deref(), Some("pixsim7-test"));

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let clients = start_load(address, 6, &tally, &stop);
    tally.wait_for_successes_since(load_started, 150);

    // `systemctl restart`: SIGTERM, wait for the exit, start the new process; the socket
    // stays open in the supervisor (here: this test) all along.
    let terminated = Instant::now();
    first.terminate();
    let first = first.wait();
    let first_gone = Instant::now();
    assert!(first.status.success(), "first host: {}", first.status);
    let second = RunningHost::serving(spawn_activated(&dir, Some(fd), "1"));
    let second_serving = Instant::now();
    assert_eq!(second.address(), address);
    tally.wait_for_successes_since(second_serving, 150);

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let second = second.stop();
    assert!(second.status.success(), "second host: {}", second.status);

    let outcomes = tally.outcomes.lock().unwrap();
    let at = |instant: Instant| instant.saturating_duration_since(load_started).as_micros();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let error = o.result.as_ref().err()?;
            Some(format!(
                "{error} (sent at {} µs, failed at {} µs)",
                at(o.started),
                at(o.finished)
            ))
        })
        .collect();
    let by_first = outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.finished < terminated)
        .count();
    let by_second = outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.started > first_gone)
        .count();
    let across = outcomes
        .iter()
        .filter(|o| o.started < first_gone && o.finished > first_gone)
        .count();
    eprintln!(
        "{} requests: {by_first} answered before SIGTERM (first host), {by_second} sent after \
         it exited (second host), {across} in flight or queued in the backlog across the gap; \
         {} failed; the first host exited {:?} after SIGTERM, the second served {:?} later",
        outcomes.len(),
        failed.len(),
        first_gone - terminated,
        second_serving - first_gone,
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the restart (SIGTERM at {} µs, first host gone at {} \
         µs, second serving at {} µs): {failed:#?}",
        failed.len(),
        outcomes.len(),
        at(terminated),
        at(first_gone),
        at(second_serving),
    );
    assert!(by_first > 0 && by_second > 0);
    assert!(across > 0, "no request waited across the restart");
    assert!(first.logged("INFO", "Shutdown complete"));
    assert!(second.logged("INFO", "Using the socket inherited from the supervisor"));
}

#[test]
fn a_handover_that_is_not_a_listening_socket_stops_startup() {
    let dir = PluginDir::with(&["dice_game"]);
    let file = std::fs::File::open(dir.path()).expect("open the plugin directory");
    let exited = Exited::of(spawn_activated(&dir, Some(file.as_raw_fd()), "1"));
    assert!(!exited.status.success());
    assert!(
        exited.logged(
            "ERROR",
            "socket activation (LISTEN_FDS=1): expected fd 3 to be a listening TCP socket, \
             found a directory ("
        ),
        "{:?}",
        exited.logs
    );
    assert!(
        !exited.logged("INFO", "Database ready"),
        "stops before any plugin or database work"
    );

    let not_listening = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let exited = Exited::of(spawn_activated(&dir, Some(not_listening.as_raw_fd()), "1"));
    assert!(!exited.status.success());
    assert!(exited.logged(
        "ERROR",
        "found a datagram (UDP) socket, not a stream (TCP) socket"
    ));

    let exited = Exited::of(spawn_activated(&dir, None, "1"));
    assert!(!exited.status.success());
    assert!(
        exited.logged(
            "ERROR",
            "expected fd 3 to be a listening TCP socket, found no open file descriptor"
        ),
        "{:?}",
        exited.logs
    );

    let exited = Exited::of(spawn_activated(&dir, None, "2"));
    assert!(!exited.status.success());
    assert!(
        exited.logged(
            "ERROR",
            "socket activation: LISTEN_FDS=2 (fds 3..=4), expected LISTEN_FDS=1"
        ),
        "{:?}",
        exited.logs
    );
}

#[test]
fn sockets_meant_for_another_process_are_ignored() {
    let dir = PluginDir::with(&["dice_game"]);
    // This test's own pid: alive, and certainly not the host's.
    let host = pixsim7(&dir)
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDS", "1")
        .start();
    let ignored = host.wait_for_log("Socket activation variables ignored");
    assert_eq!(ignored.level(), "WARN");
    assert!(
        ignored.message().contains(&format!(
            "LISTEN_PID={} is not this process",
            std::process::id()
        )),
        "{}",
        ignored.message()
    );
    assert_ne!(host.address().port(), 0);
    assert_eq!(host.get("/healthz").status, 200, "bound --bind as usual");
    let exited = host.stop();
    assert!(!exited.logged("INFO", "Using the socket inherited"));
}
