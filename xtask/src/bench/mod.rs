//! `cargo xtask bench`: builds in release and measures, side by side in one run, what the
//! plugin host costs: forwarding overhead against the same handler compiled into actix,
//! routing cost as plugins are added, start-up time, memory, the game path, and whether
//! logins (argon2id) slow other requests. Prints a table and writes `docs/PERFORMANCE.md`.
//!
//! Load comes from `wrk` (which must be installed); the server under test and `wrk` are
//! pinned to different cores with `taskset` when it exists. Every comparison alternates its
//! sides over several rounds and reports the median and the spread.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{library_file_name, run, Workspace};

mod game;

const JWT_SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";
const ECHO_BODY: &str = r#"{"player":"mara","score":21,"tags":["thief","quick","quiet"]}"#;

/// How long and how often each comparison runs.
#[derive(Clone)]
struct Plan {
    warmup: Duration,
    round: Duration,
    rounds: usize,
    /// Rounds for the forwarding comparison, whose two sides are within a few percent of
    /// each other: more rounds make its median steadier.
    forwarding_rounds: usize,
    connections: u32,
    startup_runs: usize,
    memory_requests: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                warmup: Duration::from_secs(1),
                round: Duration::from_secs(2),
                rounds: 2,
                forwarding_rounds: 3,
                connections: 32,
                startup_runs: 3,
                memory_requests: 100_000,
            }
        } else {
            Plan {
                warmup: Duration::from_secs(2),
                round: Duration::from_secs(5),
                rounds: 3,
                forwarding_rounds: 7,
                connections: 32,
                startup_runs: 5,
                memory_requests: 1_000_000,
            }
        }
    }
}

/// One wrk run's numbers.
#[derive(Clone, Copy, Debug)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

/// Medians and spreads of several runs of one side.
struct Summary {
    label: String,
    runs: Vec<Load>,
}

impl Summary {
    fn median(&self, field: impl Fn(&Load) -> f64) -> f64 {
        median(self.runs.iter().map(field).collect())
    }

    fn spread(&self, field: impl Fn(&Load) -> f64) -> (f64, f64) {
        let values: Vec<f64> = self.runs.iter().map(field).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }

    fn row(&self, baseline: Option<&Summary>) -> String {
        let rps = self.median(|l| l.requests_per_sec);
        let (low, high) = self.spread(|l| l.requests_per_sec);
        let ratio = baseline.map_or("".to_owned(), |b| {
            format!("{:.3}×", rps / b.median(|l| l.requests_per_sec))
        });
        format!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.3} | {:.3} | {} | {} |",
            self.label,
            rps,
            low,
            high,
            self.median(|l| l.p50_ms),
            self.median(|l| l.p99_ms),
            ratio,
            self.errors()
        )
    }
}

const LOAD_HEADER: &str = "| side | req/s (median) | req/s (min–max) | p50 ms | p99 ms | ratio | errors |\n|---|---|---|---|---|---|---|";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A server under test.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        // SIGTERM for a graceful stop; the benchmark does not wait on shutdown behaviour.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A command pinned to `core` when `taskset` exists.
fn pinned(core: Option<u32>, program: &Path) -> Command {
    match core {
        Some(core) if has_tool("taskset") => {
            let mut command = Command::new("taskset");
            command.args(["-c", &core.to_string()]).arg(program);
            command
        }
        _ => Command::new(program),
    }
}

fn has_tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One plain HTTP/1.1 exchange on a fresh connection: status and body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// Waits until `GET path` answers 200; the time it took.
fn wait_until_ready(
    address: SocketAddr,
    path: &str,
    started: Instant,
    child: &mut Child,
) -> anyhow::Result<Duration> {
    loop {
        if let Ok((200, _)) = http(address, "GET", path, &[], "") {
            return Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status} before answering {path}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not answer {path} within 60 s");
        }
        // Polling a port that is not open yet; 1 ms keeps the measurement fine-grained.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `bench-many`'s library as copy `n` (1 to 999): every `bench-many-000` (its id and route
/// paths, in the descriptor section and in the strings the live descriptor is made of)
/// becomes `bench-many-<n>`, three digits, so no byte moves.
fn numbered_copy(library: &[u8], n: usize) -> anyhow::Result<Vec<u8>> {
    const MARKER: &[u8] = b"bench-many-000";
    if !(1..=999).contains(&n) {
        bail!("bench-many copies are numbered 1 to 999, not {n}");
    }
    let number = format!("bench-many-{n:03}");
    let mut copy = library.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(offset) = copy[at..].windows(MARKER.len()).position(|w| w == MARKER) {
        let start = at + offset;
        copy[start..start + MARKER.len()].copy_from_slice(number.as_bytes());
        found += 1;
        at = start + MARKER.len();
    }
    if found == 0 {
        bail!(
            "the bench-many library holds no {:?}",
            String::from_utf8_lossy(MARKER)
        );
    }
    Ok(copy)
}

struct Bench {
    plan: Plan,
    scratch: PathBuf,
    release: PathBuf,
}

impl Bench {
    fn pixsim7(&self) -> PathBuf {
        self.release.join("pixsim7")
    }

    fn library(&self, lib: &str) -> PathBuf {
        self.release.join(library_file_name(lib))
    }

    /// A plugin directory holding these built libraries (`bench_many` copies numbered).
    fn plugin_dir(&self, name: &str, libs: &[&str], many_copies: usize) -> anyhow::Result<PathBuf> {
        let dir = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for lib in libs {
            std::fs::copy(self.library(lib), dir.join(library_file_name(lib)))?;
        }
        if many_copies > 0 {
            let many = std::fs::read(self.library("bench_many"))?;
            for n in 1..=many_copies {
                std::fs::write(
                    dir.join(library_file_name(&format!("bench_many_{n}"))),
                    numbered_copy(&many, n)?,
                )?;
            }
        }
        Ok(dir)
    }

    fn host_command(&self, plugin_dir: &Path, database_url: &str, core: Option<u32>) -> Command {
        self.host_command_logging(plugin_dir, database_url, core, "warn")
    }

    /// `host_command` with the log filter `log` (stderr still goes nowhere).
    fn host_command_logging(
        &self,
        plugin_dir: &Path,
        database_url: &str,
        core: Option<u32>,
        log: &str,
    ) -> Command {
        let mut command = pinned(core, &self.pixsim7());
        command
            .env("PIXSIM7_PLUGIN_DIR", plugin_dir)
            .env("PIXSIM7_DATABASE_URL", database_url)
            .env("PIXSIM7_JWT_SECRET", JWT_SECRET)
            .env("PIXSIM7_DATA_DIR", self.scratch.join("data"))
            .env("PIXSIM7_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Starts the host (migrating its database first, so start-up excludes the first run's
    /// migration); the time from spawn to `/healthz` answering.
    fn start_host(
        &self,
        plugin_dir: &Path,
        database: &Path,
        workers: Option<u32>,
        core: Option<u32>,
    ) -> anyhow::Result<(Server, Duration)> {
        let url = format!("sqlite://{}", database.display());
        self.start_host_on(plugin_dir, &url, workers, core)
    }

    /// Starts the host on an already migrated SQLite database, without migrating first.
    fn start_host_migrated(
        &self,
        plugin_dir: &Path,
        database: &Path,
    ) -> anyhow::Result<(Server, Duration)> {
        let url = format!("sqlite://{}", database.display());
        let address = free_port()?;
        let mut command = self.host_command(plugin_dir, &url, None);
        command.args(["serve", "--bind", &address.to_string()]);
        let started = Instant::now();
        let mut child = command.spawn().context("cannot start pixsim7")?;
        let ready = wait_until_ready(address, "/healthz", started, &mut child)?;
        Ok((Server { child, address }, ready))
    }

    /// Like `start_host`, on the database at `database_url`.
    fn start_host_on(
        &self,
        plugin_dir: &Path,
        database: &str,
        workers: Option<u32>,
        core: Option<u32>,
    ) -> anyhow::Result<(Server, Duration)> {
        self.start_host_logging(plugin_dir, database, workers, core, "warn")
    }

    /// Like `start_host_on`, with the log filter `log`.
    fn start_host_logging(
        &self,
        plugin_dir: &Path,
        database: &str,
        workers: Option<u32>,
        core: Option<u32>,
        log: &str,
    ) -> anyhow::Result<(Server, Duration)> {
        let migrated = self
            .host_command(plugin_dir, database, None)
            .arg("migrate")
            .status()?;
        if !migrated.success() {
            bail!("pixsim7 migrate failed for {}", plugin_dir.display());
        }
        let address = free_port()?;
        let mut command = self.host_command_logging(plugin_dir, database, core, log);
        command.args(["serve", "--bind", &address.to_string()]);
        if let Some(workers) = workers {
            command.args(["--workers", &workers.to_string()]);
        }
        let started = Instant::now();
        let mut child = command.spawn().context("cannot start pixsim7")?;
        let ready = wait_until_ready(address, "/healthz", started, &mut child)?;
        Ok((Server { child, address }, ready))
    }

    fn start_twin(&self, core: Option<u32>) -> anyhow::Result<Server> {
        let address = free_port()?;
        let mut child = pinned(core, &self.release.join("bench-twin"))
            .arg(address.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start bench-twin")?;
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = http(address, "POST", "/api/v1/bench/echo", &[], ECHO_BODY) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("bench-twin did not start");
            }
            if let Some(status) = child.try_wait()? {
                bail!("bench-twin exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Server { child, address })
    }

    fn lua(&self, name: &str, script: &str) -> anyhow::Result<PathBuf> {
        let path = self.scratch.join(format!("{name}.lua"));
        std::fs::write(&path, script)?;
        Ok(path)
    }

    /// One wrk run against `url`.
    fn wrk(
        &self,
        url: &str,
        script: &Path,
        duration: Duration,
        connections: u32,
    ) -> anyhow::Result<Load> {
        let output = pinned(Some(1), Path::new("wrk"))
            .args([
                "-t1",
                &format!("-c{connections}"),
                &format!("-d{}s", duration.as_secs()),
                "--latency",
                "-s",
            ])
            .arg(script)
            .arg(url)
            .output()
            .context("cannot run wrk")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "wrk failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
    }

    /// Alternates the sides for the planned rounds, after a warm-up of each.
    fn compare(&self, sides: &[(&str, String, PathBuf)]) -> anyhow::Result<Vec<Summary>> {
        self.compare_from(sides, &|_| Ok(()))
    }

    /// `compare` with `rounds` rounds instead of the plan's.
    fn compare_rounds(
        &self,
        sides: &[(&str, String, PathBuf)],
        rounds: usize,
    ) -> anyhow::Result<Vec<Summary>> {
        let bench = Bench {
            plan: Plan {
                rounds,
                ..self.plan.clone()
            },
            scratch: self.scratch.clone(),
            release: self.release.clone(),
        };
        bench.compare(sides)
    }

    /// Like `compare`, with `reset(side)` run before every run of a side (to start each
    /// run from the same data).
    fn compare_from(
        &self,
        sides: &[(&str, String, PathBuf)],
        reset: &dyn Fn(usize) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Summary>> {
        for (index, (_, url, script)) in sides.iter().enumerate() {
            reset(index)?;
            self.wrk(url, script, self.plan.warmup, self.plan.connections)?;
        }
        let mut summaries: Vec<Summary> = sides
            .iter()
            .map(|(label, _, _)| Summary {
                label: label.to_string(),
                runs: Vec::new(),
            })
            .collect();
        for round in 0..self.plan.rounds {
            // Alternate which side goes first, so drift over time does not favour one.
            let mut order: Vec<usize> = (0..sides.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let (_, url, script) = &sides[index];
                reset(index)?;
                summaries[index].runs.push(self.wrk(
                    url,
                    script,
                    self.plan.round,
                    self.plan.connections,
                )?);
            }
        }
        Ok(summaries)
    }
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Option<Load> {
    let mut load = Load {
        requests_per_sec: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        requests: 0,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => load.requests_per_sec = value.parse().ok()?,
            ["50%", value] => load.p50_ms = parse_duration_ms(value)?,
            ["99%", value] => load.p99_ms = parse_duration_ms(value)?,
            [count, "requests", "in", ..] => load.requests = count.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                load.errors += count.parse::<u64>().ok()?
            }
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    (load.requests_per_sec > 0.0).then_some(load)
}

fn post_script(path: &str, body: &str, token: Option<&str>) -> String {
    let mut script = format!(
        "wrk.method = \"POST\"\nwrk.path = \"{path}\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    if let Some(token) = token {
        let _ = writeln!(
            script,
            "wrk.headers[\"Authorization\"] = \"Bearer {token}\""
        );
    }
    script
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn token(pixsim7: &Path, user_id: i64) -> anyhow::Result<String> {
    let output = Command::new(pixsim7)
        .args([
            "token",
            "--user-id",
            &user_id.to_string(),
            "--admin",
            "--ttl",
            "2h",
        ])
        .env("PIXSIM7_JWT_SECRET", JWT_SECRET)
        .env("PIXSIM7_LOG", "error")
        .output()?;
    if !output.status.success() {
        bail!("pixsim7 token failed");
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Start-up time and memory with 1, 10 and 100 plugin libraries: the report's section.
fn startup_table(bench: &Bench) -> anyhow::Result<String> {
    println!("== start-up");
    let mut startup_rows = Vec::new();
    for libraries in [1usize, 10, 100] {
        let name = format!("startup-{libraries}");
        let dir = bench.plugin_dir(&name, &["bench_echo"], libraries - 1)?;
        let database = bench.scratch.join(format!("{name}.db"));
        let mut times = Vec::new();
        let mut rss = 0;
        for _ in 0..bench.plan.startup_runs {
            let (server, ready) = bench.start_host(&dir, &database, None, None)?;
            times.push(ready.as_secs_f64() * 1000.0);
            rss = resident_kib(server.pid())?;
            server.stop();
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A first start: no private copies and no file index, so every file is read,
        // hashed, checked, read again and copied.
        let _ = std::fs::remove_dir_all(bench.scratch.join("data").join("plugin-cache"));
        let (server, cold) = bench.start_host_migrated(&dir, &database)?;
        server.stop();
        startup_rows.push(format!(
            "| {libraries} | {:.1} | {min:.1}–{max:.1} | {:.1} | {:.1} |",
            median(times),
            rss as f64 / 1024.0,
            cold.as_secs_f64() * 1000.0
        ));
    }
    Ok(format!("## Start-up\n\nFrom process start to `/healthz` answering 200, the database already migrated, {} runs each; resident memory right after. These starts find the private copies (`pixsim7 migrate` wrote them) and the file index of the start before: each file is checked for permissions and its stamps (device, inode, size, mtime, ctime) compared, and an unchanged file is not read again (docs/security.md). The last column is one first start, with no private copies and no index: every file read, hashed, checked, read again and copied.\n\n| plugin libraries | ms (median) | ms (min–max) | RSS MiB | first start, ms |\n|---|---|---|---|---|\n{}\n",
        bench.plan.startup_runs, startup_rows.join("\n")))
}

/// Which measurements to run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything; writes `docs/PERFORMANCE.md`.
    All,
    /// Only the forwarding comparison, printed (for profiling the request path).
    Forwarding,
    /// Only the start-up table, printed.
    Startup,
}

/// Runs the measurements and, for [`Scope::All`], writes `docs/PERFORMANCE.md`.
pub fn run_bench(workspace: &Workspace, quick: bool, scope: Scope) -> anyhow::Result<()> {
    if scope != Scope::Startup && !has_tool("wrk") {
        bail!(
            "the benchmark needs the load generator wrk: install it with `apt-get install wrk` \
             (Debian/Ubuntu), `dnf install wrk` or `brew install wrk`, then run `cargo xtask bench` again"
        );
    }
    let mut packages: Vec<&str> = workspace.plugins.iter().map(|(p, _)| p.as_str()).collect();
    packages.extend(["host", "bench-echo", "bench-many", "bench-twin"]);
    let mut build = crate::cargo();
    build.args(["build", "--release"]);
    for package in &packages {
        build.args(["--package", package]);
    }
    run(&mut build)?;

    let scratch = workspace.target_dir.join("bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let bench = Bench {
        plan: Plan::new(quick),
        scratch,
        release: workspace.target_dir.join("release"),
    };
    let mut report = String::new();
    let started = Instant::now();
    if scope == Scope::Startup {
        println!("\n{}", startup_table(&bench)?);
        return Ok(());
    }

    // 1. Forwarding overhead: the same handler as a plugin route and compiled into actix.
    println!("== forwarding overhead");
    let echo_script = bench.lua("echo", &post_script("/api/v1/bench/echo", ECHO_BODY, None))?;
    let one = bench.plugin_dir("one", &["bench_echo"], 0)?;
    let (host, _) = bench.start_host(&one, &bench.scratch.join("one.db"), Some(1), Some(0))?;
    let twin = bench.start_twin(Some(0))?;
    // The same host with its access log on (one line per request, written to a pipe nobody
    // reads here: stderr is /dev/null), to show what the log costs.
    let logged_dir = bench.plugin_dir("one-logged", &["bench_echo"], 0)?;
    let (logged, _) = bench.start_host_logging(
        &logged_dir,
        &format!("sqlite://{}", bench.scratch.join("one-logged.db").display()),
        Some(1),
        Some(0),
        "warn,pixsim7::access=info",
    )?;
    let overhead = bench.compare_rounds(
        &[
            (
                "compiled into actix (bench-twin)",
                twin.url("/api/v1/bench/echo"),
                echo_script.clone(),
            ),
            (
                "plugin route (pixsim7 + libbench_echo.so)",
                host.url("/api/v1/bench/echo"),
                echo_script.clone(),
            ),
            (
                "plugin route, access log on",
                logged.url("/api/v1/bench/echo"),
                echo_script.clone(),
            ),
        ],
        bench.plan.forwarding_rounds,
    )?;
    twin.stop();
    host.stop();
    logged.stop();
    let _ = writeln!(report, "## Forwarding overhead\n\n`POST /api/v1/bench/echo` (parse a small JSON body, answer a small JSON body), 1 worker pinned to core 0, wrk `-t1 -c{}` on core 1, {} rounds of {} s alternating, after {} s warm-up each. The ratio is plugin route ÷ compiled-in. The host counts every request in `/metrics` and watches every handler; its access log is off in the first plugin row (the bench logs at `warn`) and on in the second (written to /dev/null).\n\n{LOAD_HEADER}\n{}\n{}\n{}\n",
        bench.plan.connections, bench.plan.forwarding_rounds, bench.plan.round.as_secs(), bench.plan.warmup.as_secs(),
        overhead[0].row(None), overhead[1].row(Some(&overhead[0])), overhead[2].row(Some(&overhead[0])));
    if scope == Scope::Forwarding {
        println!("\n{report}");
        return Ok(());
    }

    // 2. Routing cost as plugins are added.
    println!("== route count");
    let mut servers = Vec::new();
    let mut sides = Vec::new();
    for copies in [0usize, 10, 100] {
        let name = format!("routes-{}", copies + 1);
        let dir = bench.plugin_dir(&name, &["bench_echo"], copies)?;
        let (server, _) = bench.start_host(
            &dir,
            &bench.scratch.join(format!("{name}.db")),
            Some(1),
            Some(0),
        )?;
        let routes = 1 + copies * 10;
        sides.push((
            format!("{} plugin libraries, {routes} plugin routes", copies + 1),
            server.url("/api/v1/bench/echo"),
            echo_script.clone(),
        ));
        servers.push(server);
    }
    let sides_ref: Vec<(&str, String, PathBuf)> = sides
        .iter()
        .map(|(l, u, s)| (l.as_str(), u.clone(), s.clone()))
        .collect();
    let routing = bench.compare(&sides_ref)?;
    for server in servers {
        server.stop();
    }
    let _ = writeln!(report, "## Route count\n\nThe same route with 1, 11 and 101 plugin libraries loaded (`bench-echo`, plus 10 or 100 copies of `bench-many`, each adding 10 parameterised routes: 1001 plugin routes in all at the top). Ratio to the 1-plugin case.\n\n{LOAD_HEADER}\n{}\n{}\n{}\n",
        routing[0].row(None), routing[1].row(Some(&routing[0])), routing[2].row(Some(&routing[0])));

    // 3. Start-up time and memory.
    let _ = writeln!(report, "{}", startup_table(&bench)?);

    println!("== memory under load");
    let game_libs: Vec<&str> = workspace
        .plugins
        .iter()
        .map(|(_, lib)| lib.as_str())
        .filter(|l| *l != "game_relationships")
        .collect();
    let game_dir = bench.plugin_dir("game", &game_libs, 0)?;
    let (server, _) = bench.start_host(&game_dir, &bench.scratch.join("memory.db"), None, None)?;
    let idle = resident_kib(server.pid())?;
    let dice_script = bench.lua(
        "dice",
        &post_script("/api/v1/dice-game/roll", r#"{"dice":"3d6+1"}"#, None),
    )?;
    let dice_url = server.url("/api/v1/dice-game/roll");
    // A warm-up first: the allocator's per-thread arenas and actix's buffers grow to their
    // working size in the first requests; a leak shows as growth after that.
    let warmup_requests = bench
        .wrk(&dice_url, &dice_script, Duration::from_secs(3), 32)?
        .requests;
    let warm = resident_kib(server.pid())?;
    let mut served = 0;
    let load_started = Instant::now();
    while served < bench.plan.memory_requests {
        served += bench
            .wrk(&dice_url, &dice_script, Duration::from_secs(10), 32)?
            .requests;
    }
    let after = resident_kib(server.pid())?;
    server.stop();
    let change = (after as f64 - warm as f64) / warm as f64 * 100.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = writeln!(report, "## Memory\n\nThe host with every game plugin, `auth` and `dice-game` ({} libraries), default workers: resident memory at idle after start-up, after a warm-up of {warmup_requests} requests, and after {served} more requests to `POST /api/v1/dice-game/roll` ({:.0} s). Flatness is judged from the warmed-up size.\n\n| at idle | warmed up | after {served} requests | change since warm-up |\n|---|---|---|---|\n| {:.1} MiB | {:.1} MiB | {:.1} MiB | {change:+.1} % |\n",
        game_libs.len(), load_started.elapsed().as_secs_f64(), mib(idle), mib(warm), mib(after));

    // 4. The game routes, against a replica of the original backend.
    println!("== game routes against the original");
    let game_section = game::compare_game_routes(&bench, workspace, &game_libs)?;
    report.push_str(&game_section);

    // 5. Logins do not stall other requests (argon2id runs on the blocking pool).
    println!("== logins and a cheap route");
    let auth_dir = bench.plugin_dir("auth", &["auth", "dice_game"], 0)?;
    let (server, _) = bench.start_host(&auth_dir, &bench.scratch.join("auth.db"), Some(1), None)?;
    let credentials = r#"{"username":"bench","password":"correct horse battery"}"#;
    let (status, body) = http(
        server.address,
        "POST",
        "/api/v1/auth/register",
        &[],
        credentials,
    )?;
    if status != 201 {
        bail!("registering the benchmark user failed: {status} {body}");
    }
    let login_script = bench.lua(
        "login",
        &post_script("/api/v1/auth/login", credentials, None),
    )?;
    let cheap = server.url("/api/v1/dice-game/roll");
    bench.wrk(&cheap, &dice_script, bench.plan.warmup, 4)?;
    let idle_load = bench.wrk(&cheap, &dice_script, bench.plan.round, 4)?;
    let login_url = server.url("/api/v1/auth/login");
    let login_script_for_thread = login_script.clone();
    let round = bench.plan.round + Duration::from_secs(2);
    let logins = std::thread::spawn(move || -> anyhow::Result<Load> {
        let output = Command::new("wrk")
            .args([
                "-t1",
                "-c8",
                &format!("-d{}s", round.as_secs()),
                "--latency",
                "-s",
            ])
            .arg(&login_script_for_thread)
            .arg(&login_url)
            .output()?;
        parse_wrk(&String::from_utf8_lossy(&output.stdout)).context("wrk for logins")
    });
    std::thread::sleep(Duration::from_secs(1)); // let the logins get going before measuring
    let busy_load = bench.wrk(&cheap, &dice_script, bench.plan.round, 4)?;
    let login_load = logins
        .join()
        .map_err(|_| anyhow::anyhow!("login thread panicked"))??;
    server.stop();
    let _ = writeln!(report, "## Logins and a cheap route\n\nOne worker. `POST /api/v1/dice-game/roll` with 4 connections, alone and while 8 connections log in continuously (argon2id, run through `run_blocking` on the host's blocking pool). Both share the machine's 2 cores, so some slowdown is CPU contention, not a blocked worker.\n\n| cheap route | req/s | p50 ms | p99 ms |\n|---|---|---|---|\n| idle | {:.0} | {:.3} | {:.3} |\n| during logins | {:.0} | {:.3} | {:.3} |\n| ratio (during ÷ idle) | | {:.2}× | {:.2}× |\n\nLogins meanwhile: {:.1} per second, p50 {:.0} ms, p99 {:.0} ms ({} errors).\n",
        idle_load.requests_per_sec, idle_load.p50_ms, idle_load.p99_ms,
        busy_load.requests_per_sec, busy_load.p50_ms, busy_load.p99_ms,
        busy_load.p50_ms / idle_load.p50_ms, busy_load.p99_ms / idle_load.p99_ms,
        login_load.requests_per_sec, login_load.p50_ms, login_load.p99_ms, login_load.errors);

    let document = format!(
        "# Performance\n\nMeasured by `cargo xtask bench{}` on {} ({} cores, {}), {}, in {:.0} s. Release builds; load from wrk {}. Numbers from one run on one machine: compare rows within a table, not across machines.\n\n{report}{}",
        if quick { " --quick" } else { "" },
        cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from),
        kernel(),
        today(),
        started.elapsed().as_secs_f64(),
        wrk_version(),
        notes()
    );
    let path = workspace.root.join("docs/PERFORMANCE.md");
    std::fs::write(&path, &document)?;
    println!("{document}");
    println!("written to {}", path.display());
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| "unknown kernel".to_owned(),
        |k| format!("Linux {}", k.trim()),
    )
}

fn wrk_version() -> String {
    Command::new("wrk")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.split_whitespace().nth(1).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The part of the document written by hand: what the numbers mean and what remains.
fn notes() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/performance-notes.md"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:1/x\n  1 threads and 32 connections\n  Latency Distribution\n     50%  201.00us\n     75%  300.00us\n     90%  1.00ms\n     99%    1.20ms\n  123456 requests in 5.00s, 20.00MB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  24691.20\nTransfer/sec:      4.00MB\n";
        let load = parse_wrk(text).unwrap();
        assert_eq!(load.requests, 123_456);
        assert_eq!(load.errors, 3);
        assert!((load.p50_ms - 0.201).abs() < 1e-9);
        assert!((load.p99_ms - 1.2).abs() < 1e-9);
        assert!((load.requests_per_sec - 24691.2).abs() < 1e-9);
    }
}
