//! Cycle search over a directed graph given by a successor function: local services that
//! forward to each other in one node's config, and services forwarded between the nodes of a
//! network in the operator's planning.

use std::collections::HashSet;
use std::hash::Hash;

/// A cycle reachable from one of `starts`, as the vertices along it with the first repeated at
/// the end (`[a, b, a]`), or `None` when the graph has no cycle reachable from them.
pub fn find_cycle<V, I>(
    starts: impl IntoIterator<Item = V>,
    next: impl Fn(&V) -> I,
) -> Option<Vec<V>>
where
    V: Clone + Eq + Hash,
    I: IntoIterator<Item = V>,
{
    let mut done = HashSet::new();
    starts
        .into_iter()
        .find_map(|start| visit(start, &next, &mut Vec::new(), &mut done))
}

fn visit<V, I>(
    at: V,
    next: &impl Fn(&V) -> I,
    stack: &mut Vec<V>,
    done: &mut HashSet<V>,
) -> Option<Vec<V>>
where
    V: Clone + Eq + Hash,
    I: IntoIterator<Item = V>,
{
    if let Some(start) = stack.iter().position(|v| *v == at) {
        let mut cycle = stack[start..].to_vec();
        cycle.push(at);
        return Some(cycle);
    }
    if !done.insert(at.clone()) {
        return None;
    }
    stack.push(at.clone());
    for successor in next(&at) {
        if let Some(cycle) = visit(successor, next, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &'static [(u8, u8)]) -> impl Fn(&u8) -> Vec<u8> {
        move |v| {
            pairs
                .iter()
                .filter(|(a, _)| a == v)
                .map(|&(_, b)| b)
                .collect()
        }
    }

    #[test]
    fn finds_the_cycle_with_its_start_repeated() {
        let next = edges(&[(1, 2), (2, 3), (3, 2)]);
        assert_eq!(find_cycle([1], next), Some(vec![2, 3, 2]));
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let next = edges(&[(1, 2), (1, 3), (2, 4), (3, 4)]);
        assert_eq!(find_cycle([1, 2, 3, 4], next), None);
    }

    #[test]
    fn a_self_loop_is_a_cycle() {
        assert_eq!(find_cycle([7], edges(&[(7, 7)])), Some(vec![7, 7]));
    }
}
