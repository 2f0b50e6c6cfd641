//! Project automation, run as `cargo xtask <task>` (see `.cargo/config.toml`):
//! `build-plugins [--release]`, `run [--release] [-- <pixsim7 args>]`, `test [<cargo test args>]`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use serde::Deserialize;

mod bench;
mod scaffold;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  build-plugins [--release]           build every crate under plugins/ and copy the libraries into plugin-dir/
  run [--release] [-- <pixsim7 args>] build the plugins, then serve them
  test [<cargo test args>]            build the host, plugins and test fixtures, then run every test
  new-plugin NAME [--out-of-tree DIR [--sdk-version VERSION]]
                                      write a plugin crate (plugins/NAME/, or a standalone crate
                                      in DIR) with one public route GET /api/v1/NAME/hello
  bench [--quick] [--forwarding | --startup]
                                      release build, then measure the host against baselines
                                      (needs wrk); writes docs/PERFORMANCE.md (--forwarding: only
                                      the plugin route against its compiled-in twin, printed;
                                      --startup: only the start-up table, printed)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let workspace = Workspace::load()?;
    match task.as_str() {
        "build-plugins" => {
            let profile = Profile::from_flags(rest)?;
            workspace.build_plugins(profile)?;
        }
        "run" => {
            let (flags, server_args) = match rest.iter().position(|a| a == "--") {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let profile = Profile::from_flags(flags)?;
            workspace.build_plugins(profile)?;
            let mut command = cargo();
            command.args(["run", "--package", "host", "--bin", "pixsim7"]);
            if profile == Profile::Release {
                command.arg("--release");
            }
            command.arg("--").args(server_args);
            run(&mut command)?;
        }
        "test" => workspace.test(rest)?,
        "new-plugin" => {
            let scaffold = scaffold::Scaffold::from_args(rest, &workspace.root)?;
            let dir = scaffold.write(&workspace.root, &workspace.packages)?;
            println!("wrote {}", dir.display());
            match scaffold.out_of_tree {
                None => println!(
                    "next: `cargo xtask build-plugins`, then restart the host: \
                     GET /api/v1/{}/hello is served",
                    scaffold.name
                ),
                Some(_) => println!(
                    "next: `cargo test` and `cargo build --release` there, then copy the library \
                     into the host's plugin-dir/ and restart it (see {}/README.md)",
                    dir.display()
                ),
            }
        }
        "bench" => {
            let mut quick = false;
            let mut scope = bench::Scope::All;
            for flag in rest {
                match flag.as_str() {
                    "--quick" => quick = true,
                    "--forwarding" => scope = bench::Scope::Forwarding,
                    "--startup" => scope = bench::Scope::Startup,
                    other => bail!("unexpected argument {other:?}\n\n{USAGE}"),
                }
            }
            bench::run_bench(&workspace, quick, scope)?;
        }
        "help" | "--help" | "-h" => println!("{USAGE}"),
        other => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn from_flags(flags: &[String]) -> anyhow::Result<Profile> {
        match flags {
            [] => Ok(Profile::Debug),
            [flag] if flag == "--release" => Ok(Profile::Release),
            other => bail!("unexpected arguments {other:?}\n\n{USAGE}"),
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The parts of `cargo metadata` this needs.
#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    /// (package, library target name) of each crate under plugins/.
    plugins: Vec<(String, String)>,
    /// The same for the test fixtures under host/tests/fixtures/.
    fixtures: Vec<(String, String)>,
    /// Every package of the workspace, by name.
    packages: Vec<String>,
}

impl Workspace {
    fn load() -> anyhow::Result<Workspace> {
        let output = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .context("cannot run cargo metadata")?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: Metadata = serde_json::from_slice(&output.stdout)?;
        let libraries_under = |dir: &Path| -> Vec<(String, String)> {
            let mut found: Vec<(String, String)> = metadata
                .packages
                .iter()
                .filter(|p| p.manifest_path.starts_with(dir))
                .filter_map(|p| {
                    let lib = p
                        .targets
                        .iter()
                        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))?;
                    Some((p.name.clone(), lib.name.replace('-', "_")))
                })
                .collect();
            found.sort();
            found
        };
        let root = metadata.workspace_root.clone();
        Ok(Workspace {
            plugins: libraries_under(&root.join("plugins")),
            fixtures: libraries_under(&root.join("host/tests/fixtures")),
            packages: metadata.packages.iter().map(|p| p.name.clone()).collect(),
            target_dir: metadata.target_directory,
            root,
        })
    }

    fn build(&self, profile: Profile, packages: &[&(String, String)]) -> anyhow::Result<()> {
        let mut command = cargo();
        command.arg("build");
        if profile == Profile::Release {
            command.arg("--release");
        }
        for (package, _) in packages {
            command.args(["--package", package]);
        }
        run(&mut command)
    }

    fn build_plugins(&self, profile: Profile) -> anyhow::Result<()> {
        if self.plugins.is_empty() {
            bail!(
                "no plugin crates found under {}",
                self.root.join("plugins").display()
            );
        }
        self.build(profile, &self.plugins.iter().collect::<Vec<_>>())?;
        let plugin_dir = self.root.join("plugin-dir");
        std::fs::create_dir_all(&plugin_dir)?;
        for (package, lib) in &self.plugins {
            let file = library_file_name(lib);
            let built = self.target_dir.join(profile.dir()).join(&file);
            // Copy then rename: a running host has the old file mapped, and overwriting it
            // in place would crash that host; a rename leaves its copy intact.
            let temporary = plugin_dir.join(format!(".{file}.tmp"));
            std::fs::copy(&built, &temporary)
                .with_context(|| format!("cannot copy {} for {package}", built.display()))?;
            std::fs::rename(&temporary, plugin_dir.join(&file))?;
            println!("  {package:<24} -> plugin-dir/{file}");
        }
        println!("{} plugins in {}", self.plugins.len(), plugin_dir.display());
        Ok(())
    }

    fn test(&self, cargo_test_args: &[String]) -> anyhow::Result<()> {
        // The integration tests load plugin and fixture libraries from the target directory
        // next to the host binary; `cargo test` alone does not build cdylibs of other crates.
        let mut everything: Vec<&(String, String)> =
            self.plugins.iter().chain(&self.fixtures).collect();
        let host = ("host".to_owned(), String::new());
        everything.push(&host);
        self.build(Profile::Debug, &everything)?;
        self.build_compat_fixtures()?;
        self.build_scaffold_check()?;
        self.install_browser_driver()?;
        let mut command = cargo();
        command.args(["test", "--workspace"]).args(cargo_test_args);
        // The OpenAPI contract test runs schemathesis; without it that test fails and says how
        // to install it.
        match self.schemathesis() {
            Ok(st) => {
                command.env("PIXSIM7_SCHEMATHESIS", st);
            }
            Err(problem) => eprintln!("warning: no schemathesis ({problem})"),
        }
        run(&mut command)
    }

    /// The `st` of a pinned schemathesis in `target/schemathesis-venv`, installed with pip
    /// when missing.
    fn schemathesis(&self) -> Result<PathBuf, String> {
        const PINNED: &str = "schemathesis==4.32.5";
        let venv = self.target_dir.join("schemathesis-venv");
        let st = venv.join("bin/st");
        let pinned_marker = venv.join(PINNED);
        if st.is_file() && pinned_marker.is_file() {
            return Ok(st);
        }
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !created.is_ok_and(|status| status.success()) {
            return Err(format!(
                "python3 -m venv {} failed (apt-get install python3 python3-venv)",
                venv.display()
            ));
        }
        println!("installing {PINNED} with pip into {}", venv.display());
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", PINNED])
            .status();
        match installed {
            Ok(status) if status.success() && st.is_file() => {
                std::fs::write(&pinned_marker, b"").map_err(|e| e.to_string())?;
                Ok(st)
            }
            _ => Err(format!(
                "pip could not install {PINNED} (is PyPI reachable?)"
            )),
        }
    }
}

impl Workspace {
    /// Installs the browser tests' driver (playwright-core, pinned by package-lock.json)
    /// into host/tests/browser/node_modules when it is not there; the tests drive the
    /// system's Chromium with it (`pages_in_browser`).
    fn install_browser_driver(&self) -> anyhow::Result<()> {
        let dir = self.root.join("host/tests/browser");
        if dir.join("node_modules/playwright-core").is_dir() {
            return Ok(());
        }
        let mut command = Command::new("npm");
        command
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        run(&mut command).context("the browser tests need Node.js 20 or newer with npm")
    }

    /// Writes a plugin with `new-plugin --out-of-tree` as an author would, runs its unit
    /// test and builds its library into this target directory, where the host's
    /// integration tests load and call it (`scaffold::the_scaffolded_plugin_is_served`).
    fn build_scaffold_check(&self) -> anyhow::Result<()> {
        let dir = self.target_dir.join("scaffold-check");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let scaffold = scaffold::Scaffold {
            name: "scaffold-check".to_owned(),
            out_of_tree: Some((dir.clone(), scaffold::Sdk::Path(self.root.clone()))),
        };
        scaffold.write(&self.root, &self.packages)?;
        for task in ["test", "build"] {
            let mut command = cargo();
            command
                .args([task, "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &self.target_dir);
            run(&mut command)?;
        }
        Ok(())
    }

    /// Builds the plugins under host/tests/compat/ that are written against a frozen earlier
    /// release of plugin-abi: each is a workspace of its own (one build cannot hold two
    /// plugin-abi 1.x crates), built into this target directory so the tests find it.
    fn build_compat_fixtures(&self) -> anyhow::Result<()> {
        let compat = self.root.join("host/tests/compat");
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&compat)
            .with_context(|| format!("cannot read {}", compat.display()))?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("fixture-"))
            })
            .collect();
        fixtures.sort();
        for fixture in fixtures {
            let mut command = cargo();
            command
                .args(["build", "--manifest-path"])
                .arg(fixture.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &self.target_dir);
            run(&mut command)?;
        }
        Ok(())
    }
}

fn library_file_name(lib: &str) -> String {
    format!(
        "{}{lib}{}",
        env::consts::DLL_PREFIX,
        env::consts::DLL_SUFFIX
    )
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
