//! Simulated disks: append-only logs whose unsynced tail a crash throws away.
//!
//! An instance keeps state that must outlive it in a [`Disk`], opened through its
//! [`Env`](crate::system::Env). A record is durable only once synced: a service acknowledges a
//! write after the sync that covers it, so a crash (which truncates the log to its last sync)
//! never loses an acknowledged write. Disks outlive the instances that use them: the run holds
//! them in a [`Disks`] table, crashes the disks of a node it crashes, and a restarted instance
//! replays what survived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::lock::lock;

/// One append-only log.
#[derive(Debug, Default)]
pub struct Disk {
    state: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    records: Vec<Bytes>,
    synced: usize,
}

impl Disk {
    /// Appends a record (not yet durable).
    pub fn append(&self, record: Bytes) {
        lock(&self.state).records.push(record);
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) {
        let mut log = lock(&self.state);
        log.synced = log.records.len();
    }

    /// What a crash leaves: the log cut back to its last sync.
    pub fn crash(&self) {
        let mut log = lock(&self.state);
        let synced = log.synced;
        log.records.truncate(synced);
    }

    /// The durable records, oldest first (what a restarting instance replays).
    pub fn durable(&self) -> Vec<Bytes> {
        let log = lock(&self.state);
        log.records[..log.synced].to_vec()
    }

    /// Records appended, durable or not.
    pub fn len(&self) -> usize {
        lock(&self.state).records.len()
    }

    /// Whether nothing was ever appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every disk of a run, by name (`<instance>/<purpose>`, e.g. `store.balance[0]/data`).
#[derive(Debug, Default)]
pub struct Disks {
    disks: Mutex<BTreeMap<String, Arc<Disk>>>,
}

impl Disks {
    /// An empty table.
    pub fn new() -> Arc<Disks> {
        Arc::new(Disks::default())
    }

    /// The disk named `name`, created empty the first time.
    pub fn open(&self, name: &str) -> Arc<Disk> {
        lock(&self.disks)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Crashes every disk of `instance`: each loses what it had not synced.
    pub fn crash(&self, instance: &str) {
        let prefix = format!("{instance}/");
        for (name, disk) in lock(&self.disks).iter() {
            if name.starts_with(&prefix) {
                disk.crash();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_exactly_what_was_synced() {
        let disks = Disks::new();
        let d = disks.open("store[0]/data");
        d.append(Bytes::from_static(b"a"));
        d.sync();
        d.append(Bytes::from_static(b"b"));
        disks.open("other[0]/data").append(Bytes::from_static(b"x"));
        disks.crash("store[0]");
        assert_eq!(d.durable(), vec![Bytes::from_static(b"a")]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            disks.open("other[0]/data").len(),
            1,
            "other disks untouched"
        );
    }
}
