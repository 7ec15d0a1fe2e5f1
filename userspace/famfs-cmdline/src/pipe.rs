//! A quiet end when the reader of standard output goes away (`famfs fsck --json | head -1`).
//!
//! A C tool dies of SIGPIPE there, silently. Rust programs ignore SIGPIPE, so the write fails
//! with EPIPE instead and `print!` panics ("failed printing to stdout: Broken pipe"). Restoring
//! the default SIGPIPE action takes an `unsafe` call (nix and rustix mark it so); instead, a
//! panic or an error met while standard output has lost its reader ends the program with
//! [`EXIT_BROKEN_PIPE`] and no message, which is what a shell shows for the C tool.

use std::error::Error;
use std::io;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// The exit status of a program that stopped because its standard output lost its reader: 128 +
/// SIGPIPE (13), what a shell reports for a program killed by SIGPIPE.
pub const EXIT_BROKEN_PIPE: i32 = 128 + 13;

/// Whether standard output is a pipe or socket whose reader has gone (a write would fail with
/// EPIPE). A file, a terminal or /dev/null never has.
pub fn stdout_reader_gone() -> bool {
    let out = io::stdout();
    let mut fds = [PollFd::new(&out, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

/// Makes a panic while standard output has lost its reader (a `print!` into a closed pipe) end
/// the program at once with [`EXIT_BROKEN_PIPE`] and no message; any other panic is reported as
/// before. Call at the start of `main`.
pub fn exit_quietly_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stdout_reader_gone() {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        report(info)
    }));
}

/// Whether `e` (or an error it wraps) is EPIPE from standard output: an I/O error of kind
/// BrokenPipe while standard output has lost its reader. A program then ends with
/// [`EXIT_BROKEN_PIPE`] and no message.
pub fn is_broken_stdout(e: &(dyn Error + 'static)) -> bool {
    broken_pipe_in(e) && stdout_reader_gone()
}

/// Whether `e` or an error it wraps is an I/O error of kind BrokenPipe.
fn broken_pipe_in(e: &(dyn Error + 'static)) -> bool {
    std::iter::successors(Some(e), |&e| e.source()).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error wrapping another, as a context does.
    #[derive(Debug)]
    struct Wrap(io::Error);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "writing: {}", self.0)
        }
    }

    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_broken_pipe_is_found_anywhere_in_the_chain() {
        let epipe = || io::Error::from_raw_os_error(32);
        assert!(broken_pipe_in(&epipe()));
        assert!(broken_pipe_in(&Wrap(epipe())));
        assert!(!broken_pipe_in(&Wrap(io::Error::from(
            io::ErrorKind::NotFound
        ))));
        assert!(!broken_pipe_in(&std::fmt::Error));
    }

    #[test]
    fn a_read_stdout_is_not_broken() {
        // The harness reads this process's standard output (or it is a terminal or a file):
        // whatever the error says, it is not a broken standard output.
        assert!(!stdout_reader_gone());
        assert!(!is_broken_stdout(&Wrap(io::Error::from_raw_os_error(32))));
    }
}
