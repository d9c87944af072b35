//! Answers waiting for their labels, by request id: bounded, the oldest dropped first, so a
//! client that never posts labels cannot grow the node's memory.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
pub(crate) struct Pending<T> {
    capacity: usize,
    waiting: HashMap<String, T>,
    /// Ids in arrival order; an id whose entry was taken or replaced may linger here until
    /// it reaches the front.
    order: VecDeque<String>,
}

impl<T> Pending<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Pending {
            capacity: capacity.max(1),
            waiting: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `value` under `id` (replacing an earlier one), dropping the oldest beyond the
    /// capacity.
    pub(crate) fn insert(&mut self, id: &str, value: T) {
        if self.waiting.insert(id.to_owned(), value).is_none() {
            self.order.push_back(id.to_owned());
        }
        while self.waiting.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.waiting.remove(&oldest);
        }
        // Taken ids linger in `order`; keep it within twice the capacity.
        if self.order.len() > 2 * self.capacity {
            self.order.retain(|id| self.waiting.contains_key(id));
        }
    }

    /// The value waiting under `id`, which stops waiting.
    pub(crate) fn take(&mut self, id: &str) -> Option<T> {
        self.waiting.remove(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_dropped_beyond_the_capacity() {
        let mut pending = Pending::new(2);
        pending.insert("a", 1);
        pending.insert("b", 2);
        pending.insert("c", 3);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.take("a"), None);
        assert_eq!(pending.take("c"), Some(3));
        assert_eq!(pending.take("c"), None, "taken once");
    }

    #[test]
    fn a_repeated_id_replaces_its_value_and_memory_stays_bounded() {
        let mut pending = Pending::new(3);
        for i in 0..100 {
            pending.insert("same", i);
            pending.insert(&format!("other-{i}"), i);
            pending.take(&format!("other-{i}"));
        }
        assert_eq!(pending.take("same"), Some(99));
        assert!(pending.order.len() <= 6, "{}", pending.order.len());
    }
}
