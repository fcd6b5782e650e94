//! The stage between one desktop and the terminals that show it.
//!
//! Every terminal showing a desktop takes a [`Feed`] from the desktop's [`Stage`]. Feeds with
//! the same [`FeedProfile`] (codec and request-size limit, everything that changes the bytes)
//! form a group, and a group has ONE canvas subscription and ONE [`Encoder`]: each change of the
//! canvas is encoded once per profile, however many terminals show it.
//!
//! # How a group works
//!
//! - **Demand-driven.** Nothing encodes on its own. A feed that asks for an update, has seen
//!   everything the group encoded, and finds the canvas changed since the group last took from
//!   it, starts the group's encode. Only one encode runs per group at a time; other feeds wait
//!   for it. The encode runs in `spawn_blocking` and publishes its result into the group by
//!   itself, so a terminal that stops waiting (a cancelled `next()`) loses nothing.
//! - **Newest state only.** The group keeps the bytes of its newest encode (the head) and, for
//!   the last [`Stage::HISTORY`] encodes, only which rectangles they changed. A feed that is
//!   one behind gets the head's bytes as they are. A feed that fell further behind skips the
//!   encodes it missed: it gets the head's bytes plus, ordered after them, a private encode of
//!   the rectangles it missed that the head does not cover, read from the canvas as it is now.
//!   Under a full-screen animation the head covers everything, so a slow terminal costs no
//!   encode at all; it just sees fewer frames. A feed that fell off the history entirely has
//!   missed "the whole screen". Nothing queues: memory is one encoded update per group, a
//!   bounded rectangle list per encode kept, and a bounded rectangle set per feed.
//! - **Joining.** A feed that joins a group which has not encoded yet gets the group's first
//!   encode, which is the whole screen (a new canvas subscription starts with the whole canvas
//!   as damage). A feed that joins later has missed the whole screen and gets it privately.
//! - **Sizes.** Every update says the canvas size it was encoded at. Whenever that size differs
//!   from the previous update's (and for the first update), the update repaints the whole
//!   screen, so a terminal that reactivates at the new size can write it as it is.
//! - **Errors.** A failed shared encode is reported once to each feed that reaches it and its
//!   damage is dropped, as a terminal's own failed encode always was: retrying the same pixels
//!   with the same encoder would fail again.
//!
//! Private encodes use a fresh encoder each time. That is sound for every profile: encoded
//! updates carry no state from one to the next (RemoteFX image-mode messages repeat their
//! sync, context and channel blocks; clients do not check the frame index).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdhost_desktop::{Canvas, CanvasUpdate, Damage, Frame, Rect, Size, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::encode::{CodecProfile, EncodeError, Encoder};

/// What terminals must have in common to share encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedProfile {
    pub codec: CodecProfile,
    /// The client's MultifragmentUpdate limit: it decides how updates are cut into strips.
    pub max_request_size: u32,
}

/// Encodes done so far and feeds attached, for tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Encodes of canvas changes, shared by every feed of a profile (all profiles, ever).
    pub shared_encodes: u64,
    /// Encodes for one feed only: joining late, catching up on what a skip missed, refreshes.
    pub private_encodes: u64,
    /// Feeds attached now.
    pub feeds: usize,
    /// Profiles with at least one feed now.
    pub profiles: usize,
    /// One entry per profile with feeds now, in no particular order.
    pub per_profile: Vec<ProfileStats>,
}

impl StageStats {
    pub fn profile(&self, profile: FeedProfile) -> Option<&ProfileStats> {
        self.per_profile.iter().find(|p| p.profile == profile)
    }
}

/// One profile's share of [`StageStats`], counted since its first feed joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileStats {
    pub profile: FeedProfile,
    pub feeds: usize,
    pub shared_encodes: u64,
    pub private_encodes: u64,
    /// Encodes whose damage the profile still remembers (at most [`Stage::HISTORY`]).
    pub retained_deltas: usize,
}

/// Fast-path update bytes for one terminal, to be written in order. `size` is the canvas size
/// they were encoded at: when it differs from the previous update's, the parts repaint the whole
/// screen at that size (a terminal showing another size reactivates first, then writes them).
#[derive(Debug, Clone)]
pub struct Update {
    pub size: Size,
    pub parts: Vec<Arc<[u8]>>,
}

/// The stage of one desktop: cheap to clone, shared by every terminal showing the desktop.
#[derive(Clone)]
pub struct Stage {
    inner: Arc<StageInner>,
}

struct StageInner {
    canvas: Arc<Canvas>,
    groups: Mutex<HashMap<FeedProfile, Arc<Group>>>,
    totals: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    shared: AtomicU64,
    private: AtomicU64,
}

impl Counters {
    fn count_shared(&self) {
        self.shared.fetch_add(1, Ordering::Relaxed);
    }
    fn count_private(&self) {
        self.private.fetch_add(1, Ordering::Relaxed);
    }
}

/// The feeds of one profile: one subscription, one encoder, the newest encode.
struct Group {
    profile: FeedProfile,
    canvas: Arc<Canvas>,
    state: Mutex<GroupState>,
    /// Ticks when an encode finishes, whether or not it found anything to encode.
    done: watch::Sender<u64>,
    counters: Counters,
    totals: Arc<Counters>,
}

struct GroupState {
    /// `None` while an encode runs: it has the subscription and the encoder.
    worker: Option<Worker>,
    /// The canvas generation read just before the last take from the subscription: a later
    /// generation means there may be something new to take.
    taken: Option<u64>,
    /// Sequence number of the newest encode; 0 before the first.
    head: u64,
    /// The last encodes, oldest first; only the newest keeps its bytes.
    history: VecDeque<Delta>,
    feeds: usize,
}

struct Worker {
    subscription: Subscription,
    encoder: Encoder,
}

/// One shared encode.
struct Delta {
    seq: u64,
    size: Size,
    /// The rectangles encoded (aligned as the encoder needs), exactly: coverage is judged on them.
    rects: Vec<Rect>,
    /// The encoded bytes while this is the head; `None` once superseded or when encoding failed.
    bytes: Option<Arc<[u8]>>,
    failed: Option<EncodeError>,
}

impl Stage {
    /// At most this many shared encodes are remembered per profile (their rectangles only); a
    /// feed further behind has missed the whole screen.
    pub const HISTORY: usize = 16;

    pub fn new(canvas: Arc<Canvas>) -> Stage {
        Stage {
            inner: Arc::new(StageInner { canvas, groups: Mutex::new(HashMap::new()), totals: Arc::new(Counters::default()) }),
        }
    }

    pub fn canvas(&self) -> &Arc<Canvas> {
        &self.inner.canvas
    }

    /// A terminal joins: its first update is the whole screen.
    pub fn feed(&self, profile: FeedProfile) -> Feed {
        let canvas = &self.inner.canvas;
        let mut groups = lock(&self.inner.groups);
        let group = Arc::clone(groups.entry(profile).or_insert_with(|| Arc::new(Group::new(profile, canvas, &self.inner.totals))));
        let mut state = lock(&group.state);
        state.feeds += 1;
        let seen = state.head;
        drop(state);
        drop(groups);
        let mut missed = Damage::new();
        // Before the group's first encode, that encode is the whole screen: wait for it.
        if seen > 0 {
            missed.add(canvas.size().rect());
        }
        Feed {
            stage: self.clone(),
            done: group.done.subscribe(),
            changes: canvas.changes(),
            group,
            seen,
            missed,
            shown: None,
            paused: false,
            private: None,
        }
    }

    /// Encodes done so far, per profile, and feeds attached.
    pub fn stats(&self) -> StageStats {
        let groups = lock(&self.inner.groups);
        let per_profile: Vec<ProfileStats> = groups
            .values()
            .map(|group| {
                let state = lock(&group.state);
                ProfileStats {
                    profile: group.profile,
                    feeds: state.feeds,
                    shared_encodes: group.counters.shared.load(Ordering::Relaxed),
                    private_encodes: group.counters.private.load(Ordering::Relaxed),
                    retained_deltas: state.history.len(),
                }
            })
            .collect();
        StageStats {
            shared_encodes: self.inner.totals.shared.load(Ordering::Relaxed),
            private_encodes: self.inner.totals.private.load(Ordering::Relaxed),
            feeds: per_profile.iter().map(|p| p.feeds).sum(),
            profiles: per_profile.len(),
            per_profile,
        }
    }
}

impl Group {
    fn new(profile: FeedProfile, canvas: &Arc<Canvas>, totals: &Arc<Counters>) -> Group {
        let worker = Worker { subscription: canvas.subscribe(), encoder: Encoder::new(profile.codec, profile.max_request_size) };
        Group {
            profile,
            canvas: Arc::clone(canvas),
            state: Mutex::new(GroupState { worker: Some(worker), taken: None, head: 0, history: VecDeque::new(), feeds: 0 }),
            done: watch::Sender::new(0),
            counters: Counters::default(),
            totals: Arc::clone(totals),
        }
    }

    /// Take what changed from the subscription, encode it and publish it as the new head.
    /// Runs on a blocking thread; the caller took `worker` out of the state.
    fn encode(&self, mut worker: Worker) {
        let generation = *self.canvas.changes().borrow();
        let align = worker.encoder.x_alignment();
        let mut taken: Option<(Size, Vec<Rect>)> = None;
        // A panicking encoder must not take the group down with it: every feed would wait forever.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let frame = worker.subscription.take_aligned(align)?;
            taken = Some((frame.size, frame.regions.iter().map(|r| r.rect).collect()));
            Some(worker.encoder.encode(&frame))
        }));
        let outcome = outcome.unwrap_or_else(|_| {
            worker.encoder = Encoder::new(self.profile.codec, self.profile.max_request_size);
            Some(Err(EncodeError::Codec { what: "shared frame", detail: "the encoder panicked".into() }))
        });
        let mut state = lock(&self.state);
        state.worker = Some(worker);
        state.taken = Some(state.taken.map_or(generation, |t| t.max(generation)));
        if let (Some((size, rects)), Some(outcome)) = (taken, outcome) {
            if let Some(previous) = state.history.back_mut() {
                previous.bytes = None;
            }
            state.head += 1;
            let (bytes, failed) = match outcome {
                Ok(bytes) => (Some(Arc::from(bytes)), None),
                Err(e) => {
                    warn!(profile = self.profile.codec.name(), error = %e, "shared encode failed; its damage is dropped");
                    (None, Some(e))
                }
            };
            let seq = state.head;
            state.history.push_back(Delta { seq, size, rects, bytes, failed });
            while state.history.len() > Stage::HISTORY {
                state.history.pop_front();
            }
            self.counters.count_shared();
            self.totals.count_shared();
        }
        drop(state);
        self.done.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One terminal's view of the stage. Dropping it leaves the stage.
pub struct Feed {
    stage: Stage,
    group: Arc<Group>,
    /// The newest shared encode this feed has been given (or skipped).
    seen: u64,
    /// What this feed is owed beyond the shared encodes: skipped encodes' rectangles not yet
    /// made up, refreshes, the whole screen on joining.
    missed: Damage,
    /// The size of the last update given, `None` before the first.
    shown: Option<Size>,
    paused: bool,
    done: watch::Receiver<u64>,
    changes: watch::Receiver<u64>,
    /// A private encode under way: its result is this feed's next update, even if the call
    /// that started it was cancelled.
    private: Option<JoinHandle<Result<Option<Update>, EncodeError>>>,
}

enum Step {
    Send(Update),
    Fail(EncodeError),
    Private(PrivateJob),
    Encode(Worker),
    /// Nothing to send after all (an empty encode): look again.
    Again,
    WaitEncode,
    WaitChange,
}

impl Feed {
    pub fn profile(&self) -> FeedProfile {
        self.group.profile
    }

    /// The canvas size now.
    pub fn size(&self) -> Size {
        self.group.canvas.size()
    }

    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Wait for what this terminal has not seen yet: the newest state, never a queue of old ones.
    ///
    /// Cancel-safe: if the future is dropped, nothing is lost (the damage is delivered by a
    /// later call; an encode it started finishes and is used). Encoding runs in
    /// `tokio::task::spawn_blocking`, never on the caller's thread. An error means one update
    /// was lost; the feed has moved past it and the next call goes on.
    ///
    /// While paused this never resolves: guard it in a `select!` with the paused flag.
    pub async fn next(&mut self) -> Result<Update, EncodeError> {
        if self.paused {
            std::future::pending::<()>().await;
        }
        loop {
            if let Some(task) = &mut self.private {
                let joined = task.await;
                self.private = None;
                let result = joined.unwrap_or_else(|e| Err(EncodeError::Codec { what: "private update", detail: e.to_string() }));
                match result {
                    Ok(Some(update)) => {
                        self.shown = Some(update.size);
                        return Ok(update);
                    }
                    Ok(None) => continue,
                    Err(e) => return Err(e),
                }
            }
            // Mark both watches seen before looking at the state: whatever happens after the
            // look wakes the waits below.
            self.done.borrow_and_update();
            let generation = *self.changes.borrow_and_update();
            match self.step(generation) {
                Step::Send(update) => {
                    self.shown = Some(update.size);
                    return Ok(update);
                }
                Step::Fail(e) => return Err(e),
                Step::Private(job) => self.private = Some(tokio::task::spawn_blocking(move || job.run())),
                Step::Encode(worker) => {
                    let group = Arc::clone(&self.group);
                    // Detached: the encode publishes into the group itself.
                    drop(tokio::task::spawn_blocking(move || group.encode(worker)));
                }
                Step::Again => {}
                // The watches' senders live in the group and the canvas, which this feed keeps
                // alive: they never close.
                Step::WaitEncode => {
                    let _ = self.done.changed().await;
                }
                Step::WaitChange => {
                    tokio::select! {
                        _ = self.done.changed() => {}
                        _ = self.changes.changed() => {}
                    }
                }
            }
        }
    }

    /// The client asked to repaint `rect` (Refresh Rect PDU), or its screen was reset
    /// (reactivation): include it in the next update.
    pub fn refresh(&mut self, rect: Rect) {
        self.missed.add(rect);
    }

    /// A paused feed (Suppress Output, or a viewer at control level NONE) takes nothing and
    /// costs nothing: it starts no encode and holds nothing back. Not calling `next()` has the
    /// same effect; the flag makes `next()` wait until resumed. Resuming behaves like a feed
    /// that fell behind: the next update is the newest state.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Decide what to do next, under the group's lock; never waits.
    fn step(&mut self, generation: u64) -> Step {
        let mut state = lock(&self.group.state);
        if self.seen < state.head {
            let Some(head) = state.history.back() else {
                self.seen = state.head;
                return Step::Again;
            };
            if state.history.front().is_some_and(|oldest| self.seen + 1 < oldest.seq) {
                // Skipped encodes fell off the history: what they changed is unknown.
                self.missed.add(head.size.rect());
            } else {
                for skipped in state.history.iter().filter(|d| d.seq > self.seen && d.seq < head.seq) {
                    for &rect in &skipped.rects {
                        self.missed.add(rect);
                    }
                }
            }
            if self.shown != Some(head.size) {
                self.missed.add(head.size.rect());
            }
            self.seen = head.seq;
            let covering: &[Rect] = if head.failed.is_some() { &[] } else { &head.rects };
            let bounds = head.size.rect();
            let uncovered: Vec<Rect> = self
                .missed
                .take()
                .into_iter()
                .map(|r| r.intersect(bounds))
                .filter(|&r| !r.is_empty() && !covering.iter().any(|&c| contains(c, r)))
                .collect();
            if let Some(e) = &head.failed {
                // What this feed was owed before the failure is still owed.
                for rect in uncovered {
                    self.missed.add(rect);
                }
                return Step::Fail(clone_error(e));
            }
            let bytes = head.bytes.clone().filter(|b| !b.is_empty());
            if uncovered.is_empty() {
                return match bytes {
                    Some(bytes) => Step::Send(Update { size: head.size, parts: vec![bytes] }),
                    None => Step::Again,
                };
            }
            return Step::Private(PrivateJob {
                group: Arc::clone(&self.group),
                size: Some(head.size),
                shown: self.shown,
                rects: uncovered,
                prefix: bytes,
            });
        }
        if !self.missed.is_empty() {
            return Step::Private(PrivateJob {
                group: Arc::clone(&self.group),
                size: None,
                shown: self.shown,
                rects: self.missed.take(),
                prefix: None,
            });
        }
        match state.worker.take() {
            None => Step::WaitEncode,
            Some(worker) if state.taken.is_none_or(|taken| generation > taken) => Step::Encode(worker),
            Some(worker) => {
                state.worker = Some(worker);
                Step::WaitChange
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut groups = lock(&self.stage.inner.groups);
        let mut state = lock(&self.group.state);
        state.feeds -= 1;
        let empty = state.feeds == 0;
        drop(state);
        // The last feed of a profile takes the group (its subscription and encoder) with it.
        if empty && groups.get(&self.group.profile).is_some_and(|g| Arc::ptr_eq(g, &self.group)) {
            groups.remove(&self.group.profile);
        }
    }
}

/// An encode for one feed: the rectangles it is owed, from the canvas as it is now, after the
/// shared bytes it is also getting (if any).
struct PrivateJob {
    group: Arc<Group>,
    /// The size of the shared bytes in `prefix`; `None`: whatever size the canvas has now.
    size: Option<Size>,
    /// The size of the feed's last update: if the new one differs it must repaint everything.
    shown: Option<Size>,
    rects: Vec<Rect>,
    prefix: Option<Arc<[u8]>>,
}

impl PrivateJob {
    /// `Ok(None)`: nothing to send (the canvas changed size under us; the shared encode of that
    /// resize repaints everything).
    fn run(self) -> Result<Option<Update>, EncodeError> {
        let canvas = &self.group.canvas;
        let profile = self.group.profile;
        let target = self.size.unwrap_or_else(|| canvas.size());
        let whole = self.shown != Some(target);
        let rects = if whole { vec![target.rect()] } else { self.rects };
        let mut parts: Vec<Arc<[u8]>> = self.prefix.into_iter().collect();
        let mut encoder = Encoder::new(profile.codec, profile.max_request_size);
        let align = encoder.x_alignment();
        let regions = (canvas.size() == target).then(|| {
            rects
                .iter()
                .map(|&rect| canvas.read_aligned(rect.intersect(target.rect()), align))
                .filter(|region: &CanvasUpdate| !region.rect.is_empty())
                .collect::<Vec<_>>()
        });
        // Checked again after reading: the pixels read must be of a canvas of `target` size.
        match regions.filter(|_| canvas.size() == target) {
            Some(regions) if !regions.is_empty() => {
                self.group.counters.count_private();
                self.group.totals.count_private();
                match encoder.encode(&Frame { size: target, resized: false, regions }) {
                    Ok(bytes) => {
                        if !bytes.is_empty() {
                            parts.push(Arc::from(bytes));
                        }
                    }
                    // The shared bytes alone still leave the terminal consistent unless they
                    // were meant to be completed into a whole screen.
                    Err(e) if parts.is_empty() || whole => return Err(e),
                    Err(e) => warn!(profile = profile.codec.name(), error = %e, "private encode failed; the shared part goes alone"),
                }
            }
            Some(_) => {}
            None if whole => return Ok(None),
            None => {}
        }
        Ok((!parts.is_empty()).then_some(Update { size: target, parts }))
    }
}

fn contains(outer: Rect, inner: Rect) -> bool {
    outer.x <= inner.x && outer.y <= inner.y && outer.right() >= inner.right() && outer.bottom() >= inner.bottom()
}

fn clone_error(e: &EncodeError) -> EncodeError {
    match e {
        EncodeError::Codec { what, detail } => EncodeError::Codec { what, detail: detail.clone() },
    }
}

/// The state under these locks is updated without panicking in between: a poisoned lock is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
