//! Standard output that never panics: `println!` panics when stdout is a closed pipe
//! (`keyledger verify | true`) or a full device (`> /dev/full`). Everything the CLI prints
//! goes through [`outln!`] or [`Stdout`], whose errors are [`StdoutError`]; `main` ends a
//! closed pipe quietly with exit 0, as Unix filters do, and any other write error with exit
//! 2 and a message.

use std::fmt;
use std::io::Write;

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct StdoutError(#[from] pub std::io::Error);

impl StdoutError {
    /// The reader went away (a closed pipe): not a failure of the command.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes one formatted line to standard output.
pub fn line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Writes text as it is (no newline added) to standard output.
pub fn text(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `println!` that returns a [`StdoutError`] (as an `anyhow::Error`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;

/// A buffered, locked standard output whose errors are [`StdoutError`].
pub struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout(std::io::BufWriter::new(std::io::stdout().lock()))
    }

    pub fn line(&mut self, args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
        self.0.write_fmt(args)?;
        Ok(self.0.write_all(b"\n")?)
    }

    pub fn flush(&mut self) -> Result<(), StdoutError> {
        Ok(self.0.flush()?)
    }
}

impl fmt::Debug for Stdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stdout")
    }
}

/// The exit code and message for an error that ended the command.
pub fn exit_for(err: &anyhow::Error) -> std::process::ExitCode {
    if let Some(stdout) = err.chain().find_map(|e| e.downcast_ref::<StdoutError>()) {
        if stdout.is_closed_pipe() {
            return std::process::ExitCode::SUCCESS;
        }
    }
    // eprintln! would panic on a closed stderr too: write and ignore failure.
    let _ = writeln!(std::io::stderr(), "error: {err:#}");
    std::process::ExitCode::from(2)
}
