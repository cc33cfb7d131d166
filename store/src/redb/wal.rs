//! The write-ahead file of a redb ledger (`<ledger>-wal`, docs/format.md): a batch is
//! durable once its frame is written and `fdatasync`ed here, one sequential write; redb then
//! takes the batch without an fsync of its own (`Durability::None`), and a checkpoint (one
//! durable redb commit) every so many frames makes redb hold everything, after which the
//! file starts a new generation.
//!
//! The file is preallocated (zeros written once), so an append changes no file size or extent
//! and `fdatasync` flushes the data alone. Frames are written from byte 64 on; each carries
//! the generation of the header it belongs to and a BLAKE3 checksum over that generation, its
//! length and its payload. Reading stops at the first frame that is not whole and valid: the
//! zeros after the last frame, a torn frame the crash interrupted (never acknowledged: the
//! answer waits for the fdatasync), or a frame of an earlier generation left from before the
//! last checkpoint.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::backend::{BatchWrite, Head};
use crate::error::{Error, Result};

/// The write-ahead format this build writes and reads.
pub const WAL_FORMAT: u8 = 1;
const MAGIC: &[u8; 8] = b"keyledgw";
/// Header: magic, format, 7 zero bytes, generation (u64 LE), the first 8 bytes of BLAKE3 over
/// the 24 bytes before them; the rest of the 64 bytes zero.
pub const HEADER_BYTES: u64 = 64;
/// Frame header: payload length (u32 LE), generation (u64 LE), 16 bytes of checksum.
pub const FRAME_HEADER_BYTES: usize = 28;
/// What a new file is preallocated to; a frame that does not fit grows it.
pub const DEFAULT_CAPACITY: u64 = 4 << 20;

/// The file name beside a ledger file.
pub fn path_for(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// A step of the write-ahead file that fault-injection tests can fail
/// ([`crate::Store::with_backend_and_wal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalStep {
    /// Writing a frame.
    Write,
    /// The fdatasync after it.
    Sync,
    /// Rewriting the header for the next generation, after a checkpoint.
    Restart,
}

/// Called before each [`WalStep`]; an error fails that step as the disk would.
pub type WalFaults = std::sync::Arc<dyn Fn(WalStep) -> std::io::Result<()> + Send + Sync>;

/// An open write-ahead file, positioned after its last frame.
pub struct Wal {
    file: File,
    faults: Option<WalFaults>,
    path: PathBuf,
    generation: u64,
    end: u64,
    capacity: u64,
    frames: u64,
    /// Where the last frame starts, while it may still be taken back.
    last: Option<u64>,
    /// An append failed and its bytes could not be wiped: nothing more is written until the
    /// store is reopened (which reads the file again).
    broken: bool,
}

/// What reading a write-ahead file found.
#[derive(Debug, Default)]
pub struct Scan {
    pub frames: Vec<BatchWrite>,
    /// Where the valid frames end.
    pub end: u64,
    /// Why reading stopped before the preallocated zeros, if it did: a torn or corrupt frame
    /// at that byte offset (its bytes are not applied).
    pub stopped: Option<(u64, String)>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("path", &self.path)
            .field("generation", &self.generation)
            .field("end", &self.end)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Creates the file anew (a new generation), preallocated, mode 0600: frames hold key
    /// text. An existing file is overwritten: call only after its frames were checkpointed.
    pub fn create(path: &Path, generation: u64, faults: Option<WalFaults>) -> Result<Wal> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut wal = Wal {
            file,
            faults,
            path: path.to_owned(),
            generation,
            end: HEADER_BYTES,
            capacity: 0,
            frames: 0,
            last: None,
            broken: false,
        };
        wal.preallocate(DEFAULT_CAPACITY)?;
        wal.write_header()?;
        Ok(wal)
    }

    /// Reads every valid frame of the file's current generation.
    pub fn scan(path: &Path) -> Result<Option<(u64, Scan)>> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Some(scan_bytes(&bytes)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a frame of `payload_len` bytes fits without growing the file.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.end + (FRAME_HEADER_BYTES + payload_len) as u64 <= self.capacity
    }

    /// Writes one batch's frame and fdatasyncs it: when this returns, the batch is durable.
    /// On failure the frame's bytes are wiped (so a later read cannot take a frame whose
    /// fdatasync failed for committed) and the file stays where it was.
    pub fn append(&mut self, batch: &BatchWrite) -> Result<()> {
        if self.broken {
            return Err(Error::Storage(format!(
                "{}: an earlier append failed; the write-ahead file is read again on reopen",
                self.path.display()
            )));
        }
        let frame = framed(self.generation, batch)?;
        let needed = self.end + frame.len() as u64;
        if needed > self.capacity {
            self.preallocate(needed.next_power_of_two())?;
        }
        let written = self
            .fault(WalStep::Write)
            .and_then(|_| self.write_at(self.end, &frame))
            .and_then(|_| self.fault(WalStep::Sync))
            .and_then(|_| self.sync());
        if let Err(err) = written {
            let wiped = self
                .write_at(self.end, &[0u8; FRAME_HEADER_BYTES])
                .and_then(|_| self.sync());
            self.broken = wiped.is_err();
            return Err(err);
        }
        self.last = Some(self.end);
        self.end = needed;
        self.frames += 1;
        Ok(())
    }

    /// Takes the last frame back (its batch could not be applied to redb, so it is answered
    /// as failed and must not come back on a later open): its header is wiped and synced.
    /// If that fails too the file is broken until reopened, and the batch's outcome unknown.
    pub fn retract_last(&mut self) -> Result<()> {
        let Some(start) = self.last.take() else {
            return Ok(());
        };
        let wiped = self
            .write_at(start, &[0u8; FRAME_HEADER_BYTES])
            .and_then(|_| self.sync());
        match wiped {
            Ok(()) => {
                self.end = start;
                self.frames -= 1;
                Ok(())
            }
            Err(err) => {
                self.broken = true;
                Err(err)
            }
        }
    }

    /// Starts the next generation after a checkpoint: the old frames no longer count.
    pub fn restart(&mut self) -> Result<()> {
        self.fault(WalStep::Restart)?;
        self.generation += 1;
        self.write_header()?;
        self.end = HEADER_BYTES;
        self.frames = 0;
        self.last = None;
        self.broken = false;
        Ok(())
    }

    /// Zeros every frame byte (after a checkpoint, when a batch retired key text: the text
    /// must not outlive its erasure in an old frame).
    pub fn scrub(&mut self) -> Result<()> {
        let zeros = vec![0u8; 1 << 16];
        let mut at = HEADER_BYTES;
        while at < self.capacity {
            let n = (self.capacity - at).min(zeros.len() as u64) as usize;
            self.write_at(at, &zeros[..n])?;
            at += n as u64;
        }
        self.sync()
    }

    fn write_header(&mut self) -> Result<()> {
        self.write_at(0, &header(self.generation))?;
        self.sync()
    }

    /// Writes zeros up to `capacity` (once: later appends then change no metadata).
    fn preallocate(&mut self, capacity: u64) -> Result<()> {
        let current = self.file.metadata()?.len();
        if current < capacity {
            self.file.seek(SeekFrom::Start(current))?;
            let zeros = vec![0u8; 1 << 16];
            let mut left = capacity - current;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                self.file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            self.file.sync_all()?;
        }
        self.capacity = capacity.max(current);
        Ok(())
    }

    fn fault(&self, step: WalStep) -> Result<()> {
        match &self.faults {
            Some(faults) => Ok(faults(step)?),
            None => Ok(()),
        }
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, offset)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }
}

/// The 64 header bytes of a generation.
pub fn header(generation: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0u8; HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8] = WAL_FORMAT;
    header[16..24].copy_from_slice(&generation.to_le_bytes());
    let check = blake3::hash(&header[..24]);
    header[24..32].copy_from_slice(&check.as_bytes()[..8]);
    header
}

fn frame_checksum(generation: u64, payload: &[u8]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(&(payload.len() as u32).to_le_bytes());
    hasher.update(payload);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

/// A whole frame: its header, then `payload`.
pub fn frame(generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&frame_checksum(generation, payload));
    out.extend_from_slice(payload);
    out
}

/// The generation of a file's bytes and its valid frames. A header that does not check
/// yields no frames (and says why).
pub fn scan_bytes(bytes: &[u8]) -> (u64, Scan) {
    let mut scan = Scan {
        end: HEADER_BYTES,
        ..Scan::default()
    };
    if bytes.iter().all(|b| *b == 0) {
        return (0, scan); // preallocated, header never written (a crash while creating it)
    }
    let Some(head) = bytes.get(..HEADER_BYTES as usize) else {
        scan.stopped = Some((0, "the header is cut short".to_owned()));
        return (0, scan);
    };
    let generation = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    if head[..8] != MAGIC[..] || head[8] != WAL_FORMAT || head[..] != header(generation)[..] {
        let why = if head[..8] != MAGIC[..] {
            "not a keyledger write-ahead file".to_owned()
        } else if head[8] != WAL_FORMAT {
            format!(
                "write-ahead format {}; this build reads {WAL_FORMAT}",
                head[8]
            )
        } else {
            "the header's checksum does not match".to_owned()
        };
        scan.stopped = Some((0, why));
        return (generation, scan);
    }
    let mut at = HEADER_BYTES as usize;
    loop {
        let Some(frame_head) = bytes.get(at..at + FRAME_HEADER_BYTES) else {
            if bytes[at.min(bytes.len())..].iter().any(|b| *b != 0) {
                scan.stopped = Some((at as u64, "a frame's header is cut short".to_owned()));
            }
            break;
        };
        let len = u32::from_le_bytes(frame_head[..4].try_into().expect("4 bytes")) as usize;
        let frame_generation = u64::from_le_bytes(frame_head[4..12].try_into().expect("8 bytes"));
        if len == 0 && frame_head.iter().all(|b| *b == 0) {
            break; // the preallocated zeros: the end
        }
        if frame_generation != generation {
            break; // a frame left from before the last checkpoint: the end
        }
        let start = at + FRAME_HEADER_BYTES;
        let Some(payload) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            scan.stopped = Some((at as u64, format!("a frame of {len} bytes is cut short")));
            break;
        };
        if frame_head[12..28] != frame_checksum(generation, payload) {
            scan.stopped = Some((at as u64, "a frame's checksum does not match".to_owned()));
            break;
        }
        match decode(payload) {
            Ok(batch) => scan.frames.push(batch),
            Err(why) => {
                scan.stopped = Some((at as u64, format!("a frame does not decode: {why}")));
                break;
            }
        }
        at = start + len;
        scan.end = at as u64;
    }
    (generation, scan)
}

/// A batch as a frame's payload (docs/format.md, "Write-ahead file").
pub fn encode(batch: &BatchWrite) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(&mut out, batch)?;
    Ok(out)
}

/// The whole frame of `batch`, encoded once into one buffer (the block is the bulk of it:
/// it is copied into the frame and nowhere else).
fn framed(generation: u64, batch: &BatchWrite) -> Result<Vec<u8>> {
    let block = batch.block.as_ref().map_or(0, |(_, b)| b.len());
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + 128 + block);
    out.resize(FRAME_HEADER_BYTES, 0);
    encode_into(&mut out, batch)?;
    let payload_len = out.len() - FRAME_HEADER_BYTES;
    let len = u32::try_from(payload_len)
        .map_err(|_| Error::Storage(format!("a batch of {payload_len} bytes exceeds a frame")))?;
    let checksum = frame_checksum(generation, &out[FRAME_HEADER_BYTES..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..12].copy_from_slice(&generation.to_le_bytes());
    out[12..FRAME_HEADER_BYTES].copy_from_slice(&checksum);
    Ok(out)
}

fn encode_into(out: &mut Vec<u8>, batch: &BatchWrite) -> Result<()> {
    put_head(out, batch.start);
    match batch.head {
        Some(head) => {
            out.push(1);
            put_head(out, head);
        }
        None => out.push(0),
    }
    match &batch.block {
        Some((first, bytes)) => {
            out.push(1);
            out.extend_from_slice(&first.to_le_bytes());
            put_bytes(out, bytes)?;
        }
        None => out.push(0),
    }
    put_len(out, batch.secrets.len())?;
    for (key_id, text) in &batch.secrets {
        out.extend_from_slice(&key_id.to_le_bytes());
        put_bytes(out, text.as_bytes())?;
    }
    put_len(out, batch.answers.len())?;
    for (key, answer) in &batch.answers {
        put_bytes(out, key.as_bytes())?;
        put_bytes(out, answer)?;
    }
    put_len(out, batch.merkle.len())?;
    for (level, index, hash) in &batch.merkle {
        out.push(*level);
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(hash);
    }
    put_len(out, batch.retired.len())?;
    for key_id in &batch.retired {
        out.extend_from_slice(&key_id.to_le_bytes());
    }
    Ok(())
}

fn put_head(out: &mut Vec<u8>, head: Head) {
    out.extend_from_slice(&head.seq.to_le_bytes());
    out.extend_from_slice(&head.hash);
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| Error::Storage(format!("{len} items do not fit one write-ahead frame")))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads a payload back; any malformation is an error naming it, never a panic.
pub fn decode(payload: &[u8]) -> std::result::Result<BatchWrite, String> {
    let mut r = Reader(payload);
    let start = r.head()?;
    let head = match r.u8()? {
        0 => None,
        1 => Some(r.head()?),
        other => return Err(format!("head marker {other}")),
    };
    let block = match r.u8()? {
        0 => None,
        1 => Some((r.u64()?, r.bytes()?.to_vec())),
        other => return Err(format!("block marker {other}")),
    };
    let mut secrets = Vec::new();
    for _ in 0..r.u32()? {
        let key_id = r.u64()?;
        let text = std::str::from_utf8(r.bytes()?).map_err(|_| "key text is not UTF-8")?;
        secrets.push((key_id, text.to_owned()));
    }
    let mut answers = Vec::new();
    for _ in 0..r.u32()? {
        let key = std::str::from_utf8(r.bytes()?).map_err(|_| "an answer key is not UTF-8")?;
        answers.push((key.to_owned(), r.bytes()?.to_vec()));
    }
    let mut merkle = Vec::new();
    for _ in 0..r.u32()? {
        let level = r.u8()?;
        let index = r.u64()?;
        merkle.push((level, index, r.array()?));
    }
    let mut retired = Vec::new();
    for _ in 0..r.u32()? {
        retired.push(r.u64()?);
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the batch", r.0.len()));
    }
    Ok(BatchWrite {
        block,
        start,
        head,
        secrets,
        answers,
        merkle,
        retired,
        // Not in the frame: the replay derives them from the block, as the engine did.
        index: Default::default(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }

    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn head(&mut self) -> std::result::Result<Head, String> {
        Ok(Head {
            seq: self.u64()?,
            hash: self.array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64) -> BatchWrite {
        BatchWrite {
            block: Some((seq, vec![seq as u8; 10])),
            start: Head {
                seq: seq - 1,
                hash: [0; 32],
            },
            head: Some(Head {
                seq,
                hash: [seq as u8; 32],
            }),
            ..BatchWrite::default()
        }
    }

    /// A frame taken back (its redb commit failed) is not read again, and the next append
    /// takes its place.
    #[test]
    fn a_retracted_frame_is_gone_and_its_place_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb-wal");
        let mut wal = Wal::create(&path, 1, None).unwrap();
        wal.append(&batch(1)).unwrap();
        wal.append(&batch(2)).unwrap();
        wal.retract_last().unwrap();
        let (_, scan) = Wal::scan(&path).unwrap().unwrap();
        assert_eq!(scan.frames, vec![batch(1)]);
        assert_eq!(scan.stopped, None);
        wal.append(&batch(3)).unwrap();
        let (_, scan) = Wal::scan(&path).unwrap().unwrap();
        assert_eq!(scan.frames, vec![batch(1), batch(3)]);
        assert_eq!(wal.frames(), 2);
    }

    /// A crash while the file was being preallocated leaves zeros and no header: nothing was
    /// ever written to it, so nothing is reported.
    #[test]
    fn a_file_of_zeros_is_an_empty_one_not_damage() {
        let (generation, scan) = scan_bytes(&[0u8; 4096]);
        assert_eq!((generation, scan.frames.len(), scan.stopped), (0, 0, None));
        let (_, scan) = scan_bytes(&[0u8; 10]);
        assert_eq!(scan.stopped, None);
        let mut not_ours = [0u8; 4096];
        not_ours[0] = b'x';
        assert_eq!(
            scan_bytes(&not_ours).1.stopped,
            Some((0, "not a keyledger write-ahead file".to_owned()))
        );
    }

    /// The append path's one-buffer framing is the documented one (`frame` of `encode`).
    #[test]
    fn framing_in_one_buffer_is_the_golden_framing() {
        let mut full = batch(2);
        full.secrets = vec![(1, "BCDFG-HJKMP-QRTVW-XY234-6789B".to_owned())];
        full.retired = vec![1];
        assert_eq!(framed(7, &full).unwrap(), frame(7, &encode(&full).unwrap()));
    }
}
