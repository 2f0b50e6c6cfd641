//! Lifecycle: hooks run in dependency order, `on_disable` in reverse at shutdown, after
//! in-flight requests have finished, and the process exits 0.

use crate::harness::{pixsim7, PluginDir};

#[test]
fn hooks_run_in_dependency_order_and_in_reverse_at_shutdown() {
    // The dependent's file sorts first, so file order is the opposite of dependency order.
    let dir = PluginDir::empty();
    dir.add_as("fixture_hooks_dependent", "liba_dependent.so");
    dir.add_as("fixture_hooks_base", "libz_base.so");
    let host = pixsim7(&dir).start();
    let exited = host.stop();
    assert!(exited.status.success(), "{:?}", exited.status);
    let hooks: Vec<&str> = exited
        .logs
        .iter()
        .filter_map(|l| l.message().strip_prefix("hook "))
        .map(|m| m.split(" config=").next().unwrap())
        .collect();
    assert_eq!(
        hooks,
        [
            "on_load fixture-hooks-base",
            "on_load fixture-hooks-dependent",
            "on_enable fixture-hooks-base",
            "on_enable fixture-hooks-dependent",
            "on_disable fixture-hooks-dependent",
            "on_disable fixture-hooks-base",
        ]
    );
    assert!(
        exited.position("Serving on") > exited.position("hook on_enable fixture-hooks-dependent")
    );
    assert!(
        exited.position("Shutdown complete")
            > exited.position("hook on_disable fixture-hooks-base")
    );
}

#[test]
fn shutdown_lets_in_flight_requests_finish_before_on_disable() {
    let dir = PluginDir::with(&["fixture_hooks_base"]);
    let host = pixsim7(&dir).start();
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| host.get("/api/v1/fixture-hooks-base/slow?ms=500"));
        host.wait_for_log("slow request started");
        host.terminate();
        let reply = slow.join().unwrap();
        assert_eq!(
            reply.status, 200,
            "the in-flight request completed: {}",
            reply.body
        );
    });
    let exited = host.wait();
    assert!(exited.status.success());
    assert!(
        exited.position("SIGTERM received") < exited.position("hook on_disable fixture-hooks-base")
    );
}
