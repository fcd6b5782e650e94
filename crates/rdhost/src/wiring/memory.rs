//! Giving memory back when sessions end.
//!
//! Sessions allocate large, short-lived buffers (a 1280x800 frame is 4 MB, and each encode makes
//! a few hundred KB more) on many threads: the connection's, the stage's blocking encodes, the
//! RemoteFX tile workers, an X desktop's capture thread. glibc's malloc keeps what they free in
//! its arenas, and after the first frame-sized block is freed it raises its mmap threshold, so
//! later frames come from the arenas too. The host already trimmed when a connection ended, but
//! a session's desktop (canvas, stage, capture buffers) usually ends later, at logoff.
//!
//! Measured (`rdhost serve`, debug build, 20 x11 sessions of 1280x800 each logged on with the
//! headless client, animated, disconnected and logged off in turn; VmRSS after the 20th ended):
//! 17.8 MiB at start, 68.0 MiB at the end; with the arenas capped at 2 (`M_ARENA_MAX`) 65.5 MiB;
//! with a fixed 128 KiB mmap threshold 43.6 MiB (but every frame buffer then costs a fresh
//! mapping and its page faults while sessions run); one `malloc_trim(0)` after the sessions had
//! ended: 44.4 MiB. So: trim when a desktop ends, as when a connection does; nothing to pay while
//! sessions run. What stays (~20 MiB anonymous, reached with the first session and flat over the
//! next 19) is live, not free memory.

/// Return the free pages of every malloc arena to the system: after a connection or a session's
/// desktop has ended and dropped its buffers. Costs a few milliseconds.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
