//! A simulated disk under redb: memory that knows which writes were synced.
//!
//! Reads see every write. A write is durable only after the next `sync_data`; until then it
//! is in `unsynced`, and a crash ([`Disk::crash`]) decides for each such write, from the
//! seed, whether it reached the platter whole, not at all, or torn (a prefix of it): what a
//! power cut does to a file without a sync barrier. Faults come from the seed too: an I/O
//! error on the n-th write or sync from now, and a full disk (writes past a size fail until
//! space is freed).

use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use redb::{BackendError, StorageBackend};

/// A write not yet synced.
#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// What to fail, counted in operations from when it was armed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The write (or length change) that fails with an I/O error: 1 = the next one.
    pub write_error_in: Option<u64>,
    /// The sync that fails.
    pub sync_error_in: Option<u64>,
    /// Writes that would make the file longer than this fail: the disk is full.
    pub capacity: Option<u64>,
    /// The power goes at this write (which fails, as does everything after it): a crash in
    /// the middle of a commit.
    pub power_off_in: Option<u64>,
}

#[derive(Debug, Default)]
struct Image {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
    faults: Faults,
    /// The machine lost power: nothing reaches the image until [`Disk::crash`] ends it.
    down: bool,
    injected: u64,
}

/// The disk; clones share it. [`Disk::backend`] makes a redb backend over it.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    image: Arc<Mutex<Image>>,
}

/// How a crash treated the writes that were not synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub kept: u64,
    pub lost: u64,
    pub torn: u64,
}

impl Disk {
    fn image(&self) -> MutexGuard<'_, Image> {
        self.image.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn backend(&self) -> SimBackend {
        SimBackend(self.clone())
    }

    pub fn arm(&self, faults: Faults) {
        self.image().faults = faults;
    }

    /// Frees the space a full disk lacked.
    pub fn free_space(&self) {
        self.image().faults.capacity = None;
    }

    /// The file's size now (what a full disk is measured from).
    pub fn file_len(&self) -> u64 {
        self.image().data.len() as u64
    }

    /// Faults that struck so far.
    pub fn injected(&self) -> u64 {
        self.image().injected
    }

    /// The power goes: no write reaches the disk from now on (the process that still holds
    /// it is about to be dropped, and must not write while it goes).
    pub fn power_off(&self) {
        self.image().down = true;
    }

    /// Power back without a crash (a process that was killed: the OS kept its writes).
    pub fn power_on(&self) {
        self.image().down = false;
    }

    pub fn is_off(&self) -> bool {
        self.image().down
    }

    /// After [`Disk::power_off`]: the disk as a reboot finds it. Every unsynced write is
    /// kept, lost or torn as `rng` says; the faults are cleared.
    pub fn crash(&self, rng: &mut impl Rng) -> CrashReport {
        let mut image = self.image();
        let mut report = CrashReport::default();
        let mut after = image.durable.clone();
        for op in std::mem::take(&mut image.unsynced) {
            match (rng.random_range(0..3u8), op) {
                (0, _) => report.lost += 1,
                (1, Op::Write(offset, bytes)) if bytes.len() > 1 => {
                    let cut = rng.random_range(1..bytes.len());
                    write_at(&mut after, offset, &bytes[..cut]);
                    report.torn += 1;
                }
                (_, op) => {
                    apply(&mut after, &op);
                    report.kept += 1;
                }
            }
        }
        image.data = after.clone();
        image.durable = after;
        image.faults = Faults::default();
        image.down = false;
        report
    }
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + bytes.len());
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(offset, bytes) => write_at(data, *offset, bytes),
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// Counts an operation down; `true` when this one fails.
fn strikes(countdown: &mut Option<u64>) -> bool {
    match countdown {
        Some(1) => {
            *countdown = None;
            true
        }
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

impl Image {
    fn change(&mut self, op: Op, new_len: u64) -> io::Result<()> {
        if self.down {
            return Err(io::Error::other("simulated power loss"));
        }
        if strikes(&mut self.faults.power_off_in) {
            self.injected += 1;
            self.down = true;
            return Err(io::Error::other("simulated power loss"));
        }
        if strikes(&mut self.faults.write_error_in) {
            self.injected += 1;
            return Err(io::Error::other("simulated write error"));
        }
        if self.faults.capacity.is_some_and(|cap| new_len > cap) {
            self.injected += 1;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated full disk",
            ));
        }
        apply(&mut self.data, &op);
        self.unsynced.push(op);
        Ok(())
    }
}

/// A redb backend over a [`Disk`].
#[derive(Debug)]
pub struct SimBackend(Disk);

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.image().data.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let image = self.0.image();
        let start = offset as usize;
        let Some(bytes) = image.data.get(start..start + out.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        };
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.image().change(Op::SetLen(len), len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut image = self.0.image();
        if image.down {
            return Err(io::Error::other("simulated power loss"));
        }
        if strikes(&mut image.faults.sync_error_in) {
            image.injected += 1;
            return Err(io::Error::other("simulated sync error"));
        }
        let ops = std::mem::take(&mut image.unsynced);
        for op in &ops {
            apply(&mut image.durable, op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut image = self.0.image();
        let end = offset + data.len() as u64;
        let new_len = end.max(image.data.len() as u64);
        image.change(Op::Write(offset, data.to_vec()), new_len)
    }

    fn close(&self) -> io::Result<()> {
        Ok(())
    }

    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn try_lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
}
