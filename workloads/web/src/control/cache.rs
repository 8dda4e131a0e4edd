//! A small time-bounded cache for the gateway's per-request lookups.
//!
//! ```text
//!  get(key) ─► entry younger than ttl? ─► value      (else None: caller looks it up)
//!  put(key, value) ─► stored with its insert time    (ttl 0: nothing is stored)
//!  more than `capacity` entries ─► expired ones dropped, then all if still full
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value stored for `key` less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: &str, value: V) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Forget `key`.
    pub fn remove(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_millis(1), 10);
        cache.put("a", 1);
        // The entry's age is measured with Instant; backdate it instead of sleeping.
        {
            let mut entries = cache.entries.lock().unwrap_or_else(|p| p.into_inner());
            let entry = entries.get_mut("a").map(|e| &mut e.0);
            if let Some(at) = entry {
                *at = Instant::now() - Duration::from_millis(5);
            }
        }
        assert_eq!(cache.get("a"), None);
        cache.put("a", 2);
        cache.remove("a");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn a_zero_ttl_stores_nothing_and_capacity_is_bounded() {
        let off = TtlCache::new(Duration::ZERO, 10);
        off.put("a", 1);
        assert_eq!(off.get("a"), None);

        let cache = TtlCache::new(Duration::from_secs(60), 2);
        cache.put("a", 1);
        cache.put("b", 2);
        cache.put("b", 3);
        assert_eq!(cache.get("b"), Some(3));
        cache.put("c", 4);
        assert_eq!(cache.get("c"), Some(4));
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or_default();
        assert!(len <= 2, "{len} entries in a cache of 2");
    }
}
