//! Purpose: keyledger's full append path against the physical baseline (encode + append to
//! a plain file + fdatasync per batch) and a SQLite peer (one row per event with the same
//! chain, WAL, synchronous=FULL, one transaction per batch), on the same activation events,
//! at batches of 1, 100, 1000 and 10000; the same through the single writer; and
//! full verification against rehashing the file; and the disk's price for a commit that
//! overwrites scattered pages, beside one that appends.

mod support;

/// The benches measure with the allocator the `keyledger` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use keyledger_ledger::chain::{link, ChainHash, GENESIS};
use keyledger_ledger::codec::{decode_record, encode_record};
use keyledger_ledger::Submission;

/// The physical baseline: length-prefixed records appended to one file, one fdatasync a batch.
struct PlainFile {
    file: File,
}

impl PlainFile {
    fn append(&mut self, events: &[keyledger_core::Event]) {
        let mut buffer = Vec::with_capacity(events.len() * 96);
        for event in events {
            let record = encode_record(event);
            buffer.extend_from_slice(&(record.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&record);
        }
        self.file.write_all(&buffer).unwrap();
        self.file.sync_data().unwrap();
    }
}

/// The SQLite peer: one row per event, the same chain, one transaction a batch.
struct Sqlite {
    db: rusqlite::Connection,
    seq: u64,
    head: ChainHash,
}

impl Sqlite {
    fn open(path: &std::path::Path) -> Sqlite {
        let db = rusqlite::Connection::open(path).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.pragma_update(None, "synchronous", "FULL").unwrap();
        db.execute_batch("CREATE TABLE events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, record BLOB NOT NULL)")
            .unwrap();
        Sqlite {
            db,
            seq: 0,
            head: GENESIS,
        }
    }

    fn append(&mut self, events: &[keyledger_core::Event]) {
        let tx = self.db.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (seq, hash, record) VALUES (?1, ?2, ?3)")
                .unwrap();
            for event in events {
                let record = encode_record(event);
                self.seq += 1;
                self.head = link(&self.head, self.seq, &record);
                insert
                    .execute(rusqlite::params![self.seq as i64, &self.head[..], &record])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(4))
        .warm_up_time(std::time::Duration::from_secs(1));
    for batch in [1usize, 100, 1000, 10_000] {
        group.throughput(Throughput::Elements(batch as u64));
        let events = support::activation_events(batch);
        let dir = tempfile::tempdir().unwrap();
        let mut plain = PlainFile {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("plain.log"))
                .unwrap(),
        };
        group.bench_function(BenchmarkId::new("plain_file_fdatasync", batch), |b| {
            b.iter(|| plain.append(&events))
        });
        let mut sqlite = Sqlite::open(&dir.path().join("peer.sqlite"));
        group.bench_function(BenchmarkId::new("sqlite_wal_full", batch), |b| {
            b.iter(|| sqlite.append(&events))
        });
        let mut engine = support::ledger(dir.path());
        run_batches(&mut group, "keyledger", &mut engine, batch);
        report_bytes(&engine, &events, dir.path(), batch);
        drop(engine);
        through_writer(&mut group, batch);
        on_postgres(&mut group, batch);
    }
    group.finish();
}

/// `Engine::run_batch` of `batch` new activations, one batch at a time.
fn run_batches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    engine: &mut keyledger_ledger::Engine,
    batch: usize,
) {
    group.bench_function(BenchmarkId::new(name, batch), |b| {
        b.iter_batched(
            || vec![Submission::new(support::activations(batch))],
            |submissions| {
                let answers = engine.run_batch(&submissions).remove(0).unwrap();
                debug_assert!(answers.iter().all(|a| a.ok));
            },
            BatchSize::PerIteration,
        )
    });
}

/// With `KEYLEDGER_BENCH_PG=postgres://USER@HOST:PORT[,HOST:PORT]` (a server, no database:
/// e.g. `scripts/pg-cluster.sh start`), the same batches on the PostgreSQL store, in a
/// scratch database created and dropped here; `KEYLEDGER_BENCH_PG_COMMIT=local` asks for
/// `synchronous_commit = local` in it (the standby not waited for).
fn on_postgres(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: usize,
) {
    let Ok(server) = std::env::var("KEYLEDGER_BENCH_PG") else {
        return;
    };
    let admin = format!("{server}/postgres?target_session_attrs=read-write");
    let database = format!("kl_bench_{batch}");
    let psql = |sql: &str| {
        let status = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c", sql])
            .status()
            .unwrap();
        assert!(status.success(), "{sql}");
    };
    psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {database}"));
    if std::env::var("KEYLEDGER_BENCH_PG_COMMIT").as_deref() == Ok("local") {
        psql(&format!(
            "ALTER DATABASE {database} SET synchronous_commit = local"
        ));
    }
    let url = format!("{server}/{database}?target_session_attrs=read-write");
    let mut engine = support::ledger_at(url.parse().unwrap(), batch.max(10_000));
    run_batches(group, "keyledger_postgres", &mut engine, batch);
    drop(engine);
    psql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
}

/// The production path: submissions of `batch` commands through the single writer
/// (batches of exactly `batch`), with its default tuning: batches from
/// `Limits::pipeline_from_commands` up commit while the next one is decided, smaller ones
/// commit on the writer thread.
fn through_writer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    batch: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let engine = support::ledger_with_batches_of(dir.path(), batch);
    let seq_before = engine.head().seq;
    let writer = keyledger_ledger::Writer::spawn(engine);
    let handle = writer.handle();
    let cpu_before = support::thread_cpu();
    group.bench_function(BenchmarkId::new("keyledger_writer", batch), |b| {
        b.iter_custom(|iters| {
            let submissions: Vec<_> = (0..iters).map(|_| support::activations(batch)).collect();
            let started = std::time::Instant::now();
            let replies: Vec<_> = submissions
                .into_iter()
                .map(|commands| handle.send_blocking(commands, false).unwrap())
                .collect();
            for reply in replies {
                let answers = reply.blocking_recv().unwrap().unwrap();
                debug_assert!(answers.iter().all(|a| a.ok));
            }
            started.elapsed()
        })
    });
    drop(handle);
    let cpu_after = support::thread_cpu();
    let events = writer.stop().unwrap().head().seq - seq_before;
    report_cpu(&cpu_before, &cpu_after, events, batch);
}

/// Where the writer's CPU goes, per event and per thread: the writer decides,
/// applies and encodes; the hashing thread chains and grows the Merkle tree; the blocking
/// pool thread (tokio's) compresses and commits. Their sum over the machine's cores bounds
/// the throughput whatever the disk does.
fn report_cpu(
    before: &std::collections::BTreeMap<String, std::time::Duration>,
    after: &std::collections::BTreeMap<String, std::time::Duration>,
    events: u64,
    batch: usize,
) {
    if events == 0 || after.is_empty() {
        return;
    }
    let mut line = format!("cpu: batch {batch} through the writer, {events} events, us/event:");
    let mut total = 0.0;
    // Linux keeps the first 15 bytes of a thread's name.
    for (name, label) in [
        ("keyledger-write", "writer"),
        ("keyledger-hashi", "hashing"),
        ("tokio-rt-worker", "commit"),
    ] {
        let used = after
            .get(name)
            .copied()
            .unwrap_or_default()
            .saturating_sub(before.get(name).copied().unwrap_or_default());
        let micros = used.as_secs_f64() * 1e6 / events as f64;
        total += micros;
        line.push_str(&format!(" {label} {micros:.2}"));
    }
    eprintln!("{line}; sum {total:.2}");
}

/// Bytes on disk per event beside the encoded size, printed once per batch size.
fn report_bytes(
    engine: &keyledger_ledger::Engine,
    events: &[keyledger_core::Event],
    dir: &std::path::Path,
    batch: usize,
) {
    let encoded: usize =
        events.iter().map(|e| encode_record(e).len()).sum::<usize>() / events.len();
    let file = std::fs::metadata(dir.join("bench.redb")).unwrap().len();
    let count = engine.head().seq;
    eprintln!(
        "bytes: batch {batch}: {count} events, redb file {file} bytes = {:.1} B/event; encoded record {encoded} B",
        file as f64 / count as f64
    );
}

fn verify(c: &mut Criterion) {
    const EVENTS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = support::ledger(dir.path());
    for _ in 0..EVENTS / 1000 {
        engine
            .run_batch(&[Submission::new(support::activations(1000))])
            .remove(0)
            .unwrap();
    }
    let events = support::activation_events(EVENTS);
    let path = dir.path().join("plain.log");
    let mut plain = PlainFile {
        file: File::create(&path).unwrap(),
    };
    for chunk in events.chunks(1000) {
        plain.append(chunk);
    }
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("plain_file_decode_rehash", |b| {
        b.iter(|| {
            let mut bytes = Vec::new();
            File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
            let (mut at, mut seq, mut head) = (0, 0u64, GENESIS);
            while at < bytes.len() {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                let record = &bytes[at + 4..at + 4 + len];
                seq += 1;
                head = link(&head, seq, record);
                std::hint::black_box(decode_record(record).unwrap());
                at += 4 + len;
            }
            assert_eq!(seq, EVENTS as u64);
            head
        })
    });
    group.bench_function("keyledger_verify", |b| {
        b.iter(|| keyledger_ledger::verify(engine.store()).unwrap())
    });
    group.finish();
    let file = std::fs::metadata(dir.path().join("bench.redb"))
        .unwrap()
        .len();
    let encoded: usize = events.iter().map(|e| encode_record(e).len()).sum();
    eprintln!(
        "bytes: {EVENTS} events at batch 1000: redb file {:.1} B/event; encoded records {:.1} B/event; ratio {:.2}",
        file as f64 / (EVENTS + 5) as f64,
        encoded as f64 / EVENTS as f64,
        file as f64 / encoded as f64
    );
}

/// The disk's own price list, behind the batch-1 ratio: `fdatasync` after overwriting N
/// scattered 4 KiB pages of a file already written, which is what a copy-on-write B-tree
/// commit pays (redb writes its header and six or seven pages per commit; count them with
/// `strace -e pwrite64,fdatasync`), beside the plain baseline's one small append
/// (`append/plain_file_fdatasync/1`).
fn disk(c: &mut Criterion) {
    const PAGE: usize = 4096;
    const PAGES: u64 = 16 * 1024;
    let mut group = c.benchmark_group("disk");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(4))
        .warm_up_time(std::time::Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let mut file = File::create(dir.path().join("pages.bin")).unwrap();
    // Written out, not sparse: a write into a hole would allocate and journal as well.
    let page = [0x5au8; PAGE];
    for _ in 0..PAGES {
        file.write_all(&page).unwrap();
    }
    file.sync_all().unwrap();
    let mut position = 0x9e37_79b9_7f4a_7c15u64;
    for pages in [1u64, 2, 4, 8] {
        group.bench_function(BenchmarkId::new("overwrite_pages_fdatasync", pages), |b| {
            b.iter(|| {
                for _ in 0..pages {
                    position = position
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let slot = (position >> 33) % PAGES;
                    file.seek(SeekFrom::Start(slot * PAGE as u64)).unwrap();
                    file.write_all(&page).unwrap();
                }
                file.sync_data().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, verify, disk);
criterion_main!(benches);
