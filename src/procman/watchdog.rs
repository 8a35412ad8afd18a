//! The app watchdog's own program: what `nexushub __watchdog APP_PID` runs (the
//! hidden subcommand each app child starts in its process group, see the module
//! doc of [`crate::procman`]).
//!
//! It is a fresh exec of the nexushub binary, not a fork left standing: a fork
//! would keep a copy-on-write image of nexushub (the TLS key, session-ticket
//! keys, requests in flight) for the app's whole life. It gets the app's pid in
//! argv, the watchdog pipe as fd 0, no environment and no other fd, and marks
//! itself non-dumpable before anything else.

use std::process::ExitCode;

use crate::sys;

/// The hidden subcommand's name, as `main` sees it in argv.
pub fn is_subcommand(arg: &str) -> bool {
    sys::WATCHDOG_SUBCOMMAND.to_str() == Ok(arg)
}

/// Runs the watchdog with the arguments after the subcommand (the app's pid);
/// returns only when it cannot watch (it otherwise SIGKILLs its group, itself
/// included).
pub fn main(args: &[&str]) -> ExitCode {
    // Nothing of nexushub's survived the exec, but what the watchdog learns later
    // is nobody's business either.
    let _ = sys::set_not_dumpable();
    let app = match args {
        [pid] => pid.parse::<u32>().ok(),
        _ => None,
    };
    let Some(app) = app else {
        eprintln!("nexushub: the app watchdog is started by nexushub itself, not by hand");
        return ExitCode::from(2);
    };
    match sys::run_watchdog(app) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("nexushub watchdog: {e}");
            ExitCode::from(1)
        }
    }
}
