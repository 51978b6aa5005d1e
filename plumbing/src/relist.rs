//! The bookkeeping of a relist, shared by every index fed by a watch: after a watch restart
//! the full list that follows is the truth, so what an index knew and the list did not show
//! again was deleted while the watch was down; an object listed but unreadable stays as it
//! was known.

use std::collections::HashSet;

use crate::ObjectKey;

/// The keys a relist under way has shown so far.
#[derive(Debug, Default)]
pub struct Relist(Option<HashSet<ObjectKey>>);

impl Relist {
    /// A relist starts: every object must be listed again to stay.
    pub fn start(&mut self) {
        self.0 = Some(HashSet::new());
    }

    /// Whether a relist is under way.
    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// The relist showed `key` (readable or not): it stays.
    pub fn seen(&mut self, key: &ObjectKey) {
        if let Some(seen) = &mut self.0 {
            seen.insert(key.clone());
        }
    }

    /// The relist is over: the keys of `known` it did not show, which are gone. Nothing when
    /// no relist was under way.
    pub fn finish(&mut self, known: impl IntoIterator<Item = ObjectKey>) -> Vec<ObjectKey> {
        match self.0.take() {
            Some(seen) => known
                .into_iter()
                .filter(|key| !seen.contains(key))
                .collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn what_the_relist_did_not_show_is_gone() {
        let mut relist = Relist::default();
        relist.start();
        assert!(relist.is_running());
        relist.seen(&key("listed"));
        relist.seen(&key("unreadable"));
        let gone = relist.finish([key("listed"), key("deleted"), key("unreadable")]);
        assert_eq!(gone, [key("deleted")]);
        assert!(!relist.is_running());
    }

    #[test]
    fn outside_a_relist_nothing_is_gone() {
        let mut relist = Relist::default();
        relist.seen(&key("a"));
        assert_eq!(relist.finish([key("a"), key("b")]), []);
    }
}
