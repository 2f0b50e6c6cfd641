//! Test harness: temporary plugin directories filled with libraries built from the
//! workspace, and the real `pixsim7` binary started on port 0, with its JSON log lines
//! collected so tests can wait for (not sleep until) what they need.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Upper bound for anything a test waits for; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

/// The path of a library built from the workspace (a plugin or a fixture), e.g. `dice_game`.
#[track_caller]
pub fn built_library(lib: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_pixsim7"))
        .parent()
        .expect("target dir");
    let file = format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = dir.join(file);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the plugin and \
         fixture libraries first",
        path.display()
    );
    path
}

/// A temporary plugin directory, removed when dropped.
pub struct PluginDir {
    path: PathBuf,
}

impl PluginDir {
    /// An empty directory.
    pub fn empty() -> PluginDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "plugin-dir-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create plugin dir");
        PluginDir { path }
    }

    /// A directory holding these built libraries.
    pub fn with(libs: &[&str]) -> PluginDir {
        let dir = PluginDir::empty();
        for lib in libs {
            dir.add(lib);
        }
        dir
    }

    /// Copies a built library in under its usual file name.
    pub fn add(&self, lib: &str) -> &PluginDir {
        let source = built_library(lib);
        self.add_as(lib, source.file_name().unwrap().to_str().unwrap())
    }

    /// Copies a built library in under another file name.
    pub fn add_as(&self, lib: &str, file_name: &str) -> &PluginDir {
        std::fs::copy(built_library(lib), self.path.join(file_name)).expect("copy library");
        self
    }

    /// Removes a library copied in with [`PluginDir::add`].
    pub fn remove(&self, lib: &str) {
        let file = built_library(lib);
        std::fs::remove_file(self.path.join(file.file_name().unwrap())).expect("remove library");
    }

    /// Writes any file into the directory.
    pub fn write(&self, name: &str, contents: &[u8]) {
        std::fs::write(self.path.join(name), contents).expect("write file");
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a config file beside the directory and returns its path.
    pub fn config_file(&self, toml: &str) -> PathBuf {
        let path = self.path.with_extension("toml");
        std::fs::write(&path, toml).expect("write config");
        path
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        for extension in ["toml", "db", "db-wal", "db-shm"] {
            let _ = std::fs::remove_file(self.path.with_extension(extension));
        }
        let _ = std::fs::remove_dir_all(self.path.with_extension("data"));
    }
}

/// One structured log line of the host.
#[derive(Debug, Clone)]
pub struct LogLine(pub Value);

impl LogLine {
    /// `INFO`, `WARN`, ...
    pub fn level(&self) -> &str {
        self.0["level"].as_str().unwrap_or("")
    }

    /// The message.
    pub fn message(&self) -> &str {
        self.0["fields"]["message"].as_str().unwrap_or("")
    }

    /// A structured field, as text.
    pub fn field(&self, name: &str) -> Option<String> {
        match &self.0["fields"][name] {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[derive(Default)]
struct LogState {
    lines: Vec<LogLine>,
    closed: bool,
}

/// The lines a host has written so far, shared with the thread reading its stderr.
#[derive(Clone, Default)]
struct Logs(Arc<(Mutex<LogState>, Condvar)>);

impl Logs {
    fn collect(stderr: impl std::io::Read + Send + 'static) -> (Logs, JoinHandle<()>) {
        let logs = Logs::default();
        let writer = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(
                    |_| serde_json::json!({"level": "RAW", "fields": {"message": line}}),
                );
                let (state, changed) = &*writer.0;
                state.lock().unwrap().lines.push(LogLine(value));
                changed.notify_all();
            }
            let (state, changed) = &*writer.0;
            state.lock().unwrap().closed = true;
            changed.notify_all();
        });
        (logs, reader)
    }

    fn snapshot(&self) -> Vec<LogLine> {
        self.0 .0.lock().unwrap().lines.clone()
    }

    /// Blocks until the lines so far satisfy `done`; `false` if the host's stderr closed
    /// first.
    fn wait_until(&self, done: &dyn Fn(&[LogLine]) -> bool) -> bool {
        let (state, changed) = &*self.0;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = state.lock().unwrap();
        loop {
            if done(&guard.lines) {
                return true;
            }
            if guard.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let lines = dump(&guard.lines);
                drop(guard);
                panic!("gave up waiting for log lines; logs:\n{lines}");
            }
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Blocks until a line satisfies `matches`; `None` if the host's stderr closed first.
    fn wait_for(&self, matches: &dyn Fn(&LogLine) -> bool) -> Option<LogLine> {
        if !self.wait_until(&|lines| lines.iter().any(matches)) {
            return None;
        }
        self.snapshot().into_iter().find(|l| matches(l))
    }
}

fn dump(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| format!("  {} {}", l.level(), l.0["fields"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How to start the host.
pub struct HostCommand {
    command: Command,
}

/// The game's core plugin libraries (without `game_relationships`, which reacts to
/// pickpockets, and without `auth`); tests add those they need.
pub const GAME_PLUGINS: &[&str] = &[
    "game_dialogue",
    "game_locations",
    "game_npcs",
    "game_sessions",
    "game_stealth",
    "game_worlds",
];

/// [`GAME_PLUGINS`] and `extra`.
pub fn game_plugins_and(extra: &[&'static str]) -> Vec<&'static str> {
    GAME_PLUGINS.iter().chain(extra).copied().collect()
}

/// The JWT secret every test host uses, so tests can mint tokens with [`token_for`].
pub const TEST_JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A token for `user_id` with `roles`, signed with the test secret, valid for an hour.
pub fn token_for(user_id: i64, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    host::auth::TokenKeys::new(TEST_JWT_SECRET.as_bytes())
        .expect("test secret is long enough")
        .issue(user_id, &roles, std::time::Duration::from_secs(3600))
}

/// `pixsim7` over `dir`, logging JSON, with an SQLite database file of its own beside the
/// directory (tests that need another database set `PIXSIM7_DATABASE_URL`) and the test JWT
/// secret. Requests go as user 1 with the admin role unless a test says otherwise.
pub fn pixsim7(dir: &PluginDir) -> HostCommand {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixsim7"));
    command
        .env_clear()
        .env("PIXSIM7_JWT_SECRET", TEST_JWT_SECRET)
        .env("PIXSIM7_DATA_DIR", dir.path().with_extension("data"))
        .env("PIXSIM7_LOG_FORMAT", "json")
        .env("PIXSIM7_LOG", "info")
        .env("PIXSIM7_PLUGIN_DIR", dir.path())
        .env(
            "PIXSIM7_DATABASE_URL",
            format!("sqlite://{}", dir.path().with_extension("db").display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    HostCommand { command }
}

impl HostCommand {
    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> HostCommand {
        self.command.args(args);
        self
    }

    /// Removes an environment variable the harness sets.
    pub fn env_remove(mut self, key: &str) -> HostCommand {
        self.command.env_remove(key);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> HostCommand {
        self.command.env(key, value);
        self
    }

    /// Starts `serve` on a free port and waits until it serves.
    #[track_caller]
    pub fn start(self) -> RunningHost {
        self.start_with(&[])
    }

    /// Starts `serve` with extra arguments on a free port and waits until it serves.
    #[track_caller]
    pub fn start_with(mut self, args: &[&str]) -> RunningHost {
        self.command
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
            .args(args);
        RunningHost::serving(self.command.spawn().expect("start pixsim7"))
    }

    /// The command itself, for tests that start the host in a way of their own (through a
    /// wrapper, with inherited file descriptors); see [`RunningHost::serving`].
    pub fn into_command(self) -> Command {
        self.command
    }

    /// Runs the command to its end (for commands that exit by themselves).
    pub fn run_to_exit(mut self, args: &[&str]) -> Exited {
        self.command.args(args);
        Exited::of(self.command.spawn().expect("start pixsim7"))
    }
}

impl RunningHost {
    /// Waits until `child` (a `pixsim7 serve` with piped stderr) serves.
    #[track_caller]
    pub fn serving(mut child: Child) -> RunningHost {
        let (logs, reader) = Logs::collect(child.stderr.take().unwrap());
        let Some(serving) = logs.wait_for(&|l| l.message().starts_with("Serving on")) else {
            let status = child.wait().unwrap();
            panic!(
                "pixsim7 exited with {status} before serving; logs:\n{}",
                dump(&logs.snapshot())
            );
        };
        let address = serving.field("address").expect("address field");
        RunningHost {
            child,
            base_url: format!("http://{address}"),
            logs,
            reader: Some(reader),
            agent: ureq::AgentBuilder::new().timeout(PATIENCE).build(),
            default_token: token_for(1, &["admin"]),
        }
    }
}

impl Exited {
    /// Waits for `child` (stdout and stderr piped) to exit by itself.
    pub fn of(mut child: Child) -> Exited {
        let stdout = child.stdout.take().unwrap();
        let (logs, reader) = Logs::collect(child.stderr.take().unwrap());
        let stdout =
            std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let status = wait_with_patience(&mut child);
        reader.join().unwrap();
        Exited {
            status,
            stdout: stdout.join().unwrap(),
            logs: logs.snapshot(),
        }
    }
}

/// Waits for the process to exit; a watchdog kills it (and fails the test) if it has not
/// within [`PATIENCE`].
fn wait_with_patience(child: &mut Child) -> ExitStatus {
    let pid = i32::try_from(child.id()).expect("pid fits");
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = finished.recv_timeout(PATIENCE).is_err();
        if timed_out {
            // SAFETY: kill(2) on the child we spawned; it has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        timed_out
    });
    let status = child.wait().expect("wait for pixsim7");
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "pixsim7 did not exit within {PATIENCE:?}"
    );
    status
}

/// A process that has exited.
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// Its log lines.
    pub logs: Vec<LogLine>,
}

impl Exited {
    /// Whether some log line at `level` contains `text`.
    pub fn logged(&self, level: &str, text: &str) -> bool {
        self.logs
            .iter()
            .any(|l| l.level() == level && l.message().contains(text))
    }

    /// The index of the first log line containing `text` (panics when there is none), for
    /// asserting the order of what happened.
    #[track_caller]
    pub fn position(&self, text: &str) -> usize {
        self.logs
            .iter()
            .position(|l| l.message().contains(text))
            .unwrap_or_else(|| panic!("no log line contains {text:?}"))
    }
}

/// A host that is serving.
pub struct RunningHost {
    child: Child,
    base_url: String,
    logs: Logs,
    reader: Option<JoinHandle<()>>,
    agent: ureq::Agent,
    default_token: String,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RunningHost {
    /// The address the host serves on.
    pub fn address(&self) -> std::net::SocketAddr {
        self.base_url
            .trim_start_matches("http://")
            .parse()
            .expect("host:port")
    }

    /// Sends a JSON request as the default user and requires 200; the answer's JSON.
    #[track_caller]
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let reply = self.request(
            method,
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.body);
        reply.json()
    }

    /// Sends a request as the default user (1, admin) unless `headers` carry an
    /// `authorization` of their own.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let bearer = format!("Bearer {}", self.default_token);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            all.push(("authorization", &bearer));
        }
        self.request_raw(method, path, &all, body)
    }

    /// Sends a request with exactly these headers (no default token).
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request = self
            .agent
            .request(method, &format!("{}{path}", self.base_url));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.send_bytes(body) {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("{method} {path}: {error}"),
        };
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| Some((name.clone(), response.header(&name)?.to_owned())))
            .collect();
        Reply {
            status: response.status(),
            headers,
            body: response.into_string().unwrap_or_default(),
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// The admin API's object for plugin `id`.
    #[track_caller]
    pub fn plugin(&self, id: &str) -> Value {
        let reply = self.get(&format!("/api/v1/plugins/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// The admin API's object for the library file `file` (for libraries without an id).
    #[track_caller]
    pub fn plugin_by_file(&self, file: &str) -> Value {
        let reply = self.get("/api/v1/plugins");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let plugins = reply.json();
        let list = plugins
            .as_array()
            .or_else(|| plugins["plugins"].as_array())
            .expect("a list of plugins");
        list.iter()
            .find(|p| p["file"] == file)
            .cloned()
            .unwrap_or_else(|| panic!("no {file} in {plugins:#}"))
    }

    /// Waits until `count` log lines contain `text`; returns them, in order.
    #[track_caller]
    pub fn wait_for_logs(&self, text: &str, count: usize) -> Vec<LogLine> {
        let enough = |lines: &[LogLine]| {
            lines.iter().filter(|l| l.message().contains(text)).count() >= count
        };
        assert!(
            self.logs.wait_until(&enough),
            "the host exited before logging {text:?} {count} times"
        );
        self.logs
            .snapshot()
            .into_iter()
            .filter(|l| l.message().contains(text))
            .collect()
    }

    /// Waits for a log line containing `text`.
    #[track_caller]
    pub fn wait_for_log(&self, text: &str) -> LogLine {
        self.logs
            .wait_for(&|l| l.message().contains(text))
            .unwrap_or_else(|| panic!("the host exited before logging {text:?}"))
    }

    /// Kills the process with SIGKILL (a crash: nothing runs after it) and waits for it.
    pub fn kill(self) -> Exited {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let result = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(result, 0, "kill failed");
        self.wait()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(self) -> Exited {
        self.terminate();
        self.wait()
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let result = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(result, 0, "kill failed");
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self) -> Exited {
        let status = wait_with_patience(&mut self.child);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        Exited {
            status,
            stdout: String::new(),
            logs: self.logs.snapshot(),
        }
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
