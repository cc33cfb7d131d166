//! `apply`: commands from JSON Lines through the single writer, answers in input order.
//!
//! Lines are read on one thread and submitted in chunks of whatever has arrived (up to
//! 1,024 lines), so a large file is group-committed while an interactive stream is answered
//! line by line. Answers are printed only after their commit is durable.

use crate::output::outln;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use keyledger_core::Command;
use keyledger_ledger::{wire, Answer, Writer};

use crate::progress::Progress;

const CHUNK_LINES_MAX: usize = 1024;

/// One input line: a parsed command, or the answer to a malformed line.
enum Item {
    Command(Command),
    Malformed(Answer),
}

fn parse(number: u64, line: &str) -> Item {
    match wire::parse_command(line) {
        Ok(command) => Item::Command(command),
        Err(err) => Item::Malformed(Answer::malformed(Some(number), &err)),
    }
}

fn input(file: &Path) -> Result<(Box<dyn BufRead + Send>, u64)> {
    if file == Path::new("-") {
        return Ok((Box::new(BufReader::new(std::io::stdin())), 0));
    }
    let opened = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(BufReader::new(opened)), size))
}

pub fn apply(data: &keyledger_ledger::Location, file: &Path, atomic: bool) -> Result<ExitCode> {
    let (reader, size) = input(file)?;
    let engine = crate::view::open_writer(data)?;
    if atomic {
        return apply_atomic(engine, reader);
    }
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let (lines_tx, lines_rx) = mpsc::sync_channel::<(u64, String)>(CHUNK_LINES_MAX * 4);
    let reading = std::thread::spawn(move || read_lines(reader, lines_tx));
    let (out_tx, out_rx) = mpsc::channel();
    let printing = std::thread::spawn(move || print_answers(out_rx));
    let progress = Progress::new("applying", size);
    while let Ok(first) = lines_rx.recv() {
        let mut chunk = vec![first];
        while chunk.len() < CHUNK_LINES_MAX {
            match lines_rx.try_recv() {
                Ok(line) => chunk.push(line),
                Err(_) => break,
            }
        }
        progress.add(chunk.iter().map(|(_, l)| l.len() as u64 + 1).sum());
        let items: Vec<Item> = chunk.iter().map(|(n, l)| parse(*n, l)).collect();
        let commands: Vec<Command> = items
            .iter()
            .filter_map(|i| match i {
                Item::Command(c) => Some(c.clone()),
                Item::Malformed(_) => None,
            })
            .collect();
        let pending = if commands.is_empty() {
            None
        } else {
            Some(handle.send_blocking(commands, false)?)
        };
        if out_tx.send((items, pending)).is_err() {
            break;
        }
    }
    progress.finish();
    drop(out_tx);
    let read_result = reading.join().expect("the reader thread does not panic");
    let printed = printing.join().expect("the printer thread does not panic");
    drop(handle);
    writer.stop()?;
    let failed = printed?;
    read_result?;
    if failed.not_committed > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "keyledger: {} command(s) were not committed (see their answers); resend them",
            failed.not_committed
        );
    }
    Ok(if failed.malformed + failed.not_committed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Lines whose answer makes `apply` exit 1.
#[derive(Debug, Default)]
struct Failed {
    malformed: u64,
    /// Commands whose batch did not commit (a failed write, a stopped writer).
    not_committed: u64,
}

fn read_lines(reader: Box<dyn BufRead + Send>, tx: mpsc::SyncSender<(u64, String)>) -> Result<()> {
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if tx.send((index as u64 + 1, line)).is_err() {
            break;
        }
    }
    Ok(())
}

type Pending = keyledger_ledger::AnswerReceiver;

/// Prints each chunk's answers in input order; counts the lines that failed.
fn print_answers(rx: mpsc::Receiver<(Vec<Item>, Option<Pending>)>) -> Result<Failed> {
    let mut out = crate::output::Stdout::lock();
    let mut failed = Failed::default();
    for (items, pending) in rx {
        let answers = match pending {
            Some(rx) => match rx.blocking_recv() {
                Ok(Ok(answers)) => answers,
                Ok(Err(err)) => vec![not_committed(&err); items.len()],
                Err(_) => {
                    let stopped =
                        Answer::error("writer_stopped", "the writer stopped before answering");
                    vec![stopped; items.len()]
                }
            },
            None => Vec::new(),
        };
        let mut answers = answers.into_iter();
        for item in items {
            let answer = match item {
                Item::Malformed(answer) => {
                    failed.malformed += 1;
                    answer
                }
                Item::Command(_) => answers.next().expect("one answer per command"),
            };
            if matches!(answer.code(), Some("not_committed" | "writer_stopped")) {
                failed.not_committed += 1;
            }
            out.line(format_args!("{}", answer.to_json()))?;
        }
        out.flush()?;
    }
    Ok(failed)
}

/// `--atomic`: every line parses and every command is accepted, or nothing is appended.
fn apply_atomic(
    engine: keyledger_ledger::Engine,
    reader: Box<dyn BufRead + Send>,
) -> Result<ExitCode> {
    let mut items = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", index + 1))?;
        if !line.trim().is_empty() {
            items.push(parse(index as u64 + 1, &line));
        }
    }
    let malformed: Vec<&Answer> = items
        .iter()
        .filter_map(|i| match i {
            Item::Malformed(a) => Some(a),
            Item::Command(_) => None,
        })
        .collect();
    if !malformed.is_empty() {
        for answer in &malformed {
            outln!("{}", answer.to_json());
        }
        bail!("{} malformed line(s); nothing was applied", malformed.len());
    }
    let commands: Vec<Command> = items
        .into_iter()
        .filter_map(|i| match i {
            Item::Command(c) => Some(c),
            Item::Malformed(_) => None,
        })
        .collect();
    let writer = Writer::spawn(engine);
    let answers = writer.handle().submit_blocking(commands, true);
    writer.stop()?;
    let answers = match answers {
        Ok(answers) => answers,
        Err(err) => {
            outln!("{}", not_committed(&err).to_json());
            bail!("the atomic batch was not committed: {err}");
        }
    };
    for answer in &answers {
        outln!("{}", answer.to_json());
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer for a command whose batch did not commit.
fn not_committed(err: &keyledger_ledger::Error) -> Answer {
    let code = match err {
        keyledger_ledger::Error::WriterStopped(_) => "writer_stopped",
        _ => "not_committed",
    };
    Answer::error(code, err.to_string())
}
