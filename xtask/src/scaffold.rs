//! `cargo xtask new-plugin NAME [--out-of-tree DIR] [--sdk-version VERSION]`: writes a plugin
//! crate with one public route (`GET /api/v1/NAME/hello`) and a unit test, either as
//! `plugins/NAME/` in this workspace or as a standalone crate elsewhere.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};

/// Where the SDK comes from in an out-of-tree crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// `plugin-api = { path = .. }`, and the host's test harness by path too.
    Path(PathBuf),
    /// `plugin-api = "VERSION"` from a registry (the host's test harness is not published,
    /// so the unit test checks the manifest only).
    Version(String),
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The plugin id, crate name and route prefix, e.g. `weather`.
    pub name: String,
    /// `None`: `plugins/NAME/` in the workspace.
    pub out_of_tree: Option<(PathBuf, Sdk)>,
}

impl Scaffold {
    /// Reads `NAME [--out-of-tree DIR] [--sdk-version VERSION]`; the workspace root is the
    /// default SDK path.
    pub fn from_args(args: &[String], workspace_root: &Path) -> anyhow::Result<Scaffold> {
        let mut name = None;
        let mut out_dir = None;
        let mut sdk_version = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--out-of-tree" => {
                    out_dir = Some(PathBuf::from(
                        args.next().context("--out-of-tree needs a directory")?,
                    ))
                }
                "--sdk-version" => {
                    sdk_version = Some(args.next().context("--sdk-version needs a version")?)
                }
                flag if flag.starts_with('-') => bail!("unknown option {flag:?}"),
                other if name.is_none() => name = Some(other.to_owned()),
                other => bail!("unexpected argument {other:?}"),
            }
        }
        let name =
            name.context("new-plugin needs a NAME, e.g. `cargo xtask new-plugin weather`")?;
        check_name(&name)?;
        let out_of_tree = match (out_dir, sdk_version) {
            (Some(dir), Some(version)) => Some((dir, Sdk::Version(version.clone()))),
            (Some(dir), None) => Some((dir, Sdk::Path(workspace_root.to_owned()))),
            (None, Some(_)) => bail!("--sdk-version applies to --out-of-tree crates only"),
            (None, None) => None,
        };
        Ok(Scaffold { name, out_of_tree })
    }

    /// The directory the crate goes to.
    pub fn directory(&self, workspace_root: &Path) -> PathBuf {
        match &self.out_of_tree {
            Some((dir, _)) => dir.clone(),
            None => workspace_root.join("plugins").join(&self.name),
        }
    }

    /// Writes the crate; refuses to touch a directory that exists and is not empty, and (in
    /// the workspace) a name another package of the workspace has.
    pub fn write(&self, workspace_root: &Path, packages: &[String]) -> anyhow::Result<PathBuf> {
        if self.out_of_tree.is_none() && packages.contains(&self.name) {
            bail!(
                "the workspace already has a package named {:?}; choose another name",
                self.name
            );
        }
        let dir = self.directory(workspace_root);
        if dir
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            bail!(
                "{} exists and is not empty; choose another name or directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir.join("src"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("Cargo.toml"), self.cargo_toml())?;
        std::fs::write(dir.join("src/lib.rs"), self.lib_rs())?;
        if self.out_of_tree.is_some() {
            std::fs::write(dir.join("README.md"), self.readme())?;
            std::fs::write(dir.join(".gitignore"), "/target\n")?;
            // The same dependency versions as the host's workspace: the crate then builds
            // offline from what the host was built with, and its serde/schemars match.
            let lock = workspace_root.join("Cargo.lock");
            if lock.exists() {
                std::fs::copy(&lock, dir.join("Cargo.lock"))?;
            }
        }
        Ok(dir)
    }

    /// The plugin type: the name in CamelCase with `Plugin` appended, which no prelude item
    /// and no generated type can clash with (`json` gives `JsonPlugin`, not `Json`).
    fn type_name(&self) -> String {
        let mut name: String = self
            .name
            .split(['-', '_'])
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        name.push_str("Plugin");
        name
    }

    fn cargo_toml(&self) -> String {
        let name = &self.name;
        let mut toml = String::new();
        let _ = writeln!(toml, "[package]\nname = \"{name}\"\nversion = \"0.1.0\"");
        let _ = writeln!(
            toml,
            "description = \"The {name} plugin for the PixSim7 host\""
        );
        match &self.out_of_tree {
            None => {
                toml.push_str(
                    "edition.workspace = true\nrust-version.workspace = true\n\
                     license.workspace = true\npublish.workspace = true\n\n\
                     [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
                     [dependencies]\nplugin-api.workspace = true\nserde.workspace = true\n\
                     schemars.workspace = true\n\n\
                     [dev-dependencies]\n\
                     # Unit tests run the plugin against the host's real services (host::testing).\n\
                     host = { workspace = true, features = [\"testing\"] }\n\
                     serde_json.workspace = true\n\n\
                     [lints]\nworkspace = true\n",
                );
            }
            Some((_, sdk)) => {
                toml.push_str("edition = \"2021\"\npublish = false\n\n");
                toml.push_str(
                    "[lib]\n\
                     # cdylib: the library the host loads; rlib: for the unit tests.\n\
                     crate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\n",
                );
                match sdk {
                    Sdk::Path(root) => {
                        let _ = writeln!(
                            toml,
                            "plugin-api = {{ path = {:?} }}",
                            root.join("plugin-api").display().to_string()
                        );
                    }
                    Sdk::Version(version) => {
                        let _ = writeln!(toml, "plugin-api = \"{version}\"");
                    }
                }
                toml.push_str(
                    "# Direct dependencies: their derive macros name these crates by path.\n\
                     serde = { version = \"1\", features = [\"derive\"] }\n\
                     schemars = \"1\"\n\n[dev-dependencies]\nserde_json = \"1\"\n",
                );
                if let Sdk::Path(root) = sdk {
                    let _ = writeln!(
                        toml,
                        "# The host's test harness: real services over a throwaway SQLite database.\n\
                         host = {{ path = {:?}, features = [\"testing\"] }}",
                        root.join("host").display().to_string()
                    );
                }
                toml.push_str(
                    "\n# A workspace of its own: this crate builds outside the host's workspace.\n\
                     [workspace]\n\n[profile.release]\ndebug = \"line-tables-only\"\n",
                );
            }
        }
        toml
    }

    fn lib_rs(&self) -> String {
        let name = &self.name;
        let ty = self.type_name();
        let title = ty.trim_end_matches("Plugin");
        let with_harness = !matches!(&self.out_of_tree, Some((_, Sdk::Version(_))));
        let test = if with_harness {
            format!(
                r#"#[cfg(test)]
mod tests {{
    use host::testing::TestHost;
    use serde_json::json;

    use super::*;

    #[test]
    fn hello_greets_whoever_is_named() {{
        let host = TestHost::new();
        let plugin = host.load::<{ty}>(json!({{}})).unwrap();
        let response = plugin.get("/{name}/hello?name=Ada");
        assert_eq!(response.status, 200);
        assert_eq!(response.json_body(), json!({{"message": "hello, Ada"}}));
        assert_eq!(plugin.get("/{name}/hello").json_body()["message"], "hello, world");
    }}
}}
"#
            )
        } else {
            format!(
                r#"#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn the_manifest_and_routes_are_valid() {{
        let descriptor = plugin_api::descriptor_of::<{ty}>().unwrap();
        assert_eq!(descriptor.routes.len(), 1);
    }}
}}
"#
            )
        };
        format!(
            r#"//! The `{name}` plugin: `GET /api/v1/{name}/hello` answers a greeting.

use plugin_api::prelude::*;

/// The plugin. It needs no configuration, so it has no `on_load`: the host builds it with
/// `Default`. (Write `async fn on_load(context: LoadContext) -> Result<Self, PluginError>`
/// to read `[plugins.{name}]` from the host's configuration.)
#[derive(Default)]
pub struct {ty};

impl Plugin for {ty} {{
    // Constants: the host reads them from the library file without running its code.
    const MANIFEST: PluginManifest =
        PluginManifest::new("{name}", "{title}", env!("CARGO_PKG_VERSION"));

    const ROUTES: &'static [Route<Self>] = &[
        Route::get("/{name}/hello", "Says hello (to ?name=, or the world)", hello)
            .public()
            .response::<Greeting>(),
    ];
}}

/// The answer of `GET /api/v1/{name}/hello`.
#[derive(Serialize, JsonSchema)]
pub struct Greeting {{
    message: String,
}}

async fn hello(_: &{ty}, request: Request<'_>) -> Json<Greeting> {{
    let name = request.query("name").unwrap_or("world".into());
    Json(Greeting {{
        message: format!("hello, {{name}}"),
    }})
}}

export_plugin!({ty});

{test}"#
        )
    }

    fn readme(&self) -> String {
        let name = &self.name;
        let lib = name.replace('-', "_");
        format!(
            "# {name}\n\nA PixSim7 plugin: `GET /api/v1/{name}/hello`.\n\n\
             ```sh\ncargo test                 # runs the plugin against the host's real services\n\
             cargo build --release\n\
             cp target/release/lib{lib}.so /path/to/host/plugin-dir/\n\
             # restart the host; `pixsim7 plugins` shows what it would load\n```\n\n\
             The library must be built against a `plugin-api` whose plugin ABI has the host's\n\
             major version (see the host's docs/abi.md); `serde` 1 and `schemars` 1 are direct\n\
             dependencies because their derive macros name them by path.\n"
        )
    }
}

/// A plugin name must be a valid plugin id (the manifest's rule) and crate name: lower-case
/// ASCII letters, digits and single `-`, starting with a letter, at most 64 characters.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 64;
    if !valid {
        bail!(
            "invalid plugin name {name:?}: use lower-case letters, digits and '-', starting \
             with a letter (e.g. `weather` or `npc-moods`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_options_are_checked() {
        let root = Path::new("/ws");
        let in_tree = Scaffold::from_args(&args(&["npc-moods"]), root).unwrap();
        assert_eq!(in_tree.directory(root), Path::new("/ws/plugins/npc-moods"));
        assert_eq!(in_tree.type_name(), "NpcMoodsPlugin");
        let out = Scaffold::from_args(&args(&["w", "--out-of-tree", "/tmp/w"]), root).unwrap();
        assert_eq!(
            out.out_of_tree,
            Some((PathBuf::from("/tmp/w"), Sdk::Path(root.to_owned())))
        );
        for bad in ["Weather", "9lives", "a_b", "x-", "a--b", "", "a b"] {
            assert!(Scaffold::from_args(&args(&[bad]), root).is_err(), "{bad}");
        }
        assert!(Scaffold::from_args(&args(&["w", "--sdk-version", "0.8"]), root).is_err());
    }

    #[test]
    fn the_in_tree_crate_uses_the_workspace_and_the_harness() {
        let scaffold = Scaffold::from_args(&args(&["weather"]), Path::new("/ws")).unwrap();
        let toml = scaffold.cargo_toml();
        assert!(toml.contains("plugin-api.workspace = true"), "{toml}");
        assert!(toml.contains("features = [\"testing\"]"), "{toml}");
        let lib = scaffold.lib_rs();
        assert!(lib.contains("const MANIFEST: PluginManifest"), "{lib}");
        assert!(lib.contains(r#"Route::get("/weather/hello""#), "{lib}");
        assert!(lib.contains("host.load::<WeatherPlugin>"), "{lib}");
        assert!(
            !lib.lines()
                .any(|line| line.trim_start().starts_with("async fn on_load")),
            "no on_load: the plugin is Default\n{lib}"
        );
    }

    #[test]
    fn a_versioned_sdk_has_no_path_dependencies() {
        let scaffold = Scaffold::from_args(
            &args(&["weather", "--out-of-tree", "/tmp/w", "--sdk-version", "0.8"]),
            Path::new("/ws"),
        )
        .unwrap();
        let toml = scaffold.cargo_toml();
        assert!(toml.contains("plugin-api = \"0.8\""), "{toml}");
        assert!(!toml.contains("path ="), "{toml}");
        assert!(scaffold.lib_rs().contains("descriptor_of::<WeatherPlugin>"));
    }

    #[test]
    fn a_workspace_package_name_is_refused_in_tree() {
        let scaffold = Scaffold::from_args(&args(&["host"]), Path::new("/nonexistent")).unwrap();
        let error = scaffold
            .write(Path::new("/nonexistent"), &["host".to_owned()])
            .unwrap_err();
        assert!(
            error.to_string().contains("already has a package named"),
            "{error}"
        );
    }
}
