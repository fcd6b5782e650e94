//! The stage between one desktop and the terminals that show it.
//!
//! Every terminal showing a desktop takes a [`Feed`] from the desktop's [`Stage`]. Feeds with
//! the same [`FeedProfile`] (codec, request-size limit and region: everything that changes the
//! bytes) form a group, and a group has ONE canvas subscription and ONE [`Encoder`]: each change of the
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
//! - **Sizes.** Every update says the size it was encoded at (the canvas', or its region's, see
//!   [`Feed::size`]). Whenever that size differs from the previous update's (and for the first
//!   update), the update repaints the whole screen, so a terminal that reactivates at the new
//!   size can write it as it is.
//! - **Errors.** A failed shared encode is reported once to each feed that reaches it and its
//!   damage is dropped, as a terminal's own failed encode always was: retrying the same pixels
//!   with the same encoder would fail again.
//!
//! - **Regions.** A profile with a region (Desktop Sharing's shared rectangle) shows only that
//!   part of the desktop, as if it were a desktop of its own: sizes, damage, refreshes and
//!   encoded coordinates are all relative to the region's top-left corner, and damage outside
//!   it costs no encode. A region reaching past the desktop's edges shows the part inside; a
//!   region wholly outside shows black at the region's size, never the rest of the desktop
//!   (it was not shared).
//!
//! # GFX profiles: H.264 chains, planar for the rest
//!
//! A [`CodecProfile::Avc420`] group makes EGFX frames ([`GfxCommand`]s) with one shared H.264
//! encoder. H.264 pictures form a chain: a feed may be given a shared access unit only if it
//! was given the previous one of the same encoder, or it is an IDR. So, per shared encode:
//!
//! - **Small changes** (typing: at most [`Stage::SMALL_CHANGE`] pixels in all) go as lossless
//!   `Planar` commands: sharp, tiny, no H.264 encode. The encoder's picture need not follow:
//!   the next H.264 picture is the whole canvas as it is then, and its rectangles (what the
//!   client copies out of it) are only what changed since the group's previous update, so the
//!   planar pixels are not overwritten by lossy ones unless they changed again.
//! - **Larger changes** are one H.264 picture of the whole screen whose rectangles are the
//!   change. A new size (and the first encode) starts a new encoder with an IDR.
//! - **Refinement.** What went lossy is remembered (bounded); once no H.264 picture was made
//!   for [`Stage::REFINE_AFTER`], the next encode sends all of it as `Planar`, so text ends
//!   sharp. A feed waiting for changes wakes for this by itself (a timer in [`Feed::next`]).
//! - **Feeds off the chain.** A feed that skipped an access unit (it fell behind, joined late,
//!   or saw another size) is never given a P-picture: it gets what the picture changed, with
//!   everything else it missed, as private `Planar` commands read from the canvas, and asks the
//!   group for an IDR, which the group makes at most once per [`Stage::KEY_INTERVAL`]; with it
//!   the feed rejoins the shared stream. Planar updates carry no state: skipping them costs
//!   only the private planar of what they changed.
//!
//! Private encodes use a fresh encoder each time. That is sound for every profile: encoded
//! updates carry no state from one to the next (RemoteFX image-mode messages repeat their
//! sync, context and channel blocks; clients do not check the frame index).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{Canvas, CanvasUpdate, Damage, Frame, Rect, Size, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::encode::{CodecProfile, EncodeError, Encoder};
use crate::gfx::{GfxCommand, planar_command};
use crate::h264::{H264Encoder, Picture};
use crate::tiles::{PixelsRef, TileHashes, cell_runs, crop, solid_colour};

/// What terminals must have in common to share encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedProfile {
    pub codec: CodecProfile,
    /// The client's MultifragmentUpdate limit: it decides how updates are cut into strips.
    pub max_request_size: u32,
    /// The part of the desktop shown, in desktop coordinates (the shared rectangle of Desktop
    /// Sharing); `None`: the whole desktop. See [`Feed::size`] for a region that does not fit.
    pub region: Option<Rect>,
}

impl FeedProfile {
    /// The whole desktop, for a terminal with this codec and request-size limit.
    pub const fn new(codec: CodecProfile, max_request_size: u32) -> Self {
        Self { codec, max_request_size, region: None }
    }

    /// The same, showing only `region` of the desktop (`None`: all of it).
    pub const fn with_region(self, region: Option<Rect>) -> Self {
        Self { region, ..self }
    }
}

/// What a feed shows of the canvas at one canvas size: `at` (canvas coordinates) appears at
/// (0,0) of the terminal's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    at: Rect,
    /// The region lies wholly outside the canvas: `at` has the region's size and shows black.
    dark: bool,
}

impl View {
    fn new(canvas: Size, region: Option<Rect>) -> View {
        let whole = canvas.rect();
        let Some(region) = region else {
            return View { at: whole, dark: false };
        };
        let shown = region.intersect(whole);
        if shown.is_empty() {
            // Never fall back to the whole desktop: the sharer did not share it.
            View { at: Rect::new(region.x, region.y, region.width.max(1), region.height.max(1)), dark: true }
        } else {
            View { at: shown, dark: false }
        }
    }

    fn size(self) -> Size {
        Size::new(self.at.width, self.at.height)
    }

    /// What this view shows of a canvas of `size` seen in place (all its `pixels`), in view
    /// coordinates; a dark view shows `black`, filled here.
    fn in_place<'a>(self, size: Size, pixels: &'a [u8], black: &'a mut Vec<u8>) -> PixelsRef<'a> {
        let rect = self.size().rect();
        if self.dark {
            *black = vec![0; rect.area() as usize * BYTES_PER_PIXEL];
            return PixelsRef { rect, data: black, stride: usize::from(rect.width) * BYTES_PER_PIXEL };
        }
        // `at` lies inside the canvas when the view is not dark.
        let stride = usize::from(size.width) * BYTES_PER_PIXEL;
        let first = usize::from(self.at.y) * stride + usize::from(self.at.x) * BYTES_PER_PIXEL;
        PixelsRef { rect, data: &pixels[first..], stride }
    }

    /// The part of a canvas rectangle this view shows, in the view's coordinates.
    fn project(self, rect: Rect) -> Rect {
        let shown = if self.dark { Rect::new(0, 0, 0, 0) } else { rect.intersect(self.at) };
        if shown.is_empty() {
            return Rect::new(0, 0, 0, 0);
        }
        Rect::new(shown.x - self.at.x, shown.y - self.at.y, shown.width, shown.height)
    }

    /// The pixels of `rect` (view coordinates, inside the view), read from the canvas now.
    /// `None` when the canvas shrank under us (its resize brings a repaint of its own).
    fn pixels(self, rect: Rect, canvas: &Canvas) -> Option<Vec<u8>> {
        let bytes = rect.area() as usize * BYTES_PER_PIXEL;
        if self.dark {
            return Some(vec![0; bytes]);
        }
        // `at` lies inside the canvas and `rect` inside `at`: this does not overflow.
        let wanted = Rect::new(rect.x.saturating_add(self.at.x), rect.y.saturating_add(self.at.y), rect.width, rect.height);
        let pixels = canvas.read(wanted);
        (pixels.len() == bytes).then_some(pixels)
    }
}

/// Widen `rect` (inside a screen `width` wide) with pixels of the screen so that an encoder
/// wanting widths in multiples of `align` can take it: x and width are aligned where the screen
/// allows; at the right edge the rectangle ends there and grows left just enough; a rectangle
/// spanning the whole (unaligned) width, or already a multiple of `align` wide, stays as it is.
/// The encoder pads what is left unaligned (see [`Encoder::x_alignment`]).
fn fit(rect: Rect, align: u16, width: u16) -> Rect {
    let (a, width) = (u32::from(align), u32::from(width));
    if a <= 1 || rect.is_empty() || width < a || u32::from(rect.width) % a == 0 {
        return rect;
    }
    let left = u32::from(rect.x) / a * a;
    let right = rect.right().div_ceil(a) * a;
    let (left, w) = if right <= width {
        (left, right - left)
    } else {
        let w = width.saturating_sub(u32::from(rect.x)).div_ceil(a).saturating_mul(a).min(width);
        (width - w, w)
    };
    Rect::new(left as u16, rect.y, w as u16, rect.height)
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
    /// GFX: the bit rate its H.264 encoder aims at, the lowest its feeds asked for (`None`:
    /// none asked; by screen area).
    pub h264_bitrate: Option<u32>,
}

/// What one terminal is to show next. `size` is the screen size it was encoded at (the
/// canvas', or its region's, see [`Feed::size`]): when it differs from the previous update's,
/// the update repaints the whole screen at that size (a terminal showing another size
/// reactivates first, or for GFX resets its surface, then writes it).
///
/// For a GFX profile ([`CodecProfile::Avc420`]) an update is one EGFX frame: StartFrame, the
/// `gfx` commands in order, EndFrame; `parts` is empty. For every other profile `parts` are
/// fast-path update bytes to write in order and `gfx` is empty.
#[derive(Debug, Clone)]
pub struct Update {
    pub size: Size,
    pub parts: Vec<Arc<[u8]>>,
    pub gfx: Vec<Arc<GfxCommand>>,
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
    /// GFX: a feed off the H.264 chain asked for an IDR.
    key_wanted: bool,
    /// GFX: when the last IDR was made (IDRs are rate-limited to one per [`Stage::KEY_INTERVAL`]).
    last_key: Option<Instant>,
    /// GFX: something went lossy; refine it (as planar) once no H.264 picture followed by then.
    refine_at: Option<Instant>,
    /// GFX: the H.264 bit rates feeds asked for, by feed; the encoder takes the lowest, so
    /// the slowest terminal of the group sets the pace (none: by screen area).
    bitrates: HashMap<u64, u32>,
    /// The number the next feed of this group gets (the key of `bitrates`).
    next_feed: u64,
}

struct Worker {
    subscription: Subscription,
    encoder: Encoder,
    /// The view of the last shared encode, `None` before the first: an encode at another view
    /// (the first, or the canvas resized) repaints the whole view.
    view: Option<View>,
    /// The H.264 side of a GFX profile.
    gfx: GfxWorker,
    /// Fast-path profiles: each cell of the view as last encoded (tile differencing).
    tiles: TileHashes,
}

/// The shared H.264 encoder of a GFX group and what it sent lossy.
#[derive(Default)]
struct GfxWorker {
    /// `None` before the first picture, after a failure, and at sizes H.264 cannot carry.
    h264: Option<H264Encoder>,
    /// A size H.264 cannot carry (too large): everything goes planar, without retrying each time.
    impossible: Option<Size>,
    /// Which encoder: bumped for each new one (a chain never spans two).
    stream: u64,
    /// The number of the last access unit of `stream`.
    index: u64,
    /// What was sent lossy since the last refinement (view coordinates, bounded).
    lossy: Damage,
    /// The next H.264 picture, converted from the canvas in place.
    picture: Picture,
}

/// An H.264 access unit's place in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AvcLink {
    stream: u64,
    index: u64,
    key: bool,
}

/// What a shared encode produced.
#[derive(Clone)]
enum Payload {
    Bytes(Arc<[u8]>),
    Gfx(Vec<Arc<GfxCommand>>),
}

impl Payload {
    fn into_update(self, size: Size) -> Update {
        match self {
            Payload::Bytes(bytes) => Update { size, parts: vec![bytes], gfx: Vec::new() },
            Payload::Gfx(gfx) => Update { size, parts: Vec::new(), gfx },
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Payload::Bytes(b) => b.is_empty(),
            Payload::Gfx(c) => c.is_empty(),
        }
    }
}

/// One shared encode.
struct Delta {
    seq: u64,
    size: Size,
    /// The rectangles encoded (aligned as the encoder needs, in the view's coordinates),
    /// exactly: coverage is judged on them.
    rects: Vec<Rect>,
    /// The encoded bytes while this is the head; `None` once superseded or when encoding failed.
    bytes: Option<Payload>,
    failed: Option<EncodeError>,
    /// GFX: the H.264 access unit among `bytes`, if any.
    avc: Option<AvcLink>,
}

impl Stage {
    /// At most this many shared encodes are remembered per profile (their rectangles only); a
    /// feed further behind has missed the whole screen.
    pub const HISTORY: usize = 16;

    /// GFX: a change of at most this many pixels in all goes as lossless planar, not H.264.
    /// Measured (examples/h264_speed.rs): planar of text costs ~3.5 ms and ~55 KiB per 100k
    /// pixels, an H.264 picture of a 1280x800 terminal ~4-7 ms and ~40 KiB whatever changed.
    /// 32k pixels (a typed line across 1280 pixels is 20k) stay near 1 ms and 60 KiB.
    pub const SMALL_CHANGE: u32 = 32 * 1024;

    /// GFX: what went lossy is refined this long after the last H.264 picture.
    pub const REFINE_AFTER: Duration = Duration::from_millis(150);

    /// GFX: at most one IDR per group this often (feeds off the chain get planar meanwhile).
    pub const KEY_INTERVAL: Duration = Duration::from_secs(1);

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
        state.next_feed += 1;
        let id = state.next_feed;
        let seen = state.head;
        drop(state);
        drop(groups);
        let mut missed = Damage::new();
        // Before the group's first encode, that encode is the whole screen: wait for it.
        if seen > 0 {
            missed.add(View::new(canvas.size(), profile.region).size().rect());
        }
        Feed {
            id,
            stage: self.clone(),
            done: group.done.subscribe(),
            changes: canvas.changes(),
            group,
            seen,
            missed,
            shown: None,
            chain: None,
            paused: false,
            hidden: false,
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
                    h264_bitrate: state.bitrates.values().min().copied(),
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
        let worker = Worker {
            subscription: canvas.subscribe(),
            encoder: Encoder::new(profile.codec, profile.max_request_size),
            view: None,
            gfx: GfxWorker::default(),
            tiles: TileHashes::default(),
        };
        Group {
            profile,
            canvas: Arc::clone(canvas),
            state: Mutex::new(GroupState {
                worker: Some(worker),
                taken: None,
                head: 0,
                history: VecDeque::new(),
                feeds: 0,
                key_wanted: false,
                last_key: None,
                refine_at: None,
                bitrates: HashMap::new(),
                next_feed: 0,
            }),
            done: watch::Sender::new(0),
            counters: Counters::default(),
            totals: Arc::clone(totals),
        }
    }

    /// Take what changed from the subscription, encode it and publish it as the new head.
    /// Runs on a blocking thread; the caller took `worker` out of the state. `refine`: for a
    /// GFX profile, the time to refine what went lossy has come.
    fn encode(&self, mut worker: Worker, refine: bool) {
        let generation = *self.canvas.changes().borrow();
        let now = Instant::now();
        let (key, bitrate) = {
            let state = lock(&self.state);
            (state.key_wanted && state.last_key.is_none_or(|t| now.duration_since(t) >= Stage::KEY_INTERVAL), state.bitrates.values().min().copied())
        };
        let mut taken: Option<(Size, Vec<Rect>)> = None;
        // A panicking encoder must not take the group down with it: every feed would wait forever.
        let outcome = catch_unwind(AssertUnwindSafe(|| match self.profile.codec {
            CodecProfile::Avc420 => self.gfx_frame(&mut worker, GfxAsk { refine, key, bitrate }, &mut taken),
            _ => self.fastpath_frame(&mut worker, &mut taken).map(|r| r.map(|bytes| (Payload::Bytes(Arc::from(bytes)), None))),
        }));
        let outcome = outcome.unwrap_or_else(|_| {
            worker.encoder = Encoder::new(self.profile.codec, self.profile.max_request_size);
            worker.view = None;
            worker.gfx.h264 = None;
            Some(Err(EncodeError::Codec { what: "shared frame", detail: "the encoder panicked".into() }))
        });
        let mut state = lock(&self.state);
        state.taken = Some(state.taken.map_or(generation, |t| t.max(generation)));
        if let (Some((size, rects)), Some(outcome)) = (taken, outcome) {
            if let Some(previous) = state.history.back_mut() {
                previous.bytes = None;
            }
            state.head += 1;
            let (bytes, failed, avc) = match outcome {
                Ok((bytes, avc)) => (Some(bytes), None, avc),
                Err(e) => {
                    warn!(profile = self.profile.codec.name(), error = %e, "shared encode failed; its damage is dropped");
                    (None, Some(e), None)
                }
            };
            if let Some(link) = avc {
                if link.key {
                    state.last_key = Some(now);
                    state.key_wanted = false;
                }
                state.refine_at = Some(now + Stage::REFINE_AFTER);
            }
            let seq = state.head;
            state.history.push_back(Delta { seq, size, rects, bytes, failed, avc });
            while state.history.len() > Stage::HISTORY {
                state.history.pop_front();
            }
            self.counters.count_shared();
            self.totals.count_shared();
        }
        if worker.gfx.lossy.is_empty() {
            state.refine_at = None;
        }
        state.worker = Some(worker);
        drop(state);
        self.done.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A fast-path profile's shared encode: the damage, encoded by the profile's encoder. It is
    /// read where it lies, under the canvas lock: hashed for tile differencing and encoded with
    /// no copy of the screen in between (4 MB a frame at 1280x800 when all of it moves, and the
    /// page faults of a fresh buffer for it). The desktop waits meanwhile; it draws into the
    /// canvas again as soon as the encode is done, and its damage goes in the next one.
    fn fastpath_frame(&self, worker: &mut Worker, taken: &mut Option<(Size, Vec<Rect>)>) -> Option<Result<Vec<u8>, EncodeError>> {
        let Worker { subscription, encoder, view: last_view, tiles, .. } = worker;
        let (region, align) = (self.profile.region, encoder.x_alignment());
        subscription
            .take_in_place(|canvas| {
                let view = View::new(canvas.size, region);
                let whole = *last_view != Some(view);
                if whole {
                    tiles.reset(view.size());
                }
                let mut black = Vec::new();
                let pixels = view.in_place(canvas.size, canvas.pixels, &mut black);
                let rects = if whole {
                    vec![view.size().rect()]
                } else {
                    canvas.aligned_rects(align).map(|r| fit(view.project(r), align, view.size().width)).filter(|r| !r.is_empty()).collect()
                };
                let rects = tiles.changed(pixels, rects, whole);
                // Damage only outside the region, or pixels as they were: nothing to encode or publish.
                if rects.is_empty() {
                    return None;
                }
                if whole && view.dark {
                    warn!(?region, canvas = ?canvas.size, "the shared region lies outside the desktop; its viewers see black");
                }
                *last_view = Some(view);
                let regions: Vec<PixelsRef<'_>> = rects.iter().map(|&r| pixels.part(r)).collect();
                let encoded = encoder.encode_pixels(view.size(), &regions);
                *taken = Some((view.size(), rects));
                Some(encoded)
            })
            .flatten()
    }

    /// A GFX profile's shared encode (see the module docs): small changes and refinements as
    /// planar, the rest as one H.264 picture of the whole screen. The damage is read where it
    /// lies: flat cells are found and the picture converted straight from the canvas, under its
    /// lock, with no copy of the screen in between (4 MB a frame at 1280x800 when all of it moves).
    fn gfx_frame(&self, worker: &mut Worker, ask: GfxAsk, taken: &mut Option<(Size, Vec<Rect>)>) -> Option<Result<(Payload, Option<AvcLink>), EncodeError>> {
        let Worker { subscription, view: last_view, gfx, .. } = worker;
        let (region, last_view, impossible, picture) = (self.profile.region, *last_view, gfx.impossible, &mut gfx.picture);
        let read = subscription.take_in_place(|canvas| {
            let view = View::new(canvas.size, region);
            let whole = last_view != Some(view);
            let mut black = Vec::new();
            let pixels = view.in_place(canvas.size, canvas.pixels, &mut black);
            // Flat cells go as solid fills, cut out of what is left to encode (not on a new
            // view: its first picture paints everything).
            let mut fills = Vec::new();
            let rest = if whole {
                vec![view.size().rect()]
            } else {
                let rects = canvas.rects.iter().map(|&r| view.project(r)).filter(|r| !r.is_empty()).collect();
                solid_fills(rects, pixels, &mut fills)
            };
            let area: u64 = rest.iter().map(|r| r.area()).sum();
            let changes = if !whole && (area <= u64::from(Stage::SMALL_CHANGE) || impossible == Some(view.size())) {
                Changes::Pixels(rest.into_iter().map(|rect| CanvasUpdate { rect, pixels: crop(pixels, rect) }).collect())
            } else {
                picture.convert(pixels.data, pixels.stride, view.size());
                Changes::Picture(rest)
            };
            (view, whole, fills, changes)
        });
        let Some((view, whole, fills, changes)) = read else {
            // Nothing drawn; a refinement may be due. (A new view always comes with damage: a
            // resize repaints.)
            let view = View::new(self.canvas.size(), region);
            return if worker.view == Some(view) { self.gfx_changes(worker, view, false, Changes::Pixels(Vec::new()), ask, taken) } else { None };
        };
        let rest = self.gfx_changes(worker, view, whole, changes, ask, taken);
        with_fills(rest, fills, view.size(), taken)
    }

    /// The part of a GFX encode that is not solid fills: small changes and refinements as
    /// planar, the rest as one H.264 picture of the whole screen.
    fn gfx_changes(
        &self,
        worker: &mut Worker,
        view: View,
        whole: bool,
        changes: Changes,
        ask: GfxAsk,
        taken: &mut Option<(Size, Vec<Rect>)>,
    ) -> Option<Result<(Payload, Option<AvcLink>), EncodeError>> {
        let gfx = &mut worker.gfx;
        let refine = ask.refine && !whole && !gfx.lossy.is_empty();
        if matches!(&changes, Changes::Pixels(regions) if regions.is_empty()) && !refine {
            return None;
        }
        if whole {
            if view.dark {
                warn!(region = ?self.profile.region, "the shared region lies outside the desktop; its viewers see black");
            }
            gfx.h264 = None;
            gfx.impossible = None;
            gfx.lossy.clear();
        }
        worker.view = Some(view);
        let size = view.size();
        let rects = match changes {
            Changes::Pixels(mut regions) => {
                if refine || gfx.impossible == Some(size) {
                    // After the change itself: these pixels are read later, so they are newer.
                    for rect in gfx.lossy.take() {
                        if let Some(pixels) = view.pixels(rect, &self.canvas) {
                            regions.push(CanvasUpdate { rect, pixels });
                        }
                    }
                }
                return planar_frame(regions, size, taken);
            }
            Changes::Picture(rects) => rects,
        };
        if gfx.h264.as_ref().is_none_or(|e| e.size() != size) {
            match H264Encoder::new(size) {
                Ok(encoder) => {
                    gfx.h264 = Some(encoder);
                    gfx.stream += 1;
                    gfx.index = 0;
                }
                Err(e) => {
                    warn!(?size, error = %e, "no H.264 at this size; its updates go planar");
                    gfx.impossible = Some(size);
                    gfx.h264 = None;
                    let pixels = view.pixels(size.rect(), &self.canvas)?;
                    return planar_frame(vec![CanvasUpdate { rect: size.rect(), pixels }], size, taken);
                }
            }
        }
        let encoder = gfx.h264.as_mut()?;
        if let Err(e) = encoder.set_bitrate(ask.bitrate.unwrap_or_else(|| H264Encoder::default_bitrate(size))) {
            warn!(error = %e, "the H.264 bit rate stays as it was");
        }
        if ask.key {
            encoder.request_key_frame();
        }
        *taken = Some((size, rects.clone()));
        match encoder.encode_picture(&gfx.picture) {
            Ok(unit) => {
                gfx.index += 1;
                for &rect in &rects {
                    gfx.lossy.add(rect);
                }
                let link = AvcLink { stream: gfx.stream, index: gfx.index, key: unit.key };
                let command = GfxCommand::Avc420 { annexb: unit.annexb, rects, qp: unit.qp, key: unit.key };
                Some(Ok((Payload::Gfx(vec![Arc::new(command)]), Some(link))))
            }
            Err(e) => {
                // OpenH264's state is unknown after a failure: the next picture starts a new stream.
                gfx.h264 = None;
                Some(Err(e))
            }
        }
    }
}

/// What a GFX encode read from the canvas: small changes with their pixels, or the rectangles a
/// picture of the whole view (converted into the group's [`Picture`]) brings.
enum Changes {
    Pixels(Vec<CanvasUpdate>),
    Picture(Vec<Rect>),
}

/// Take the cells of `rects` (of `pixels`) that are all one colour out into `fills` (colour,
/// rectangle; neighbours of one colour in a band of cells merged), and return the rest.
fn solid_fills(rects: Vec<Rect>, pixels: PixelsRef<'_>, fills: &mut Vec<([u8; 4], Rect)>) -> Vec<Rect> {
    let mut rest = Vec::with_capacity(rects.len());
    for rect in rects {
        rest.extend(cell_runs(rect, |part| {
            let Some(colour) = solid_colour(pixels, part) else {
                return false;
            };
            match fills.last_mut() {
                Some((c, r)) if *c == colour && (r.y, r.height) == (part.y, part.height) && r.right() == u32::from(part.x) => r.width += part.width,
                _ => fills.push((colour, part)),
            }
            true
        }));
    }
    rest
}

/// A GFX encode's `rest` with the solid `fills` in front: fills alone when nothing else
/// changed; what `taken` records covers both.
fn with_fills(
    rest: Option<Result<(Payload, Option<AvcLink>), EncodeError>>,
    fills: Vec<([u8; 4], Rect)>,
    size: Size,
    taken: &mut Option<(Size, Vec<Rect>)>,
) -> Option<Result<(Payload, Option<AvcLink>), EncodeError>> {
    if fills.is_empty() {
        return rest;
    }
    let mut commands: Vec<Arc<GfxCommand>> = Vec::new();
    let mut by_colour: Vec<([u8; 4], Vec<Rect>)> = Vec::new();
    for &(colour, rect) in &fills {
        match by_colour.iter_mut().find(|(c, _)| *c == colour) {
            Some((_, rects)) => rects.push(rect),
            None => by_colour.push((colour, vec![rect])),
        }
    }
    for (colour, rects) in by_colour {
        commands.push(Arc::new(GfxCommand::SolidFill { bgr: [colour[0], colour[1], colour[2]], rects }));
    }
    let filled = fills.iter().map(|&(_, rect)| rect);
    match rest {
        None => {
            *taken = Some((size, filled.collect()));
            Some(Ok((Payload::Gfx(commands), None)))
        }
        Some(Ok((Payload::Gfx(more), link))) => {
            commands.extend(more);
            if let Some((_, rects)) = taken {
                rects.extend(filled);
            }
            Some(Ok((Payload::Gfx(commands), link)))
        }
        other => other,
    }
}

/// What a GFX encode was asked for, decided under the group's lock.
#[derive(Debug, Clone, Copy)]
struct GfxAsk {
    refine: bool,
    /// A feed asked for an IDR and the rate limit allows one.
    key: bool,
    bitrate: Option<u32>,
}

/// `regions` as planar commands (one each), published at `size`.
fn planar_frame(regions: Vec<CanvasUpdate>, size: Size, taken: &mut Option<(Size, Vec<Rect>)>) -> Option<Result<(Payload, Option<AvcLink>), EncodeError>> {
    if regions.is_empty() {
        return None;
    }
    *taken = Some((size, regions.iter().map(|r| r.rect).collect()));
    let commands: Result<Vec<_>, _> = regions.iter().map(|r| planar_command(r).map(Arc::new)).collect();
    Some(commands.map(|c| (Payload::Gfx(c), None)))
}

/// One terminal's view of the stage. Dropping it leaves the stage.
pub struct Feed {
    /// This feed's number within its group.
    id: u64,
    stage: Stage,
    group: Arc<Group>,
    /// The newest shared encode this feed has been given (or skipped).
    seen: u64,
    /// What this feed is owed beyond the shared encodes: skipped encodes' rectangles not yet
    /// made up, refreshes, the whole screen on joining.
    missed: Damage,
    /// The size of the last update given, `None` before the first.
    shown: Option<Size>,
    /// GFX: the last H.264 access unit given; the next may be given only if it follows it.
    chain: Option<AvcLink>,
    paused: bool,
    /// Shown nothing at all, whatever `paused` says (a sharing attendee at control level none):
    /// the terminal pauses and resumes for its own reasons, this stays.
    hidden: bool,
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
    /// Start the group's encode; `true`: a GFX refinement is due.
    Encode(Worker, bool),
    /// Nothing to send after all (an empty encode): look again.
    Again,
    WaitEncode,
    /// Wait for a change, or until the given time (a GFX refinement).
    WaitChange(Option<Instant>),
}

impl Feed {
    pub fn profile(&self) -> FeedProfile {
        self.group.profile
    }

    /// The size of what this feed shows now: the canvas', or its region's. A region reaching
    /// past the canvas shows the part inside it; a region wholly outside shows black at the
    /// region's own size (at least 1x1), never the rest of the desktop.
    pub fn size(&self) -> Size {
        View::new(self.group.canvas.size(), self.group.profile.region).size()
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
    ///
    /// For a GFX profile a waiting feed also wakes when a refinement is due (see the module
    /// docs) and starts it, so a quiet screen ends lossless without a thread per group.
    pub async fn next(&mut self) -> Result<Update, EncodeError> {
        if self.paused || self.hidden {
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
                Step::Encode(worker, refine) => {
                    let group = Arc::clone(&self.group);
                    // Detached: the encode publishes into the group itself.
                    drop(tokio::task::spawn_blocking(move || group.encode(worker, refine)));
                }
                Step::Again => {}
                // The watches' senders live in the group and the canvas, which this feed keeps
                // alive: they never close.
                Step::WaitEncode => {
                    let _ = self.done.changed().await;
                }
                Step::WaitChange(None) => {
                    tokio::select! {
                        _ = self.done.changed() => {}
                        _ = self.changes.changed() => {}
                    }
                }
                Step::WaitChange(Some(at)) => {
                    tokio::select! {
                        _ = self.done.changed() => {}
                        _ = self.changes.changed() => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
            }
        }
    }

    /// The client asked to repaint `rect` (Refresh Rect PDU), or its screen was reset
    /// (reactivation): include it in the next update. `rect` is in the client's coordinates,
    /// which for a region are relative to its top-left corner.
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

    /// GFX: the terminal's H.264 decoder starts afresh (a new surface, a reset graphics
    /// pipeline): the whole screen is owed, and no H.264 picture is given before an IDR
    /// (planar meanwhile; the group is asked for one).
    pub fn restart_stream(&mut self) {
        self.chain = None;
        self.missed.add(self.size().rect());
    }

    /// GFX: the bit rate this terminal can take (`None`: no limit of its own). The profile's
    /// shared H.264 encoder aims at the lowest any of its feeds asked for, from its next
    /// picture; with none, by screen area ([`H264Encoder::default_bitrate`]).
    pub fn set_bitrate(&self, bps: Option<u32>) {
        let mut state = lock(&self.group.state);
        match bps {
            Some(bps) => state.bitrates.insert(self.id, bps),
            None => state.bitrates.remove(&self.id),
        };
    }

    /// A hidden feed is a paused one that the terminal's own pausing and resuming (Suppress
    /// Output, a sharing pause) cannot resume: it never yields an update.
    pub fn set_hidden(&mut self, hidden: bool) {
        self.hidden = hidden;
    }

    /// Whether [`set_hidden`](Self::set_hidden) hid this feed: a terminal that replaces its feed
    /// (another codec for the same view) hides the new one too.
    pub fn is_hidden(&self) -> bool {
        self.hidden
    }

    /// Decide what to do next, under the group's lock; never waits.
    fn step(&mut self, generation: u64) -> Step {
        let mut guard = lock(&self.group.state);
        // Fields borrowed apart: the head is read while a key frame is asked for.
        let state = &mut *guard;
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
            // An H.264 picture this feed cannot decode (it missed the one before) is not given:
            // what it changed is owed as planar, and the group is asked for an IDR.
            let decodable = head.avc.is_none_or(|link| {
                link.key || self.chain.is_some_and(|c| c.stream == link.stream && c.index + 1 == link.index)
            });
            if !decodable && head.failed.is_none() {
                for &rect in &head.rects {
                    self.missed.add(rect);
                }
                state.key_wanted = true;
            }
            let covering: &[Rect] = if head.failed.is_some() || !decodable { &[] } else { &head.rects };
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
            let bytes = head.bytes.clone().filter(|b| !b.is_empty() && decodable);
            if bytes.is_some()
                && let Some(link) = head.avc
            {
                self.chain = Some(link);
            }
            if uncovered.is_empty() {
                return match bytes {
                    Some(bytes) => Step::Send(bytes.into_update(head.size)),
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
        let refine_due = state.refine_at.is_some_and(|at| Instant::now() >= at);
        match state.worker.take() {
            None => Step::WaitEncode,
            Some(worker) if state.taken.is_none_or(|taken| generation > taken) => Step::Encode(worker, refine_due),
            Some(worker) if refine_due => Step::Encode(worker, true),
            Some(worker) => {
                state.worker = Some(worker);
                Step::WaitChange(state.refine_at)
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut groups = lock(&self.stage.inner.groups);
        let mut state = lock(&self.group.state);
        state.feeds -= 1;
        state.bitrates.remove(&self.id);
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
    prefix: Option<Payload>,
}

impl PrivateJob {
    /// `Ok(None)`: nothing to send (the canvas changed size under us; the shared encode of that
    /// resize repaints everything).
    fn run(self) -> Result<Option<Update>, EncodeError> {
        let canvas = &self.group.canvas;
        let profile = self.group.profile;
        let view = View::new(canvas.size(), profile.region);
        let target = self.size.unwrap_or(view.size());
        let whole = self.shown != Some(target);
        let rects = if whole { vec![target.rect()] } else { self.rects };
        if profile.codec == CodecProfile::Avc420 {
            return self.group.private_gfx(view, target, whole, &rects, self.prefix);
        }
        let mut parts: Vec<Arc<[u8]>> = match self.prefix {
            Some(Payload::Bytes(bytes)) => vec![bytes],
            _ => Vec::new(),
        };
        let mut encoder = Encoder::new(profile.codec, profile.max_request_size);
        let align = encoder.x_alignment();
        let regions = (view.size() == target).then(|| {
            rects
                .iter()
                .map(|&rect| fit(rect.intersect(target.rect()), align, target.width))
                .filter(|rect| !rect.is_empty())
                .filter_map(|rect| view.pixels(rect, canvas).map(|pixels| CanvasUpdate { rect, pixels }))
                .collect::<Vec<_>>()
        });
        // Checked again after reading: the pixels read must be of the view of `target` size.
        match regions.filter(|_| View::new(canvas.size(), profile.region) == view) {
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
        Ok((!parts.is_empty()).then_some(Update { size: target, parts, gfx: Vec::new() }))
    }
}

impl Group {
    /// A GFX feed's private update: the shared commands it is given (if any), then `rects` as
    /// planar commands read from the canvas now.
    fn private_gfx(&self, view: View, target: Size, whole: bool, rects: &[Rect], prefix: Option<Payload>) -> Result<Option<Update>, EncodeError> {
        let canvas = &self.canvas;
        let mut gfx = match prefix {
            Some(Payload::Gfx(commands)) => commands,
            _ => Vec::new(),
        };
        let regions = (view.size() == target).then(|| {
            rects
                .iter()
                .map(|&rect| rect.intersect(target.rect()))
                .filter(|rect| !rect.is_empty())
                .filter_map(|rect| view.pixels(rect, canvas).map(|pixels| CanvasUpdate { rect, pixels }))
                .collect::<Vec<_>>()
        });
        match regions.filter(|_| View::new(canvas.size(), self.profile.region) == view) {
            Some(regions) if !regions.is_empty() => {
                self.counters.count_private();
                self.totals.count_private();
                let planar: Result<Vec<_>, _> = regions.iter().map(|r| planar_command(r).map(Arc::new)).collect();
                match planar {
                    Ok(planar) => gfx.extend(planar),
                    // An H.264 picture given must reach the terminal, or its chain breaks.
                    Err(e) if gfx.is_empty() => return Err(e),
                    Err(e) => warn!(error = %e, "private planar failed; the shared part goes alone"),
                }
            }
            Some(_) => {}
            None if whole && gfx.is_empty() => return Ok(None),
            None => {}
        }
        Ok((!gfx.is_empty()).then_some(Update { size: target, parts: Vec::new(), gfx }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_aligns_inside_the_screen_and_grows_left_at_its_edge() {
        for (rect, width, expected) in [
            (Rect::new(5, 0, 3, 2), 100, Rect::new(4, 0, 4, 2)),
            (Rect::new(5, 0, 10, 2), 100, Rect::new(4, 0, 12, 2)),
            (Rect::new(0, 0, 1, 1), 100, Rect::new(0, 0, 4, 1)),
            // Already a multiple wide: as it is, even off the grid.
            (Rect::new(3, 1, 8, 1), 100, Rect::new(3, 1, 8, 1)),
            // At the right edge of a screen 37 wide: end there, grow left just enough.
            (Rect::new(36, 0, 1, 1), 37, Rect::new(33, 0, 4, 1)),
            (Rect::new(35, 0, 2, 1), 37, Rect::new(33, 0, 4, 1)),
            (Rect::new(31, 0, 6, 1), 37, Rect::new(29, 0, 8, 1)),
            // Near, but not at, the edge: the grid still fits.
            (Rect::new(33, 0, 3, 1), 37, Rect::new(32, 0, 4, 1)),
            // The whole unaligned width, and screens narrower than the alignment.
            (Rect::new(0, 0, 37, 1), 37, Rect::new(0, 0, 37, 1)),
            (Rect::new(2, 0, 35, 1), 37, Rect::new(1, 0, 36, 1)),
            (Rect::new(1, 0, 1, 1), 3, Rect::new(1, 0, 1, 1)),
            // Nothing to align.
            (Rect::new(5, 0, 0, 0), 100, Rect::new(5, 0, 0, 0)),
        ] {
            let got = fit(rect, 4, width);
            assert_eq!(got, expected, "{rect:?} in {width}");
            assert!(got.x <= rect.x && got.right() >= rect.right() && got.right() <= u32::from(width).max(rect.right()));
            assert!(got.width.is_multiple_of(4) || got.width == width || width < 4 || got.is_empty());
        }
        assert_eq!(fit(Rect::new(5, 0, 3, 2), 1, 100), Rect::new(5, 0, 3, 2));
    }

    #[test]
    fn a_view_is_the_region_clipped_to_the_canvas_or_black_outside_it() {
        let canvas = Size::new(200, 100);
        assert_eq!(View::new(canvas, None), View { at: canvas.rect(), dark: false });
        let inside = Rect::new(10, 20, 100, 50);
        assert_eq!(View::new(canvas, Some(inside)), View { at: inside, dark: false });
        let over = View::new(canvas, Some(Rect::new(150, 50, 100, 100)));
        assert_eq!(over, View { at: Rect::new(150, 50, 50, 50), dark: false });
        assert_eq!(over.project(Rect::new(190, 90, 20, 20)), Rect::new(40, 40, 10, 10));
        assert!(over.project(Rect::new(0, 0, 150, 100)).is_empty());
        let outside = View::new(canvas, Some(Rect::new(300, 0, 30, 10)));
        assert_eq!((outside.size(), outside.dark), (Size::new(30, 10), true));
        assert!(outside.project(canvas.rect()).is_empty());
        assert_eq!(View::new(canvas, Some(Rect::new(5, 5, 0, 7))).size(), Size::new(1, 7));
    }

    #[test]
    fn a_view_reads_the_canvas_or_black() {
        let canvas = Canvas::new(Size::new(16, 8));
        canvas.draw(|px, size| {
            for (i, p) in px.chunks_exact_mut(4).enumerate() {
                p.copy_from_slice(&[i as u8, 1, 2, 0]);
            }
            vec![size.rect()]
        });
        let view = View::new(canvas.size(), Some(Rect::new(4, 2, 8, 4)));
        assert_eq!(view.pixels(Rect::new(1, 1, 2, 2), &canvas), Some(canvas.read(Rect::new(5, 3, 2, 2))));
        // Black when dark.
        let dark = View::new(canvas.size(), Some(Rect::new(40, 40, 3, 3)));
        assert_eq!(dark.pixels(Rect::new(0, 0, 3, 3), &canvas), Some(vec![0; 36]));
        // The canvas shrank under the view: nothing rather than pixels of the wrong size.
        canvas.resize(Size::new(6, 4));
        assert_eq!(view.pixels(Rect::new(0, 0, 8, 4), &canvas), None);
    }
}
