//! A loader you can trust with files: damaged libraries are refused without a crash, the
//! host serves from private copies (so overwriting a file in `plugin-dir/` changes nothing),
//! no library code runs before a plugin will load, pins, and file permissions.

use std::{os::unix::fs::PermissionsExt, path::Path};

use serde_json::{json, Value};

use crate::harness::{built_library, pixsim7, PluginDir};

/// The plugins of a `pixsim7 plugins --json` report, by file name.
fn report(dir: &PluginDir, extra: &[&str]) -> (Option<i32>, Vec<Value>) {
    let mut args = vec!["plugins", "--json"];
    args.extend_from_slice(extra);
    let exited = pixsim7(dir).run_to_exit(&args);
    assert!(
        exited.status.code().is_some(),
        "pixsim7 plugins was killed by a signal: {:?}\n{}",
        exited.status,
        exited.stdout
    );
    let report: Value = serde_json::from_str(&exited.stdout).unwrap_or_else(|error| {
        panic!("not JSON ({error}): {}", exited.stdout);
    });
    (
        exited.status.code(),
        report["plugins"].as_array().unwrap().clone(),
    )
}

fn by_file<'a>(plugins: &'a [Value], file: &str) -> &'a Value {
    plugins
        .iter()
        .find(|p| p["file"] == file)
        .unwrap_or_else(|| panic!("no {file} in {plugins:#?}"))
}

fn reason(plugin: &Value) -> &str {
    plugin["reason"].as_str().unwrap_or_default()
}

#[test]
fn truncated_and_bit_flipped_libraries_are_refused_and_never_crash_plugins_or_serve() {
    let whole = std::fs::read(built_library("dice_game")).unwrap();
    let dir = PluginDir::with(&["dice_game"]);
    let cuts = [
        0,
        3,
        64,
        4096,
        65536,
        whole.len() / 2,
        whole.len() - 4096,
        whole.len() - 1,
    ];
    // Those, and a cut every MiB (every 4 KiB cut is checked in-process, library_image.rs).
    let cuts: std::collections::BTreeSet<usize> = cuts
        .into_iter()
        .chain((0..whole.len()).step_by(1 << 20))
        .collect();
    let mut damaged = Vec::new();
    for cut in cuts {
        let name = format!("libcut_{cut}.so");
        dir.write(&name, &whole[..cut]);
        damaged.push(name);
    }
    // Bit flips in the ELF header, the program headers and the section headers: the parts
    // the dynamic loader trusts.
    let section_headers = u64::from_le_bytes(whole[0x28..0x30].try_into().unwrap()) as usize;
    for (label, offset) in [
        ("class", 4),
        ("type", 0x10),
        ("phoff", 0x20),
        ("phdr_offset", 0x40 + 8),
        ("phdr_filesz", 0x40 + 32 + 2),
        ("shdr", section_headers + 64 + 24 + 3),
    ] {
        let mut flipped = whole.clone();
        flipped[offset] ^= 0x40;
        let name = format!("libflip_{label}.so");
        dir.write(&name, &flipped);
        damaged.push(name);
    }

    let (code, plugins) = report(&dir, &[]);
    assert_eq!(code, Some(1), "damaged libraries fail");
    assert_eq!(by_file(&plugins, "libdice_game.so")["state"], "would load");
    for name in &damaged {
        let plugin = by_file(&plugins, name);
        assert_eq!(plugin["state"], "failed", "{name}: {plugin:#}");
        let reason = reason(plugin);
        assert!(
            !reason.is_empty() && !reason.contains('\n'),
            "{name}: {reason:?}"
        );
    }
    assert!(
        reason(by_file(&plugins, "libcut_65536.so")).starts_with("not a loadable library: "),
        "{plugins:#?}"
    );

    // Serving with every damaged file present: dice-game serves, the host lives.
    let host = pixsim7(&dir).start();
    let reply = host.post_json("/api/v1/dice-game/roll", &json!({"dice": "1d6"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    for name in &damaged {
        assert!(
            host.plugin_by_file(name)["reason"].as_str().is_some(),
            "{name} has a reason"
        );
    }
    host.stop();
}

#[test]
fn overwriting_a_loaded_library_in_place_while_serving_changes_nothing() {
    let dir = PluginDir::with(&["dice_game"]);
    let host = pixsim7(&dir).start();
    let roll = || host.post_json("/api/v1/dice-game/roll", &json!({"dice": "2d6"}));
    assert_eq!(roll().status, 200);
    let sha256 = host.plugin("dice-game")["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sha256.len(), 64);

    // What `cp other.so plugin-dir/libdice_game.so` does: truncate the file and write new
    // content into the same inode.
    let target = dir.path().join("libdice_game.so");
    let other = std::fs::read(built_library("auth")).unwrap();
    std::fs::write(&target, &other).unwrap();
    assert_eq!(roll().status, 200, "the old code keeps answering");
    std::fs::write(&target, b"garbage").unwrap();
    assert_eq!(roll().status, 200);
    std::fs::remove_file(&target).unwrap();
    let reply = roll();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json()["total"].as_i64().is_some());

    // The private copy the host opened: under the data directory, named by the hash.
    let copies = dir.path().with_extension("data").join("plugin-cache");
    assert!(copies.join(format!("{sha256}.so")).is_file());
    let mode = std::fs::metadata(&copies).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let exited = host.stop();
    assert!(exited.status.success(), "{:?}", exited.status);
}

#[test]
fn a_library_with_a_constructor_runs_nothing_until_its_plugin_will_load() {
    let dir = PluginDir::with(&["dice_game", "fixture_constructor"]);
    let marker = dir.path().with_extension("constructor-ran");
    let _ = std::fs::remove_file(&marker);
    let with_marker =
        |dir: &PluginDir| pixsim7(dir).env("PIXSIM7_FIXTURE_CONSTRUCTOR_MARKER", &marker);

    // The dry run reads the manifest from the file.
    let exited = with_marker(&dir).run_to_exit(&["plugins"]);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    assert!(
        exited.stdout.contains("fixture-constructor 1.0.0"),
        "{}",
        exited.stdout
    );
    assert!(
        !marker.exists(),
        "pixsim7 plugins ran the library's constructor"
    );

    // Disabled in the configuration: listed, never opened.
    let config = dir.config_file("[plugins.fixture-constructor]\nenabled = false\n");
    let host = with_marker(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_eq!(host.plugin("fixture-constructor")["state"], "disabled");
    host.stop();
    assert!(!marker.exists(), "a disabled plugin's library was opened");

    // Not pinned: refused, never opened.
    let lock = dir.path().with_extension("lock");
    let exited = pixsim7(&PluginDir::with(&["dice_game"])).run_to_exit(&[
        "plugins",
        "lock",
        "--output",
        lock.to_str().unwrap(),
    ]);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    let host = with_marker(&dir).env("PIXSIM7_PLUGINS_LOCK", &lock).start();
    let refused = host.plugin("fixture-constructor");
    assert_eq!(refused["state"], "failed");
    assert!(
        reason(&refused).starts_with("not pinned in "),
        "{refused:#}"
    );
    host.stop();
    assert!(!marker.exists(), "an unpinned library was opened");

    // The control: when the plugin loads, its constructor runs (so the checks above can fail).
    let host = with_marker(&dir).start();
    let reply = host.get("/api/v1/fixture-constructor/ping");
    assert_eq!(reply.status, 200);
    host.stop();
    assert!(
        marker.exists(),
        "the constructor did not run when the plugin loaded"
    );
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn a_lock_file_pins_each_library_and_one_changed_byte_is_refused_naming_both_hashes() {
    let dir = PluginDir::with(&["dice_game", "auth"]);
    let lock = dir.path().with_extension("lock");
    let exited =
        pixsim7(&dir).run_to_exit(&["plugins", "lock", "--output", lock.to_str().unwrap()]);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    let written = std::fs::read_to_string(&lock).unwrap();
    let pins: toml::Value = toml::from_str(&written).unwrap();
    let pins = pins["plugin"].as_array().unwrap();
    assert_eq!(pins.len(), 2, "{written}");
    let dice = pins
        .iter()
        .find(|p| p["id"].as_str() == Some("dice-game"))
        .unwrap();
    assert_eq!(dice["file"].as_str(), Some("libdice_game.so"));
    assert_eq!(dice["version"].as_str(), Some("1.0.0"));
    let pinned = dice["sha256"].as_str().unwrap().to_owned();

    // Pinned and unchanged: both load, and the report shows the hash.
    let (code, plugins) = report(&dir, &["--lock", lock.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{plugins:#?}");
    assert_eq!(
        by_file(&plugins, "libdice_game.so")["sha256"],
        pinned.as_str()
    );

    // One changed byte, in the compiler's note (harmless to the library itself).
    let path = dir.path().join("libdice_game.so");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"rustc")
        .expect("the library names its compiler");
    bytes[at] = b'R';
    std::fs::write(&path, &bytes).unwrap();
    let changed = sha256_of(&path);

    let (code, plugins) = report(&dir, &["--lock", lock.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let refused = by_file(&plugins, "libdice_game.so");
    assert_eq!(refused["state"], "failed");
    let text = reason(refused);
    assert!(text.contains("SHA-256 mismatch"), "{text}");
    assert!(text.contains(&pinned) && text.contains(&changed), "{text}");
    assert_eq!(by_file(&plugins, "libauth.so")["state"], "would load");

    // The same verdict when serving; fatal under --strict.
    let config = dir.config_file(&format!(
        "[plugins]\nlock = {:?}\n",
        lock.display().to_string()
    ));
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).start();
    assert_eq!(host.plugin("dice-game")["state"], "failed");
    host.stop();
    let exited = pixsim7(&dir).env("PIXSIM7_CONFIG", &config).run_to_exit(&[
        "serve",
        "--strict",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert_eq!(exited.status.code(), Some(1));
    assert!(
        exited.logged("ERROR", "SHA-256 mismatch"),
        "{:?}",
        exited.status
    );
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn writable_directories_and_libraries_and_outside_symlinks_are_refused_unless_allowed() {
    let dir = PluginDir::with(&["dice_game", "auth"]);
    let allow = dir.config_file("[plugins]\nallow_insecure_permissions = true\n");

    // A library anyone may write.
    let auth = dir.path().join("libauth.so");
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, plugins) = report(&dir, &[]);
    assert_eq!(code, Some(1));
    let refused = by_file(&plugins, "libauth.so");
    assert_eq!(refused["state"], "failed");
    assert!(reason(refused).contains("writable by"), "{refused:#}");
    assert_eq!(by_file(&plugins, "libdice_game.so")["state"], "would load");
    let exited = pixsim7(&dir)
        .env("PIXSIM7_CONFIG", &allow)
        .run_to_exit(&["plugins", "--json"]);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    assert!(exited.logged("WARN", "allow_insecure_permissions"));
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A directory anyone may write: every library in it is refused, saying why.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, plugins) = report(&dir, &[]);
    assert_eq!(code, Some(1));
    for plugin in &plugins {
        assert_eq!(plugin["state"], "failed");
        assert!(reason(plugin).contains("writable by"), "{plugin:#}");
    }
    let host = pixsim7(&dir).env("PIXSIM7_CONFIG", &allow).start();
    assert_eq!(host.plugin("dice-game")["state"], "enabled");
    host.wait_for_log("allow_insecure_permissions");
    host.stop();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // A symlink to a library outside the plugin directory.
    let outside = dir.path().with_extension("outside.so");
    std::fs::copy(built_library("fixture_disabled"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("liboutside.so")).unwrap();
    let (_, plugins) = report(&dir, &[]);
    let refused = by_file(&plugins, "liboutside.so");
    assert_eq!(refused["state"], "failed");
    assert!(
        reason(refused).contains("outside the plugin directory"),
        "{refused:#}"
    );
    let _ = std::fs::remove_file(&outside);
}

#[test]
fn a_library_whose_section_disagrees_with_its_code_fails_when_opened() {
    let dir = PluginDir::with(&["auth"]);
    let mut bytes = std::fs::read(built_library("dice_game")).unwrap();
    // The manifest's name inside the section's JSON only (the code keeps "Dice Game").
    let marker = b"\"name\":\"Dice Game\"";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the section holds the manifest");
    bytes[at + marker.len() - 2] = b'f';
    dir.write("libdice_game.so", &bytes);

    // From the file alone it looks fine: the dry run would load it.
    let (code, plugins) = report(&dir, &[]);
    assert_eq!(code, Some(0), "{plugins:#?}");
    assert_eq!(by_file(&plugins, "libdice_game.so")["name"], "Dice Gamf");

    let host = pixsim7(&dir).start();
    let refused = host.plugin("dice-game");
    assert_eq!(refused["state"], "failed");
    assert_eq!(
        reason(&refused),
        "the library, once opened, describes itself differently from its descriptor section \
         (manifest name: the section says \"Dice Gamf\", the library \"Dice Game\"): the file \
         was altered after it was built; rebuild it"
    );
    assert_eq!(host.plugin("auth")["state"], "enabled");
    host.stop();
}
