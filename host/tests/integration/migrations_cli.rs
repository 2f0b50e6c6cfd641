//! `pixsim7 migrate`: the host's and the plugins' migrations, each applied once, safe when
//! several instances run it at the same time.

use crate::{
    databases::test_databases,
    harness::{pixsim7, PluginDir},
};

#[test]
fn migrate_applies_host_and_plugin_migrations_once_even_concurrently() {
    for database in test_databases() {
        let dir = PluginDir::with(&["game_npcs", "game_sessions", "game_dialogue"]);
        let run = || {
            pixsim7(&dir)
                .env("PIXSIM7_DATABASE_URL", &database.url)
                .run_to_exit(&["migrate"])
        };
        let (first, second) = std::thread::scope(|scope| {
            let a = scope.spawn(run);
            let b = scope.spawn(run);
            (a.join().unwrap(), b.join().unwrap())
        });
        for exited in [&first, &second] {
            assert!(
                exited.status.success(),
                "{}: {:?}",
                database.kind,
                exited.logs
            );
        }
        // Which of the two runs applies which migration is a race; each must be applied once.
        let mut applied: Vec<&str> = first
            .logs
            .iter()
            .chain(&second.logs)
            .map(|l| l.message())
            .filter(|m| m.starts_with("Applied migration"))
            .collect();
        applied.sort_unstable();
        assert_eq!(
            applied,
            [
                "Applied migration game-dialogue 1: dialogue lines",
                "Applied migration game-dialogue 2: dialogue lines reference their session",
                "Applied migration host 1: game state",
                "Applied migration host 2: event outbox",
                "Applied migration host 3: event user",
            ],
            "each migration applied exactly once across both runs on {}",
            database.kind
        );
        let third = run();
        assert!(third.status.success());
        assert!(third
            .logs
            .iter()
            .all(|l| !l.message().starts_with("Applied migration")));
    }
}
