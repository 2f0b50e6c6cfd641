//! Dependency ordering: a topological order of the plugins that can load, ties broken by
//! id so the same input always gives the same order, and the cycles that stop the rest.
//!
//! Pure data in, data out; the registry decides what a missing or failed dependency means.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The outcome of ordering a dependency graph.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Every plugin not stuck behind a cycle, dependencies first.
    pub order: Vec<String>,
    /// Plugins on a cycle, with the cycle written `a -> b -> a` (starting at its least id).
    pub cycles: BTreeMap<String, String>,
    /// Plugins not on a cycle but depending on one that is stuck, with that dependency.
    pub blocked: BTreeMap<String, String>,
}

/// Orders `graph` (plugin id → ids it depends on). Edges to ids outside the graph are
/// ignored here: the caller reports those dependencies as missing.
pub fn resolve_load_order(graph: &BTreeMap<String, Vec<String>>) -> Resolution {
    let edges = |id: &str| -> Vec<&str> {
        let mut deps: Vec<&str> = graph[id]
            .iter()
            .map(String::as_str)
            .filter(|dep| graph.contains_key(*dep))
            .collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    };
    let mut waiting_on: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in graph.keys() {
        let deps = edges(id);
        waiting_on.insert(id, deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(id);
        }
    }
    let mut ready: BTreeSet<&str> = waiting_on
        .iter()
        .filter(|(_, &count)| count == 0)
        .map(|(&id, _)| id)
        .collect();
    let mut resolution = Resolution::default();
    while let Some(id) = ready.pop_first() {
        resolution.order.push(id.to_owned());
        for &dependent in dependents.get(id).map(Vec::as_slice).unwrap_or_default() {
            let count = waiting_on
                .get_mut(dependent)
                .expect("dependent is in the graph");
            *count -= 1;
            if *count == 0 {
                ready.insert(dependent);
            }
        }
    }
    let placed: BTreeSet<&str> = resolution.order.iter().map(String::as_str).collect();
    let stuck: BTreeSet<&str> = graph
        .keys()
        .map(String::as_str)
        .filter(|id| !placed.contains(id))
        .collect();
    let stuck_edges = |id: &str| -> Vec<&str> {
        edges(id)
            .into_iter()
            .filter(|dep| stuck.contains(dep))
            .collect()
    };
    for &id in &stuck {
        match shortest_cycle_through(id, &stuck_edges) {
            Some(cycle) => {
                resolution
                    .cycles
                    .insert(id.to_owned(), describe_cycle(&cycle));
            }
            None => {
                let dep = stuck_edges(id)
                    .into_iter()
                    .next()
                    .expect("a stuck plugin waits on another stuck plugin");
                resolution.blocked.insert(id.to_owned(), dep.to_owned());
            }
        }
    }
    resolution
}

/// Breadth-first search from `start` back to itself; the path, `start` first, or `None`.
fn shortest_cycle_through<'a>(
    start: &'a str,
    edges: &dyn Fn(&'a str) -> Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in edges(node) {
            if next == start {
                let mut path = vec![node];
                while let Some(&previous) = came_from.get(path.last().expect("non-empty")) {
                    path.push(previous);
                }
                path.reverse();
                return Some(path);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// `Circular dependency detected: a -> b -> a`, rotated to start at the least id so every
/// plugin on the cycle reports the same text.
fn describe_cycle(cycle: &[&str]) -> String {
    let start = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, id)| **id)
        .map_or(0, |(index, _)| index);
    let mut names: Vec<&str> = cycle[start..]
        .iter()
        .chain(&cycle[..start])
        .copied()
        .collect();
    names.push(names[0]);
    format!("Circular dependency detected: {}", names.join(" -> "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(id, deps)| (id.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[track_caller]
    fn check(
        edges: &[(&str, &[&str])],
        order: &[&str],
        cycles: &[(&str, &str)],
        blocked: &[(&str, &str)],
    ) {
        let resolution = resolve_load_order(&graph(edges));
        assert_eq!(resolution.order, order);
        let cycles: BTreeMap<String, String> = cycles
            .iter()
            .map(|(id, text)| {
                (
                    id.to_string(),
                    format!("Circular dependency detected: {text}"),
                )
            })
            .collect();
        assert_eq!(resolution.cycles, cycles);
        let blocked: BTreeMap<String, String> = blocked
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(resolution.blocked, blocked);
    }

    #[test]
    fn dependencies_first_ties_by_id() {
        check(
            &[("c", &[]), ("a", &["c"]), ("b", &[])],
            &["b", "c", "a"],
            &[],
            &[],
        );
        check(
            &[
                ("stealth", &["sessions", "npcs"]),
                ("npcs", &[]),
                ("sessions", &["worlds"]),
                ("worlds", &[]),
            ],
            &["npcs", "worlds", "sessions", "stealth"],
            &[],
            &[],
        );
    }

    #[test]
    fn edges_to_unknown_plugins_are_left_to_the_caller() {
        check(&[("a", &["missing"]), ("b", &["a"])], &["a", "b"], &[], &[]);
    }

    #[test]
    fn cycles_name_their_path_and_stop_only_their_members_and_dependents() {
        check(
            &[("b", &["a"]), ("a", &["b"]), ("c", &["a"]), ("d", &[])],
            &["d"],
            &[("a", "a -> b -> a"), ("b", "a -> b -> a")],
            &[("c", "a")],
        );
        check(
            &[
                ("x", &["z"]),
                ("y", &["x"]),
                ("z", &["y"]),
                ("w", &["w2"]),
                ("w2", &[]),
            ],
            &["w2", "w"],
            &[
                ("x", "x -> z -> y -> x"),
                ("y", "x -> z -> y -> x"),
                ("z", "x -> z -> y -> x"),
            ],
            &[],
        );
    }

    #[test]
    fn order_does_not_depend_on_input_order() {
        let forward = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let mut reversed = BTreeMap::new();
        for (k, v) in forward.iter().rev() {
            reversed.insert(k.clone(), v.iter().rev().cloned().collect());
        }
        assert_eq!(resolve_load_order(&forward), resolve_load_order(&reversed));
        assert_eq!(resolve_load_order(&forward).order, ["a", "b", "c", "d"]);
    }
}
