//! [`KvConfig`]: the NameServer's KV config (RocketMQ's `KVConfigManager`), namespace → key →
//! value. Held in memory only: RocketMQ writes it to `kvConfigPath`, RaftMQ's NameServers keep
//! no state that outlives them, and tools put what they need again.

use std::collections::BTreeMap;

/// The most entries held over all namespaces; a put of a new key beyond it is refused.
pub const KV_ENTRIES_MAX: usize = 65_536;

/// A put that would exceed [`KV_ENTRIES_MAX`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the KV config holds {count} entries, the limit: {namespace}/{key} refused")]
pub struct KvFull {
    /// The namespace of the refused key.
    pub namespace: String,
    /// The refused key.
    pub key: String,
    /// Entries held.
    pub count: usize,
}

/// Namespaces of key → value.
#[derive(Debug, Default)]
pub struct KvConfig {
    /// Invariant: no namespace is empty (a delete of its last key removes it), and
    /// `entry_count` is the sum of the namespaces' lengths.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    entry_count: usize,
}

impl KvConfig {
    /// An empty config.
    pub fn new() -> KvConfig {
        KvConfig::default()
    }

    /// Sets `namespace`/`key` to `value`.
    ///
    /// # Errors
    /// [`KvFull`] for a new key beyond [`KV_ENTRIES_MAX`].
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) -> Result<(), KvFull> {
        let exists = self.get(namespace, key).is_some();
        if !exists && self.entry_count >= KV_ENTRIES_MAX {
            return Err(KvFull {
                namespace: namespace.to_string(),
                key: key.to_string(),
                count: self.entry_count,
            });
        }
        let old = self
            .namespaces
            .entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        if old.is_none() {
            self.entry_count += 1;
        }
        tracing::info!(namespace, key, value, "kv config put");
        Ok(())
    }

    /// The value of `namespace`/`key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.namespaces.get(namespace)?.get(key).map(String::as_str)
    }

    /// Removes `namespace`/`key`; returns whether it was there.
    pub fn delete(&mut self, namespace: &str, key: &str) -> bool {
        let Some(entries) = self.namespaces.get_mut(namespace) else {
            return false;
        };
        let removed = entries.remove(key).is_some();
        if entries.is_empty() {
            self.namespaces.remove(namespace);
        }
        if removed {
            self.entry_count -= 1;
            tracing::info!(namespace, key, "kv config deleted");
        }
        removed
    }

    /// Every key of `namespace`, `None` when it has none.
    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_and_list() {
        let mut kv = KvConfig::new();
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "T"), None);
        kv.put("ORDER_TOPIC_CONFIG", "T", "broker-a:4")
            .expect("puts");
        kv.put("ORDER_TOPIC_CONFIG", "T", "broker-a:8")
            .expect("overwrites");
        kv.put("ORDER_TOPIC_CONFIG", "U", "broker-b:2")
            .expect("puts");
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "T"), Some("broker-a:8"));
        assert_eq!(
            kv.namespace("ORDER_TOPIC_CONFIG").map(BTreeMap::len),
            Some(2)
        );
        assert!(kv.delete("ORDER_TOPIC_CONFIG", "T"));
        assert!(!kv.delete("ORDER_TOPIC_CONFIG", "T"));
        assert!(kv.delete("ORDER_TOPIC_CONFIG", "U"));
        assert_eq!(
            kv.namespace("ORDER_TOPIC_CONFIG"),
            None,
            "an emptied namespace is gone"
        );
        assert_eq!(kv.entry_count, 0);
    }

    #[test]
    fn new_keys_beyond_the_limit_are_refused_but_overwrites_are_not() {
        let mut kv = KvConfig::new();
        for i in 0..KV_ENTRIES_MAX {
            kv.put("n", &i.to_string(), "v").expect("puts");
        }
        let err = kv.put("n", "one-more", "v").expect_err("full");
        assert_eq!(err.count, KV_ENTRIES_MAX);
        kv.put("n", "0", "w").expect("an overwrite fits");
        assert!(kv.delete("n", "1"));
        kv.put("n", "one-more", "v").expect("room again");
    }
}
