//! The README is true: its Tour runs top to bottom, as written, in an empty directory with
//! the built `keyledger` on PATH, and every output line it shows is what the command printed.
//!
//! The Tour's ```` ```text ```` blocks are shell sessions: a line starting with `$ ` is a
//! command (a trailing `\` continues it on the next line); the lines after it, up to the next
//! command, are its output. Each shown output line must appear in what the command printed
//! (stdout and stderr together), in order; `…` in a shown line stands for any text (hashes,
//! times, keys differ from run to run), and a line `...` for lines left out. One bash runs
//! every command, so variables and background jobs carry from one to the next. A command's
//! shown output is waited for (a background `serve` prints its address once it listens),
//! never slept on. `KEYLEDGER_README_SHOW=1` prints what each command printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// One command of the Tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    /// The README line the command starts on, for messages.
    line: usize,
    command: String,
    shown: Vec<String>,
}

/// The Tour's steps, in order.
fn tour(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "## Tour")
        .expect("README has a Tour");
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut continuing = false;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if line.starts_with("## ") {
            break;
        }
        if line.starts_with("```") {
            in_block = *line == "```text" && !in_block;
            continuing = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if continuing {
            let step = steps.last_mut().expect("a command continues");
            step.command.push('\n');
            step.command.push_str(line);
            continuing = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                line: i + 1,
                command: command.to_owned(),
                shown: Vec::new(),
            });
            continuing = command.ends_with('\\');
        } else if let Some(step) = steps.last_mut() {
            step.shown.push(line.to_string());
        }
    }
    steps
}

/// Whether `printed` shows `shown`: `…` matches any text, everything else itself.
fn matches(shown: &str, printed: &str) -> bool {
    let parts: Vec<&str> = shown.trim_end().split('…').collect();
    let printed = printed.trim_end();
    let (first, rest) = parts.split_first().expect("split yields one part at least");
    let Some(mut tail) = printed.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last {
            return part.is_empty() || tail.ends_with(part);
        }
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.is_empty()
}

/// How many of `shown`'s checked lines appear in `printed`, in order.
fn matched(shown: &[String], printed: &[&str]) -> usize {
    let checked: Vec<&String> = shown.iter().filter(|l| l.trim() != "...").collect();
    let mut at = 0;
    for (n, want) in checked.iter().enumerate() {
        match printed[at..].iter().position(|p| matches(want, p)) {
            Some(found) => at += found + 1,
            None => return n,
        }
    }
    checked.len()
}

/// One bash, its output (stdout and stderr) going to a file the test reads.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    output: PathBuf,
}

impl Shell {
    fn start(dir: &Path, bin: &Path) -> Shell {
        let output = dir.join(".tour-output");
        let file = std::fs::File::create(&output).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("PATH", path)
            .env_remove("KEYLEDGER_DATA")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("bash runs");
        let stdin = child.stdin.take().unwrap();
        Shell {
            child,
            stdin,
            output,
        }
    }

    fn printed(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Runs step `n` and answers its exit status and what it printed, once the status is
    /// known and its shown output appeared (or the deadline passed).
    fn run(&mut self, n: usize, step: &Step) -> (i32, String) {
        let from = self.printed().len();
        let end = format!("@@tour-end {n} ");
        writeln!(self.stdin, "{{ {}\n}}\necho \"{end}$?\"", step.command).unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut status = None;
        let mut settled: Option<Instant> = None;
        loop {
            let all = self.printed();
            let mut printed = String::new();
            for line in all[from..].lines() {
                // The end marker follows output that did not end its line (curl's JSON).
                let (before, marker) = match line.find("@@tour-end ") {
                    Some(at) => (&line[..at], Some(&line[at..])),
                    None => (line, None),
                };
                if let Some(code) = marker.and_then(|m| m.strip_prefix(&end)) {
                    status = code.trim().parse().ok();
                }
                if marker.is_none() || !before.is_empty() {
                    printed.push_str(before);
                    printed.push('\n');
                }
            }
            let lines: Vec<&str> = printed.lines().collect();
            let shown_all = matched(&step.shown, &lines)
                == step.shown.iter().filter(|l| l.trim() != "...").count();
            if let (Some(code), true) = (status, shown_all) {
                return (code, printed);
            }
            // Once the command is done, output it shows may still come from a background
            // job (a `serve` says it stopped after `kill` returned): a little longer, then
            // judge what came.
            if status.is_some() && settled.is_none() {
                settled = Some(Instant::now() + Duration::from_secs(10));
            }
            if Instant::now() > deadline || settled.is_some_and(|s| Instant::now() > s) {
                return (status.unwrap_or(-1), printed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The Tour's background jobs (a `serve`) go with the shell's process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let steps = tour(&readme);
    assert!(steps.len() > 20, "the Tour has its commands: {steps:?}");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples")).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_keyledger"));
    let mut shell = Shell::start(dir.path(), bin.parent().unwrap());
    let show = std::env::var_os("KEYLEDGER_README_SHOW").is_some();
    for (n, step) in steps.iter().enumerate() {
        let (status, printed) = shell.run(n, step);
        if show {
            eprintln!("$ {}\n{printed}[exit {status}]", step.command);
        }
        assert_eq!(
            status, 0,
            "README.md:{}: `{}` failed; it printed:\n{printed}",
            step.line, step.command
        );
        let lines: Vec<&str> = printed.lines().collect();
        let checked: Vec<&String> = step.shown.iter().filter(|l| l.trim() != "...").collect();
        let found = matched(&step.shown, &lines);
        assert_eq!(
            found,
            checked.len(),
            "README.md:{}: `{}` did not print the line it shows:\n  {}\nit printed:\n{printed}",
            step.line,
            step.command,
            checked.get(found).map_or("", |l| l.as_str()),
        );
    }
}

#[test]
fn a_shown_line_is_matched_with_its_wildcards_and_in_order() {
    assert!(matches("head hash …", "head hash 96ca5bc6"));
    assert!(matches("a … b … c", "a 1 b 2 c"));
    assert!(!matches("a … b … c", "a 1 c 2 b"));
    assert!(!matches("chain ok: 148 events", "chain ok: 149 events"));
    assert!(matches("…ok", "everything ok"));
    let printed = ["one", "two", "three"];
    let shown = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(matched(&shown(&["one", "...", "three"]), &printed), 2);
    assert_eq!(matched(&shown(&["three", "one"]), &printed), 1);
}
