//! Simulated disks: append-only logs whose unsynced tail a crash throws away.
//!
//! An instance keeps state that must outlive it in a [`Disk`], opened through its
//! [`Env`](crate::system::Env). A record is durable only once synced: a service acknowledges a
//! write after the sync that covers it, so a crash (which truncates the log to its last sync)
//! never loses an acknowledged write. Disks outlive the instances that use them: the run holds
//! them in a [`Disks`] table, crashes the disks of a node it crashes, and a restarted instance
//! replays what survived.
//!
//! How long a sync takes is part of the model: the simulation draws each sync's time from the
//! scenario's `[disk] sync` distribution (a fixed 1 ms when left out), and a `disk` fault slows or
//! stalls the syncs of the instances it hits. A write is acknowledged only after [`Disk::commit`]
//! returns, so a store that acknowledged earlier would lose acknowledged writes in a crash,
//! which is what the sync time is there to expose.
//!
//! Outside the simulation (`windtunnel serve --data DIR`) a disk can also be a real file
//! ([`Disks::in_dir`]): each sync writes the new records and fsyncs before it returns, and
//! opening the file again replays every record written whole. A record is framed as its length
//! (4 bytes), an FNV-1a hash of its bytes (8 bytes), then the bytes, so a record torn by a crash
//! in the middle of a write is recognised and cut off, never replayed half.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use crate::dist::Dist;
use crate::lock::lock;
use crate::scenario::DiskEffect;

/// How long a sync takes when nothing else is said.
pub const DEFAULT_SYNC: std::time::Duration = std::time::Duration::from_millis(1);
/// How often a stalled sync looks again whether its stall is over.
const STALL_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Bytes of a record's frame before its payload: length and hash.
const RECORD_HEADER: usize = 4 + 8;

/// One append-only log.
#[derive(Debug, Default)]
pub struct Disk {
    state: Mutex<Log>,
    /// The file it lives in, outside the simulation.
    file: Option<Mutex<FileLog>>,
    /// How long its syncs take, in the simulation; [`DEFAULT_SYNC`] without one.
    clock: Option<Mutex<SyncClock>>,
}

/// A simulated disk's sync times: its own seeded stream, drawn from the run's distribution,
/// changed by the disk faults that hit its instance.
#[derive(Debug)]
struct SyncClock {
    rng: ChaCha8Rng,
    timing: Arc<Timing>,
    /// The instance the disk belongs to (what disk faults target).
    instance: String,
}

/// The run's sync-time model and the disk faults active now.
#[derive(Debug)]
struct Timing {
    sync: Dist,
    seed: u64,
    /// By fault index: the instances it hits and what it does.
    faults: Mutex<BTreeMap<usize, (Vec<String>, DiskEffect)>>,
}

impl Timing {
    /// The product of the slow factors on `instance` now, and whether a stall holds it.
    fn effect_on(&self, instance: &str) -> (f64, bool) {
        let faults = lock(&self.faults);
        let hitting = faults
            .values()
            .filter(|(hit, _)| hit.iter().any(|i| i == instance));
        hitting.fold(
            (1.0, false),
            |(factor, stalled), (_, effect)| match effect {
                DiskEffect::Slow(f) => (factor * f.value(), stalled),
                DiskEffect::Stall => (factor, true),
            },
        )
    }
}

#[derive(Debug, Default)]
struct Log {
    records: Vec<Bytes>,
    synced: usize,
}

/// A disk's file, and how many of its records are written there.
#[derive(Debug)]
struct FileLog {
    file: std::fs::File,
    written: usize,
}

fn record_hash(bytes: &[u8]) -> u64 {
    let mut h = crate::framework::ids::Fnv1a::default();
    h.write(bytes);
    h.finish()
}

fn corrupt(path: &Path, at: usize, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{}: the record at byte {at} {why}; refusing to replay past it (this is damage, not a write torn by a crash)",
            path.display()
        ),
    )
}

/// Makes a directory entry durable (a file created or cut in it), where the platform can.
fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    match dir {
        #[cfg(unix)]
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

impl Disk {
    /// A disk in the file at `path`, created empty if there is none: replays every record, and
    /// cuts off a torn one at the very end (what a crash in the middle of a write leaves). A
    /// complete record whose hash does not match is damage, and an error.
    pub fn open_file(path: &Path) -> std::io::Result<Disk> {
        let existed = path.exists();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut at = 0usize;
        while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let mut hash = [0u8; 8];
            hash.copy_from_slice(&header[4..]);
            let start = at + RECORD_HEADER;
            let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
                break; // runs past the end: torn
            };
            if record_hash(payload) != u64::from_be_bytes(hash) {
                if start + len == bytes.len() {
                    break; // the last record, half overwritten as it was torn
                }
                return Err(corrupt(path, at, "does not match its hash"));
            }
            records.push(Bytes::copy_from_slice(payload));
            at = start + len;
        }
        if at < bytes.len() {
            tracing::warn!(path = %path.display(), kept = at, dropped = bytes.len() - at, "cutting a torn record off the end of a disk");
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        if !existed {
            sync_dir(path.parent())?;
        }
        file.seek(std::io::SeekFrom::End(0))?;
        let synced = records.len();
        Ok(Disk {
            state: Mutex::new(Log { records, synced }),
            file: Some(Mutex::new(FileLog {
                file,
                written: synced,
            })),
            clock: None,
        })
    }

    /// Appends a record (not yet durable).
    pub fn append(&self, record: Bytes) {
        lock(&self.state).records.push(record);
    }

    /// Waits as long as one sync of this disk takes (drawn from the run's distribution, times
    /// the slow disk faults on its instance, and for as long as a stall holds it), then makes
    /// every record appended so far durable. Acknowledge a write only after this returns.
    pub async fn commit(&self) {
        let wait = self.sync_time();
        crate::framework::timer::sleep(wait).await;
        while self.stalled() {
            crate::framework::timer::sleep(STALL_POLL).await;
        }
        self.sync();
    }

    /// The time the next sync takes.
    fn sync_time(&self) -> std::time::Duration {
        let Some(clock) = &self.clock else {
            return DEFAULT_SYNC;
        };
        let clock = &mut *lock(clock);
        let base = clock.timing.sync.sample(&mut clock.rng);
        let (factor, _) = clock.timing.effect_on(&clock.instance);
        if factor == 1.0 {
            base
        } else {
            crate::system::slowed(base, factor)
        }
    }

    /// Whether a `disk` fault stalls this disk's syncs now.
    fn stalled(&self) -> bool {
        self.clock.as_ref().is_some_and(|clock| {
            let clock = lock(clock);
            clock.timing.effect_on(&clock.instance).1
        })
    }

    /// Makes every record appended so far durable. A file-backed disk writes them and fsyncs
    /// (appends go on meanwhile; syncs take turns, so no record is written twice); if that
    /// fails the process stops at once (what databases do since fsync failures were
    /// understood: after one, nothing says what reached the disk, and an acknowledgement would
    /// be a lie). A restart replays what is there. The fsync blocks the thread that calls it.
    pub fn sync(&self) {
        let Some(file) = &self.file else {
            let mut log = lock(&self.state);
            log.synced = log.records.len();
            return;
        };
        let mut file = lock(file);
        let (out, upto) = {
            let log = lock(&self.state);
            let mut out = Vec::new();
            for record in &log.records[file.written.min(log.records.len())..] {
                let len = u32::try_from(record.len()).unwrap_or_else(|_| {
                    eprintln!(
                        "fatal: a record of {} bytes is too large for a disk",
                        record.len()
                    );
                    std::process::abort()
                });
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&record_hash(record).to_be_bytes());
                out.extend_from_slice(record);
            }
            (out, log.records.len())
        };
        let FileLog { file: f, written } = &mut *file;
        if let Err(e) = f.write_all(&out).and_then(|()| f.sync_data()) {
            eprintln!("fatal: a disk could not be synced ({e}); stopping so nothing unsynced is acknowledged");
            std::process::abort();
        }
        *written = upto;
        let mut log = lock(&self.state);
        log.synced = log.synced.max(upto);
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
    /// Where each disk's file is, when disks are files.
    dir: Option<PathBuf>,
    /// The directory's lock, held while this table lives: one process per directory.
    _lock: Option<std::fs::File>,
    /// The simulation's sync-time model; `None`: every sync takes [`DEFAULT_SYNC`].
    timing: Option<Arc<Timing>>,
}

/// Why a disk's file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the disk {name} at {path}: {source}")]
pub struct DiskError {
    /// The disk.
    pub name: String,
    /// Its file.
    pub path: String,
    /// The cause.
    pub source: std::io::Error,
}

impl Disks {
    /// An empty table of disks in memory (the simulation's).
    pub fn new() -> Arc<Disks> {
        Arc::new(Disks::default())
    }

    /// A table of simulated disks whose syncs take times drawn from `sync`, each disk from a
    /// stream of its own under `seed`, and which `disk` faults can slow or stall.
    pub fn simulated(seed: u64, sync: Dist) -> Arc<Disks> {
        Arc::new(Disks {
            timing: Some(Arc::new(Timing {
                sync,
                seed,
                faults: Mutex::default(),
            })),
            ..Disks::default()
        })
    }

    /// Starts disk fault `id` on the disks of `instances`.
    pub fn start_fault(&self, id: usize, instances: Vec<String>, effect: DiskEffect) {
        if let Some(timing) = &self.timing {
            lock(&timing.faults).insert(id, (instances, effect));
        }
    }

    /// Ends disk fault `id`.
    pub fn end_fault(&self, id: usize) {
        if let Some(timing) = &self.timing {
            lock(&timing.faults).remove(&id);
        }
    }

    /// A table whose disks are files in `dir` (created if missing), one per disk name. It
    /// locks the directory (a second process is refused) and replays every disk already there,
    /// so a damaged file is an error now, not when a service first opens it.
    pub fn in_dir(dir: &Path) -> Result<Arc<Disks>, DiskError> {
        let at = |name: &str, path: &Path| {
            let (name, path) = (name.to_string(), path.display().to_string());
            move |source| DiskError { name, path, source }
        };
        std::fs::create_dir_all(dir).map_err(at("(directory)", dir))?;
        let lock_path = dir.join(".lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(at("(lock)", &lock_path))?;
        lock_file.try_lock().map_err(|e| {
            let busy = std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("another process keeps its data here ({e})"),
            );
            at("(lock)", &lock_path)(busy)
        })?;
        let disks = Disks {
            disks: Mutex::default(),
            dir: Some(dir.to_path_buf()),
            _lock: Some(lock_file),
            timing: None,
        };
        let entries = std::fs::read_dir(dir).map_err(at("(directory)", dir))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(Disks::name_of))
            .collect();
        names.sort();
        for name in names {
            disks.try_open(&name)?;
        }
        Ok(Arc::new(disks))
    }

    /// The disk name a file in the directory holds, if it is one of ours.
    fn name_of(file: &str) -> Option<String> {
        let escaped = file.strip_suffix(".log")?;
        let mut out = Vec::new();
        let mut bytes = escaped.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).ok()
    }

    /// The file of disk `name` in `dir`: the name with every byte but `[A-Za-z0-9._-]`
    /// written as `%XX`, then `.log`.
    fn file_of(dir: &Path, name: &str) -> PathBuf {
        let mut file = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                file.push(char::from(b));
            } else {
                file.push_str(&format!("%{b:02X}"));
            }
        }
        dir.join(file + ".log")
    }

    /// The disk named `name`, created empty the first time.
    pub fn open(&self, name: &str) -> Arc<Disk> {
        self.try_open(name).unwrap_or_else(|e| {
            // Only a file-backed table can fail here, and [`Disks::in_dir`] already opened
            // every file there was: what is left is creating a new file in a directory that
            // `serve` checked it can write to. If even that fails, nothing can be stored.
            eprintln!("fatal: {e}");
            std::process::abort()
        })
    }

    /// The disk named `name`, created empty the first time; for disks in files, an error
    /// when its file cannot be opened or read.
    pub fn try_open(&self, name: &str) -> Result<Arc<Disk>, DiskError> {
        let mut disks = lock(&self.disks);
        if let Some(disk) = disks.get(name) {
            return Ok(disk.clone());
        }
        let disk = match &self.dir {
            None => Disk {
                clock: self.timing.as_ref().map(|timing| {
                    let instance = name.split_once('/').map_or(name, |(i, _)| i);
                    Mutex::new(SyncClock {
                        rng: crate::framework::ids::stream(timing.seed, &format!("disk/{name}")),
                        timing: timing.clone(),
                        instance: instance.to_string(),
                    })
                }),
                ..Disk::default()
            },
            Some(dir) => {
                let path = Disks::file_of(dir, name);
                Disk::open_file(&path).map_err(|source| DiskError {
                    name: name.to_string(),
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        let disk = Arc::new(disk);
        disks.insert(name.to_string(), disk.clone());
        Ok(disk)
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
    fn a_file_disk_replays_its_synced_records_and_cuts_a_torn_one() {
        let dir = std::env::temp_dir().join(format!("wt-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let disks = Disks::in_dir(&dir).expect("a temp dir");
        let d = disks.try_open("store.x[0]/data").expect("opens");
        d.append(Bytes::from_static(b"first"));
        d.append(Bytes::from_static(b"second"));
        d.sync();
        d.append(Bytes::from_static(b"never synced"));
        let path = Disks::file_of(&dir, "store.x[0]/data");
        assert!(path.ends_with("store.x%5B0%5D%2Fdata.log"), "{path:?}");
        // A crash in the middle of writing a third record: its frame and half its bytes.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("the file");
        f.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, b't', b'o'])
            .expect("writes");
        drop(f);
        drop(disks);
        let again = Disks::in_dir(&dir).expect("reopens");
        let d = again.try_open("store.x[0]/data").expect("replays");
        assert_eq!(
            d.durable(),
            vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]
        );
        d.append(Bytes::from_static(b"third"));
        d.sync();
        drop(again);
        let again = Disks::in_dir(&dir).expect("reopens");
        let d = again.try_open("store.x[0]/data").expect("replays");
        assert_eq!(d.durable().len(), 3, "appends go on after the cut");
        assert!(
            Disks::in_dir(&dir).is_err(),
            "a second table on the same directory is refused while the first lives"
        );
        drop(again);
        // Damage in the middle (not a torn end) is refused, not silently cut.
        let mut bytes = std::fs::read(&path).expect("the file");
        bytes[RECORD_HEADER] ^= 0xff;
        std::fs::write(&path, bytes).expect("writes");
        let refused = Disks::in_dir(&dir).expect_err("damaged");
        assert!(
            refused.to_string().contains("does not match its hash"),
            "{refused}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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
