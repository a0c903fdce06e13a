//! The command's output lines. `println!` panics when the reader has gone (`temper verify
//! --json | head -1`); here a closed pipe ends the command quietly with success, as Unix tools
//! end, and other write errors are reported once on stderr.

use std::io::Write;

/// Writes one line of output (see the module doc); [`out!`](crate::out) is the `println!` form.
pub fn line(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(2);
        }
    }
}

/// `println!` for the command's output, through [`line`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}
