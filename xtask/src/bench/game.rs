//! The game routes side by side with a replica of the original backend (FastAPI + uvicorn,
//! one worker, synchronous handlers on Python's `sqlite3`; `xtask/replica/`), installed into
//! a virtual environment under `target/`. Both sides get 1000 fresh sessions of one user;
//! every run of `pickpocket` starts from sessions reset to empty documents, so the faster
//! side is not slowed by the longer attempt lists it wrote in earlier runs. On PostgreSQL
//! (when `PIXSIM7_BENCH_DATABASE_URL` or `PIXSIM7_TEST_DATABASE_URL` names a server and
//! `psql` exists) the host's numbers are reported too, in a database made for the run.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{free_port, http, pinned, token, Bench, Server, Summary, JWT_SECRET, LOAD_HEADER};
use crate::Workspace;

/// Sessions each side gets.
const SESSIONS: usize = 1000;

/// Resets every session of a database to empty documents.
const RESET_SQL: &str = "UPDATE game_sessions SET flags = '{}', relationships = '{}', version = 1";

/// Where a side keeps its data, for resetting it between runs.
enum Store {
    Sqlite(PathBuf),
    Postgres(String),
    /// Not resettable (no tool to do it with).
    Fixed,
}

impl Store {
    fn reset(&self) -> anyhow::Result<()> {
        let status = match self {
            Store::Fixed => return Ok(()),
            Store::Sqlite(path) => Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); \
                     c.execute(sys.argv[2]); c.commit()",
                ])
                .arg(path)
                .arg(RESET_SQL)
                .status()?,
            Store::Postgres(url) => Command::new("psql")
                .args(["-q", "-c", RESET_SQL, url])
                .stdout(Stdio::null())
                .status()?,
        };
        if !status.success() {
            bail!("resetting the sessions failed");
        }
        Ok(())
    }
}

/// One server under comparison, with the id range of its sessions.
struct Side {
    label: String,
    server: Server,
    store: Store,
    first_session: i64,
    /// Whether game-relationships reacts (its backlog is drained before the next run).
    relationships: bool,
}

pub fn compare_game_routes(
    bench: &Bench,
    workspace: &Workspace,
    game_libs: &[&str],
) -> anyhow::Result<String> {
    let token = token(&bench.pixsim7(), 1)?;
    let mut report = String::new();
    let python = has_python();
    let replica = match install_replica(workspace) {
        Ok(venv) => Some(venv),
        Err(why) => {
            println!("   the replica of the original is not measured: {why}");
            let _ = writeln!(
                report,
                "> The replica of the original backend was not measured: {why}.\n"
            );
            None
        }
    };

    let mut sides = Vec::new();
    if let Some(venv) = &replica {
        let database = bench.scratch.join("replica.db");
        let server = start_replica(venv, workspace, &database)?;
        sides.push(Side {
            label: "original (FastAPI + sqlite3, replica)".to_owned(),
            first_session: create_sessions(&server, &token)?,
            server,
            store: Store::Sqlite(database),
            relationships: false,
        });
    }
    let game_dir = bench.plugin_dir("game-routes", game_libs, 0)?;
    let mut with_relationships: Vec<&str> = game_libs.to_vec();
    with_relationships.push("game_relationships");
    let full_dir = bench.plugin_dir("game-routes-full", &with_relationships, 0)?;
    for (label, dir, name, relationships) in [
        ("pixsim7 (SQLite)", &game_dir, "ours.db", false),
        (
            "pixsim7 + game-relationships reacting (SQLite)",
            &full_dir,
            "ours-full.db",
            true,
        ),
    ] {
        let database = bench.scratch.join(name);
        let (server, _) = bench.start_host(dir, &database, Some(1), Some(0))?;
        sides.push(Side {
            label: label.to_owned(),
            first_session: create_sessions(&server, &token)?,
            server,
            store: if python {
                Store::Sqlite(database)
            } else {
                Store::Fixed
            },
            relationships,
        });
    }

    // GET on fresh sessions: the original and the host with the same plugins.
    let get_sides: Vec<&Side> = sides.iter().filter(|s| !s.relationships).collect();
    let gets = measure(bench, &get_sides, &token, Route::GetSession)?;
    let picks = measure(
        bench,
        &sides.iter().collect::<Vec<_>>(),
        &token,
        Route::Pickpocket,
    )?;
    let _ = writeln!(report, "## Game routes against the original\n\n\
        The original backend is replicated in `xtask/replica/` (FastAPI + uvicorn with one worker, synchronous `def` handlers on Python's `sqlite3`, WAL, sessions as JSON text, a bearer token checked on every call). \
        Each side: one worker pinned to core 0, its own SQLite file with {SESSIONS} fresh sessions of one user; wrk `-t1 -c{}` on core 1, requests spread over the sessions at random, {} rounds of {} s alternating after {} s of warm-up. \
        Before every pickpocket run each side's sessions are reset to empty documents, so a faster side is not slowed by the longer attempt lists it wrote before. \
        Ratios are to the original; the goal is 10× for both routes.\n\n\
        ### GET /api/v1/game/sessions/{{id}}\n\n{LOAD_HEADER}\n{}\n\n\
        ### POST /api/v1/game/stealth/pickpocket\n\n\
        The third row also loads game-relationships, which reacts to every detected attempt (half of them) through the event outbox, in a transaction of its own.\n\n{LOAD_HEADER}\n{}\n",
        bench.plan.connections, bench.plan.rounds, bench.plan.round.as_secs(), bench.plan.warmup.as_secs(),
        rows(&gets), rows(&picks));
    for side in sides {
        side.server.stop();
    }

    match postgres_database()? {
        None => {
            let _ = writeln!(report, "PostgreSQL was not measured: set `PIXSIM7_BENCH_DATABASE_URL` (or `PIXSIM7_TEST_DATABASE_URL`) to a server where the bench may create a database, with `psql` installed.\n");
        }
        Some(database) => {
            let (server, _) = bench.start_host_on(&game_dir, &database.url, Some(1), Some(0))?;
            let side = Side {
                label: "pixsim7 (PostgreSQL)".to_owned(),
                first_session: create_sessions(&server, &token)?,
                server,
                store: Store::Postgres(database.url.clone()),
                relationships: false,
            };
            let gets = measure(bench, &[&side], &token, Route::GetSession)?;
            let picks = measure(bench, &[&side], &token, Route::Pickpocket)?;
            side.server.stop();
            let _ = writeln!(report, "### The same on PostgreSQL\n\nThe host alone (the original ran on SQLite only), the server on this machine over loopback, 1 worker, the same plugins.\n\n{LOAD_HEADER}\n{}\n{}\n",
                gets[0].row(None).replace("pixsim7 (PostgreSQL)", "GET session, pixsim7 (PostgreSQL)"),
                picks[0].row(None).replace("pixsim7 (PostgreSQL)", "pickpocket, pixsim7 (PostgreSQL)"));
        }
    }
    Ok(report)
}

#[derive(Clone, Copy)]
enum Route {
    GetSession,
    Pickpocket,
}

fn rows(summaries: &[Summary]) -> String {
    let baseline = summaries.first();
    summaries
        .iter()
        .enumerate()
        .map(|(i, s)| s.row(if i == 0 { None } else { baseline }))
        .collect::<Vec<_>>()
        .join("\n")
}

fn measure(
    bench: &Bench,
    sides: &[&Side],
    token: &str,
    route: Route,
) -> anyhow::Result<Vec<Summary>> {
    let mut runs = Vec::new();
    for (index, side) in sides.iter().enumerate() {
        let first = side.first_session;
        let last = first + SESSIONS as i64 - 1;
        let (name, script) = match route {
            Route::GetSession => (
                "get",
                format!(
                    "wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
                     request = function()\n  return wrk.format(\"GET\", \"/api/v1/game/sessions/\" .. math.random({first}, {last}))\nend\n"
                ),
            ),
            Route::Pickpocket => (
                "pickpocket",
                format!(
                    "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
                     request = function()\n  local body = string.format('{{\"npc_id\": %d, \"slot_id\": \"purse\", \"base_success_chance\": 0.5, \"detection_chance\": 0.5, \"session_id\": %d}}', math.random(1, 50), math.random({first}, {last}))\n  return wrk.format(nil, \"/api/v1/game/stealth/pickpocket\", nil, body)\nend\n"
                ),
            ),
        };
        let script = bench.lua(&format!("{name}-{index}"), &script)?;
        runs.push((side.label.as_str(), side.server.url("/"), script));
    }
    let reset = |index: usize| -> anyhow::Result<()> {
        let side = sides[index];
        if let Route::Pickpocket = route {
            if side.relationships {
                drain_events(&side.server, token)?;
            }
            side.store.reset()?;
        }
        Ok(())
    };
    let summaries = bench.compare_from(&runs, &reset)?;
    for side in sides.iter().filter(|s| s.relationships) {
        drain_events(&side.server, token)?;
    }
    Ok(summaries)
}

/// Waits (at most two minutes) until game-relationships has handled every event.
fn drain_events(server: &Server, token: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let auth = format!("Bearer {token}");
    loop {
        let (status, body) = http(
            server.address,
            "GET",
            "/api/v1/plugins/game-relationships",
            &[("Authorization", &auth)],
            "",
        )?;
        if status != 200 {
            bail!("the admin API answered {status}: {body}");
        }
        let lag = serde_json::from_str::<serde_json::Value>(&body)?["event_lag"].as_u64();
        if lag == Some(0) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("game-relationships still had {lag:?} events pending after two minutes");
        }
        // Waiting on another process's backlog; nothing to block on from here.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the sessions; the id of the first.
fn create_sessions(server: &Server, token: &str) -> anyhow::Result<i64> {
    let auth = format!("Bearer {token}");
    let mut first = None;
    for _ in 0..SESSIONS {
        let (status, body) = http(
            server.address,
            "POST",
            "/api/v1/game/sessions",
            &[("Authorization", &auth)],
            "{}",
        )?;
        if status != 200 {
            bail!("creating a session failed: {status} {body}");
        }
        let id = serde_json::from_str::<serde_json::Value>(&body)?["id"]
            .as_i64()
            .context("a session id")?;
        first.get_or_insert(id);
    }
    first.context("no session was created")
}

fn has_python() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The replica's virtual environment (`target/replica-venv`), made and filled with pip on
/// first use.
fn install_replica(workspace: &Workspace) -> Result<PathBuf, String> {
    let venv = workspace.target_dir.join("replica-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import fastapi, uvicorn, jwt"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Ok(venv);
    }
    if !has_python() {
        return Err("python3 is not installed (apt-get install python3 python3-venv)".to_owned());
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| e.to_string())?;
    if !made.success() {
        return Err(format!(
            "python3 -m venv {} failed (apt-get install python3-venv)",
            venv.display()
        ));
    }
    println!(
        "   installing the replica's packages with pip into {}",
        venv.display()
    );
    let requirements = workspace.root.join("xtask/replica/requirements.txt");
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "-r"])
        .arg(&requirements)
        .status();
    match installed {
        Ok(status) if status.success() && ready(&python) => Ok(venv),
        Ok(_) => Err(format!(
            "pip could not install {} (is PyPI reachable?)",
            requirements.display()
        )),
        Err(_) => Err("pip is missing (apt-get install python3-pip)".to_owned()),
    }
}

fn start_replica(venv: &Path, workspace: &Workspace, database: &Path) -> anyhow::Result<Server> {
    let _ = std::fs::remove_file(database);
    let address = free_port()?;
    let mut child = pinned(Some(0), &venv.join("bin/uvicorn"))
        .arg("--app-dir")
        .arg(workspace.root.join("xtask/replica"))
        .args([
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            &address.port().to_string(),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ])
        .env("PIXSIM7_REPLICA_DB", database)
        .env("PIXSIM7_JWT_SECRET", JWT_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the replica (uvicorn)")?;
    let started = Instant::now();
    // Any answer means it serves (without a token the route answers 401).
    while http(address, "GET", "/api/v1/game/sessions/1", &[], "").is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("the replica exited with {status}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the replica did not start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { child, address })
}

/// A PostgreSQL database made for this run (dropped when done).
struct BenchDatabase {
    url: String,
    admin_url: String,
    name: String,
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                &self.admin_url,
            ])
            .status();
    }
}

fn postgres_database() -> anyhow::Result<Option<BenchDatabase>> {
    let Some(admin_url) = ["PIXSIM7_BENCH_DATABASE_URL", "PIXSIM7_TEST_DATABASE_URL"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    else {
        return Ok(None);
    };
    if Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    let name = format!("pixsim7_bench_{}", std::process::id());
    let created = Command::new("psql")
        .args(["-q", "-c", &format!("CREATE DATABASE {name}"), &admin_url])
        .status()?;
    if !created.success() {
        bail!("psql could not create the benchmark database on {admin_url}");
    }
    let base = admin_url.split('?').next().unwrap_or(&admin_url);
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    Ok(Some(BenchDatabase {
        url: format!("{server}/{name}"),
        admin_url,
        name,
    }))
}
