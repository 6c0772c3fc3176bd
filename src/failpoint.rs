//! Failpoints for the crash tests: `FERRY_FAILPOINT=<name>` makes this process kill itself
//! with SIGKILL (as `kill -9` would: no destructor, no flush, no goodbye) when it reaches the
//! named point. Only tests set the variable; unset, a failpoint is one environment lookup
//! made once.
//!
//! Points: `delivering-recorded` (the ledger says a delivery is at its point of no return,
//! nothing visible yet), `delivered-unrecorded` (the file is at its destination, the ledger
//! does not know).

use std::sync::OnceLock;

/// Kills this process with SIGKILL if `FERRY_FAILPOINT` names `point`.
pub fn hit(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("FERRY_FAILPOINT").ok());
    if armed.as_deref() == Some(point) {
        eprintln!("ferry: failpoint {point}: kill -9");
        // SAFETY: kill(2) on our own process id has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
