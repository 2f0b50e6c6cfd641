//! Events in the database (issue 9): events are written in the emitting request's
//! transaction and delivered from the outbox, so a crash loses no consequence and applies
//! none twice; several instances on one PostgreSQL database deliver each event once per
//! cluster, and to every instance for a per-instance subscriber.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::{
    databases::{test_databases, TestDatabase},
    harness::{game_plugins_and, pixsim7, HostCommand, PluginDir, RunningHost},
};

const DELIVERED_TO_RELATIONSHIPS: &str =
    "delivered stealth:pickpocket to plugin game-relationships";

fn host_on(dir: &PluginDir, database: &TestDatabase) -> HostCommand {
    pixsim7(dir)
        .env("PIXSIM7_DATABASE_URL", &database.url)
        .env("PIXSIM7_LOG", "info,pixsim7::events=debug")
}

fn detected_pickpocket(host: &RunningHost, session_id: i64, npc_id: i64) -> u16 {
    host.post_json(
        "/api/v1/game/stealth/pickpocket",
        &json!({"npc_id": npc_id, "slot_id": "purse", "base_success_chance": 0.0,
                "detection_chance": 1.0, "session_id": session_id}),
    )
    .status
}

/// `stealth:pickpocket` events game-relationships has not handled yet.
fn pending_for_relationships(database: &TestDatabase) -> i64 {
    database.scalar(
        "SELECT COUNT(*) FROM pixsim7_events e, pixsim7_event_cursors c \
         WHERE c.subscriber = 'game-relationships' AND e.topic = 'stealth:pickpocket' \
         AND (e.tx_id > c.tx_id OR (e.tx_id = c.tx_id AND e.id > c.event_id))",
    )
}

/// Checks one session: every recorded detected attempt lowered its NPC's affinity once (50
/// to 40: each attempt names another NPC), and no affinity changed without an attempt.
#[track_caller]
fn assert_each_attempt_applied_once(session: &Value, context: &str) {
    let attempts: BTreeSet<i64> = session["flags"]["stealth"]["pickpocket_attempts"]
        .as_array()
        .expect("attempts recorded")
        .iter()
        .filter(|a| a["detected"] == json!(true))
        .map(|a| a["npc_id"].as_i64().unwrap())
        .collect();
    assert!(!attempts.is_empty(), "{context}: no attempt was recorded");
    let relationships = session["relationships"].as_object().unwrap();
    let mut changed = BTreeSet::new();
    for (key, entry) in relationships {
        let npc_id: i64 = key.trim_start_matches("npc:").parse().unwrap();
        if let Some(affinity) = entry.get("affinity") {
            assert_eq!(
                *affinity,
                json!(40),
                "{context}: npc {npc_id}'s consequence was applied more than once"
            );
            changed.insert(npc_id);
        }
    }
    let lost: Vec<_> = attempts.difference(&changed).collect();
    let unexplained: Vec<_> = changed.difference(&attempts).collect();
    assert!(
        lost.is_empty() && unexplained.is_empty(),
        "{context}: consequences lost for {lost:?}, applied without an attempt for {unexplained:?}"
    );
}

#[test]
fn a_crash_right_after_a_burst_of_pickpockets_loses_no_consequence() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = PluginDir::with(&game_plugins_and(&["game_relationships"]));
        let host = host_on(&dir, &database).start();
        let sessions: Vec<i64> = (0..3)
            .map(|_| {
                host.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        // Three clients at once, 50 attempts each on a session of their own, every attempt
        // on another NPC; then the host is killed without a moment's notice.
        std::thread::scope(|scope| {
            for (client, &session_id) in sessions.iter().enumerate() {
                let host = &host;
                scope.spawn(move || {
                    for n in 0..50 {
                        let npc_id = 1000 * (client as i64 + 1) + n;
                        let status = detected_pickpocket(host, session_id, npc_id);
                        assert!(status == 200 || status == 409, "{status}");
                    }
                });
            }
        });
        let killed = host.kill();
        assert!(!killed.status.success());

        let pending = pending_for_relationships(&database);
        let host = host_on(&dir, &database).start();
        if pending > 0 {
            // The restarted host delivers what the killed one had not (and only that).
            host.wait_for_logs(DELIVERED_TO_RELATIONSHIPS, pending as usize);
        }
        for &session_id in &sessions {
            let session = host.ok(
                "GET",
                &format!("/api/v1/game/sessions/{session_id}"),
                json!(null),
            );
            assert_each_attempt_applied_once(
                &session,
                &format!(
                    "session {session_id} on {kind} ({pending} events were pending at the crash)"
                ),
            );
        }
        let exited = host.stop();
        assert!(exited.status.success());
        assert_eq!(
            exited
                .logs
                .iter()
                .filter(|l| l.message().contains(DELIVERED_TO_RELATIONSHIPS))
                .count() as i64,
            pending,
            "after the restart exactly the pending events were delivered, on {kind}"
        );
    }
}

#[test]
fn two_instances_on_one_postgresql_deliver_each_event_once_and_per_instance_to_both() {
    let Some(database) = test_databases().into_iter().find(|d| d.kind == "postgres") else {
        // Several instances need PostgreSQL; without PIXSIM7_TEST_DATABASE_URL there is none.
        return;
    };
    let libs = game_plugins_and(&[
        "game_relationships",
        "fixture_events",
        "fixture_events_listener",
    ]);
    let (dir_a, dir_b) = (PluginDir::with(&libs), PluginDir::with(&libs));
    let a = host_on(&dir_a, &database).start();
    let b = host_on(&dir_b, &database).start();

    let sessions: Vec<i64> = (0..2)
        .map(|_| {
            a.ok("POST", "/api/v1/game/sessions", json!({}))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    for n in 0..20 {
        let host = if n % 2 == 0 { &a } else { &b };
        assert_eq!(
            detected_pickpocket(host, sessions[n as usize % 2], 100 + n),
            200
        );
    }
    let reply = a.post_json(
        "/api/v1/fixture-events/emit",
        &json!({"topic": "test:hello", "count": 1}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The per-instance subscriber hears it on both instances.
    a.wait_for_log("fixture-events-listener got test:hello");
    b.wait_for_log("fixture-events-listener got test:hello");

    // Each stops gracefully, which waits until its subscribers have caught up (whichever
    // instance delivered).
    let (exited_b, exited_a) = (b.stop(), a.stop());
    assert!(exited_a.status.success() && exited_b.status.success());
    let count = |text: &str| {
        exited_a
            .logs
            .iter()
            .chain(&exited_b.logs)
            .filter(|l| l.message().contains(text))
            .count()
    };
    assert_eq!(count(DELIVERED_TO_RELATIONSHIPS), 20, "once per cluster");
    assert_eq!(count("lowered affinity of npc:"), 20, "no attempt twice");
    assert_eq!(
        count("fixture-events got test:hello"),
        1,
        "once per cluster"
    );
    assert_eq!(
        count("fixture-events-listener got test:hello"),
        2,
        "once per instance"
    );

    let c = host_on(&dir_a, &database).start();
    for &session_id in &sessions {
        let session = c.ok(
            "GET",
            &format!("/api/v1/game/sessions/{session_id}"),
            json!(null),
        );
        assert_each_attempt_applied_once(&session, &format!("session {session_id}"));
    }
    assert!(c.stop().status.success());
}

#[test]
fn delivered_events_are_pruned_after_the_retention() {
    for database in test_databases() {
        let kind = database.kind;
        let dir = PluginDir::with(&["fixture_events", "fixture_events_listener"]);
        let host = host_on(&dir, &database).start();
        let reply = host.post_json(
            "/api/v1/fixture-events/emit",
            &json!({"topic": "test:old", "count": 5}),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        // A graceful stop waits until every subscriber has handled them.
        assert!(host.stop().status.success());
        let count =
            || database.scalar("SELECT COUNT(*) FROM pixsim7_events WHERE topic = 'test:old'");
        assert_eq!(
            count(),
            5,
            "kept within the retention (a day by default) on {kind}"
        );

        let config = dir.config_file("[events]\nretention_secs = 0\n");
        let host = host_on(&dir, &database)
            .env("PIXSIM7_CONFIG", &config)
            .start();
        host.wait_for_log("pruned");
        assert_eq!(
            count(),
            0,
            "pruned once handled and past the retention on {kind}"
        );
        assert!(host.stop().status.success());
    }
}
