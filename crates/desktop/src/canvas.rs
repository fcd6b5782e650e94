//! The canvas: a desktop's current pixels and, per subscriber, what changed since it last looked.
//!
//! Damage is kept per subscriber as a short list of rectangles that merges when it grows, so a
//! subscriber that does not look for a while costs a bounded amount of memory: at worst "the
//! whole screen changed". Nothing queues frames.
//!
//! An overlay (a message box) can lie over the desktop's pixels: everything read from the canvas
//! shows it, while the desktop keeps drawing into its own pixels underneath, so taking the
//! overlay away shows the desktop as it is by then. Compositing touches only the rows and
//! columns a read shares with the overlay.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::{Rect, Size};

/// Bytes per pixel: 32-bit BGRX (blue in the lowest byte, the fourth byte unused).
pub const BYTES_PER_PIXEL: usize = 4;

/// At most this many damage rectangles are kept per subscriber before they are merged.
const MAX_DAMAGE_RECTS: usize = 32;

pub struct Canvas {
    state: Mutex<State>,
    generation: watch::Sender<u64>,
    /// Notified whenever a subscriber takes its damage (see [`Canvas::wait_for_reader`]).
    taken: Condvar,
}

struct State {
    size: Size,
    /// At least `size.area() * 4` bytes; see [`State::pixels`].
    memory: Box<dyn PixelMemory>,
    subscribers: Vec<SubscriberDamage>,
    next_subscriber: u64,
    overlay: Option<Overlay>,
}

/// Where a canvas keeps its pixels: its own memory (a `Vec`), or memory it shares with where
/// the pixels come from (an X desktop's capture segment, which the X server writes straight
/// into while the canvas is locked for drawing: no copy in between).
pub trait PixelMemory: Send {
    /// All of it; the canvas uses the first `size.area() * 4` bytes.
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl PixelMemory for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Pixels shown over the desktop's at `rect` (BGRX rows of `rect.width * 4` bytes, no padding).
/// Parts outside the canvas are not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub rect: Rect,
    pub pixels: Vec<u8>,
}

struct SubscriberDamage {
    id: u64,
    resized: bool,
    damage: Damage,
}

/// A bounded set of changed rectangles: it merges as it grows, so at worst it says "this whole
/// area changed" and never holds more than a few dozen rectangles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damage {
    rects: Vec<Rect>,
}

impl Damage {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    pub fn rects(&self) -> &[Rect] {
        &self.rects
    }

    /// The smallest rectangle holding every changed one.
    pub fn bounds(&self) -> Rect {
        self.rects.iter().copied().fold(Rect::new(0, 0, 0, 0), Rect::union)
    }

    /// Take the rectangles, leaving the set empty.
    pub fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }

    pub fn clear(&mut self) {
        self.rects.clear();
    }

    pub fn add(&mut self, rect: Rect) {
        if rect.is_empty() {
            return;
        }
        // Merge into an existing rectangle when that costs little extra area.
        for existing in &mut self.rects {
            let union = existing.union(rect);
            if union.area() <= existing.area() + rect.area() + rect.area() / 2 || existing.touches(rect) && union.area() <= 2 * (existing.area() + rect.area()) {
                *existing = union;
                return;
            }
        }
        self.rects.push(rect);
        if self.rects.len() > MAX_DAMAGE_RECTS {
            let all = self.rects.drain(..).fold(Rect::new(0, 0, 0, 0), Rect::union);
            self.rects.push(all);
        }
    }

    /// True when some rectangle of the set contains all of `rect`.
    pub fn covers(&self, rect: Rect) -> bool {
        rect.is_empty() || self.rects.iter().any(|r| r.x <= rect.x && r.y <= rect.y && r.right() >= rect.right() && r.bottom() >= rect.bottom())
    }
}

/// What a subscriber gets when it takes its damage: the changed rectangles with their pixels.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The canvas size when the frame was taken.
    pub size: Size,
    /// The canvas changed size since the last frame; `regions` then covers the whole canvas.
    pub resized: bool,
    pub regions: Vec<CanvasUpdate>,
}

/// What [`Subscription::take_in_place`] lets its reader see.
#[derive(Debug)]
pub struct InPlace<'a> {
    /// The canvas size now.
    pub size: Size,
    /// The canvas changed size since the last take; `rects` then covers the whole canvas.
    pub resized: bool,
    /// What changed since the last take (inside the canvas).
    pub rects: Vec<Rect>,
    /// Every pixel of the canvas as readers see it (the overlay composed in): BGRX rows of
    /// `size.width * 4` bytes.
    pub pixels: &'a [u8],
}

impl InPlace<'_> {
    /// The changed rectangles widened to multiples of `align` in x, as
    /// [`Subscription::take_aligned`] widens them.
    pub fn aligned_rects(&self, align: u16) -> impl Iterator<Item = Rect> + '_ {
        self.rects.iter().map(move |&r| align_rect(r, align, self.size.width))
    }
}

/// One changed rectangle and its pixels (BGRX rows of `rect.width * 4` bytes, no padding).
#[derive(Debug, Clone)]
pub struct CanvasUpdate {
    pub rect: Rect,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(size: Size) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                size,
                memory: Box::new(vec![0; size.area() * BYTES_PER_PIXEL]),
                subscribers: Vec::new(),
                next_subscriber: 0,
                overlay: None,
            }),
            generation: watch::Sender::new(0),
            taken: Condvar::new(),
        })
    }

    pub fn size(&self) -> Size {
        self.state.lock().unwrap().size
    }

    /// Draw: `f` gets the pixels (BGRX, stride `size.width * 4`) and the size, and returns the
    /// rectangles it changed. Subscribers are woken once, after `f` returns.
    pub fn draw<F>(&self, f: F)
    where
        F: FnOnce(&mut [u8], Size) -> Vec<Rect>,
    {
        let mut state = self.state.lock().unwrap();
        let size = state.size;
        let damage = f(state.pixels_mut(), size);
        if damage.is_empty() {
            return;
        }
        let bounds = size.rect();
        for sub in &mut state.subscribers {
            for rect in &damage {
                sub.damage.add(rect.intersect(bounds));
            }
        }
        drop(state);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Change size. The new pixels are black until drawn; every subscriber sees `resized`.
    pub fn resize(&self, size: Size) {
        let mut state = self.state.lock().unwrap();
        if state.size != size {
            state.replace_memory(size, Box::new(vec![0; size.area() * BYTES_PER_PIXEL]));
            drop(state);
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Keep the pixels in `memory` from now on, at `size` (what it holds shows until drawn over).
    /// Every subscriber gets the whole canvas as damage, and sees `resized` if the size changed.
    ///
    /// Panics when `memory` is smaller than `size` needs.
    pub fn resize_into(&self, size: Size, memory: Box<dyn PixelMemory>) {
        assert!(memory.bytes().len() >= size.area() * BYTES_PER_PIXEL, "{} bytes cannot hold {size:?}", memory.bytes().len());
        self.state.lock().unwrap().replace_memory(size, memory);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Show `overlay` over the desktop's pixels, replacing any other (`None` takes it away).
    /// Every subscriber gets the old and the new rectangle as damage.
    ///
    /// Panics when `overlay.pixels` is not `rect.width * rect.height * 4` bytes.
    pub fn set_overlay(&self, overlay: Option<Overlay>) {
        if let Some(o) = &overlay {
            assert_eq!(o.pixels.len(), o.rect.area() as usize * BYTES_PER_PIXEL, "overlay pixels must fill its rectangle");
        }
        let mut state = self.state.lock().unwrap();
        let old = state.overlay.take().map(|o| o.rect);
        let new = overlay.as_ref().map(|o| o.rect);
        state.overlay = overlay;
        let bounds = state.size.rect();
        let changed: Vec<Rect> = [old, new].into_iter().flatten().map(|r| r.intersect(bounds)).filter(|r| !r.is_empty()).collect();
        if changed.is_empty() {
            return;
        }
        for sub in &mut state.subscribers {
            for &rect in &changed {
                sub.damage.add(rect);
            }
        }
        drop(state);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Where the overlay lies now, if there is one (it may reach past the canvas' edges).
    pub fn overlay_rect(&self) -> Option<Rect> {
        self.state.lock().unwrap().overlay.as_ref().map(|o| o.rect)
    }

    /// Wait, at most `longest`, while every subscriber still has damage it has not taken. A
    /// desktop that draws faster than its readers read then skips the pictures nobody would
    /// see, instead of copying each into the canvas only for the next to replace it; its damage
    /// meanwhile adds up where it comes from. Returns at once when there are no subscribers
    /// (nothing paces: the canvas stays current for the next one) or one is waiting for changes.
    pub fn wait_for_reader(&self, longest: Duration) {
        let deadline = Instant::now() + longest;
        let mut state = self.state.lock().unwrap();
        while !state.subscribers.is_empty() && state.subscribers.iter().all(|s| s.resized || !s.damage.is_empty()) {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                break;
            };
            state = self.taken.wait_timeout(state, left).unwrap().0;
        }
    }

    /// A watch that ticks whenever any subscriber may have new damage (draws, resizes, refreshes).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Copy a rectangle of the current pixels (BGRX, tightly packed), widened like
    /// [`Subscription::take_aligned`] so that its x and width are multiples of `align`.
    pub fn read_aligned(&self, rect: Rect, align: u16) -> CanvasUpdate {
        let state = self.state.lock().unwrap();
        let rect = align_rect(rect.intersect(state.size.rect()), align, state.size.width);
        CanvasUpdate { rect, pixels: state.compose(rect) }
    }

    /// Copy a rectangle of the current pixels (BGRX, tightly packed).
    pub fn read(&self, rect: Rect) -> Vec<u8> {
        let state = self.state.lock().unwrap();
        state.compose(rect.intersect(state.size.rect()))
    }

    /// A new subscriber starts with the whole canvas as damage, so its first frame is complete.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let mut state = self.state.lock().unwrap();
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        let size = state.size;
        let mut damage = Damage::new();
        damage.add(size.rect());
        state.subscribers.push(SubscriberDamage { id, resized: false, damage });
        drop(state);
        let mut generation = self.generation.subscribe();
        generation.mark_changed();
        Subscription { canvas: Arc::clone(self), id, generation }
    }
}

impl State {
    /// The desktop's pixels: BGRX rows of `size.width * 4` bytes.
    fn pixels(&self) -> &[u8] {
        &self.memory.bytes()[..self.size.area() * BYTES_PER_PIXEL]
    }

    fn pixels_mut(&mut self) -> &mut [u8] {
        let len = self.size.area() * BYTES_PER_PIXEL;
        &mut self.memory.bytes_mut()[..len]
    }

    /// Keep the pixels in `memory` at `size`: the whole canvas is every subscriber's damage,
    /// and `resized` if the size changed.
    fn replace_memory(&mut self, size: Size, memory: Box<dyn PixelMemory>) {
        let resized = self.size != size;
        self.size = size;
        self.memory = memory;
        for sub in &mut self.subscribers {
            sub.resized |= resized;
            sub.damage.clear();
            sub.damage.add(size.rect());
        }
    }

    /// Subscriber `id`'s damage (inside the canvas, none empty) and whether it saw a resize,
    /// now cleared; `None` when it has neither.
    fn take_damage(&mut self, id: u64) -> Option<(bool, Vec<Rect>)> {
        let bounds = self.size.rect();
        let sub = self.subscribers.iter_mut().find(|s| s.id == id)?;
        if sub.damage.is_empty() && !sub.resized {
            return None;
        }
        let resized = std::mem::take(&mut sub.resized);
        let rects = sub.damage.take().into_iter().map(|r| r.intersect(bounds)).filter(|r| !r.is_empty()).collect();
        Some((resized, rects))
    }

    /// The pixels of `rect` (inside the canvas) as readers see them: the desktop's, with the
    /// overlay over them where the two meet.
    fn compose(&self, rect: Rect) -> Vec<u8> {
        let mut out = copy_rect(self.pixels(), self.size, rect);
        if let Some(overlay) = &self.overlay {
            let shared = overlay.rect.intersect(rect);
            let src_stride = usize::from(overlay.rect.width) * BYTES_PER_PIXEL;
            let dst_stride = usize::from(rect.width) * BYTES_PER_PIXEL;
            let row_bytes = usize::from(shared.width) * BYTES_PER_PIXEL;
            for row in 0..usize::from(shared.height) {
                let y = usize::from(shared.y) + row;
                let src = (y - usize::from(overlay.rect.y)) * src_stride + usize::from(shared.x - overlay.rect.x) * BYTES_PER_PIXEL;
                let dst = (y - usize::from(rect.y)) * dst_stride + usize::from(shared.x - rect.x) * BYTES_PER_PIXEL;
                out[dst..dst + row_bytes].copy_from_slice(&overlay.pixels[src..src + row_bytes]);
            }
        }
        out
    }
}

fn copy_rect(pixels: &[u8], size: Size, rect: Rect) -> Vec<u8> {
    let stride = usize::from(size.width) * BYTES_PER_PIXEL;
    let row_bytes = usize::from(rect.width) * BYTES_PER_PIXEL;
    let mut out = Vec::with_capacity(row_bytes * usize::from(rect.height));
    for row in 0..usize::from(rect.height) {
        let start = (usize::from(rect.y) + row) * stride + usize::from(rect.x) * BYTES_PER_PIXEL;
        out.extend_from_slice(&pixels[start..start + row_bytes]);
    }
    out
}

/// Widen `rect` to multiples of `align` in x, within `width`; when the canvas edge stops it,
/// the rectangle grows to the left instead.
fn align_rect(rect: Rect, align: u16, width: u16) -> Rect {
    if align <= 1 || rect.is_empty() || width < align {
        return rect;
    }
    let left = rect.x - rect.x % align;
    let right = (rect.right() as u16).div_ceil(align) * align;
    let right = right.min(width);
    let w = (right - left).div_ceil(align) * align;
    let w = w.min(width);
    let left = right.saturating_sub(w).min(left);
    Rect::new(left, rect.y, w.min(width - left), rect.height)
}

/// One reader's view of a canvas. Dropping it unsubscribes.
pub struct Subscription {
    canvas: Arc<Canvas>,
    id: u64,
    generation: watch::Receiver<u64>,
}

impl Subscription {
    pub fn canvas(&self) -> &Arc<Canvas> {
        &self.canvas
    }

    /// Wait until something may have changed. Cancel-safe.
    pub async fn changed(&mut self) {
        // The sender lives in the canvas, which this subscription keeps alive: never closed.
        let _ = self.generation.changed().await;
    }

    /// Take everything that changed since the last call, with its pixels; `None` if nothing did.
    pub fn take(&mut self) -> Option<Frame> {
        self.take_aligned(1)
    }

    /// Like [`take`](Self::take), with every rectangle widened (using the canvas' real pixels)
    /// so that its x and width are multiples of `align` where the canvas allows: some codecs
    /// only encode such widths.
    pub fn take_aligned(&mut self, align: u16) -> Option<Frame> {
        let mut state = self.canvas.state.lock().unwrap();
        let (resized, rects) = self.take_damage(&mut state)?;
        let size = state.size;
        let regions = rects
            .into_iter()
            .map(|r| align_rect(r, align, size.width))
            .map(|rect| CanvasUpdate { rect, pixels: state.compose(rect) })
            .collect();
        Some(Frame { size, resized, regions })
    }

    /// Like [`take`](Self::take), but without copying the pixels out: `f` reads what it needs
    /// from the canvas itself. The canvas stays locked (the desktop cannot draw, its next
    /// picture waits) until `f` returns: worth it when `f` would otherwise copy what it reads
    /// (an encode of the damage); copy anything kept. `None` when nothing changed. While an
    /// overlay is shown `f` reads a composed copy instead.
    pub fn take_in_place<R>(&mut self, f: impl FnOnce(InPlace<'_>) -> R) -> Option<R> {
        let mut state = self.canvas.state.lock().unwrap();
        let (resized, rects) = self.take_damage(&mut state)?;
        let size = state.size;
        let composed = state.overlay.is_some().then(|| state.compose(size.rect()));
        let pixels = composed.as_deref().unwrap_or(state.pixels());
        Some(f(InPlace { size, resized, rects, pixels }))
    }

    /// This subscriber's damage, now taken: a capture waiting for a reader may go on.
    fn take_damage(&self, state: &mut State) -> Option<(bool, Vec<Rect>)> {
        let taken = state.take_damage(self.id)?;
        self.canvas.taken.notify_all();
        Some(taken)
    }

    /// Mark a rectangle as changed for this subscriber only (a client asked for a refresh).
    pub fn invalidate(&self, rect: Rect) {
        let mut state = self.canvas.state.lock().unwrap();
        let bounds = state.size.rect();
        if let Some(sub) = state.subscribers.iter_mut().find(|s| s.id == self.id) {
            sub.damage.add(rect.intersect(bounds));
        }
        drop(state);
        self.canvas.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut state) = self.canvas.state.lock() {
            state.subscribers.retain(|s| s.id != self.id);
        }
        self.canvas.taken.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_is_waited_for_only_while_every_subscriber_has_damage_left() {
        let canvas = Canvas::new(Size::new(8, 8));
        let long = Duration::from_secs(5);
        // No subscribers: nothing to wait for.
        let started = Instant::now();
        canvas.wait_for_reader(long);
        assert!(started.elapsed() < long);
        let mut slow = canvas.subscribe();
        let mut idle = canvas.subscribe();
        // Both hold the first picture: the capture waits until one takes it.
        let reader = {
            let canvas = Arc::clone(&canvas);
            std::thread::spawn(move || {
                let started = Instant::now();
                canvas.wait_for_reader(long);
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "every subscriber still has the last picture to take");
        assert!(idle.take().is_some());
        let waited = reader.join().unwrap();
        assert!(waited >= Duration::from_millis(50) && waited < long, "woken by the take: {waited:?}");
        // One subscriber waiting for changes is enough, whatever the other holds.
        let started = Instant::now();
        canvas.wait_for_reader(long);
        assert!(started.elapsed() < long);
        // Both behind: the wait ends at its limit.
        canvas.draw(|_, size| vec![size.rect()]);
        let started = Instant::now();
        canvas.wait_for_reader(Duration::from_millis(30));
        assert!(started.elapsed() >= Duration::from_millis(30));
        // A subscriber that left is not waited for.
        assert!(slow.take().is_some());
        canvas.draw(|_, size| vec![size.rect()]);
        drop(idle);
        assert!(slow.take().is_some());
        let started = Instant::now();
        canvas.wait_for_reader(long);
        assert!(started.elapsed() < long);
    }

    #[test]
    fn new_subscriber_gets_whole_canvas_then_only_changes() {
        let canvas = Canvas::new(Size::new(64, 32));
        let mut sub = canvas.subscribe();
        let first = sub.take().unwrap();
        assert_eq!(first.regions.len(), 1);
        assert_eq!(first.regions[0].rect, Rect::new(0, 0, 64, 32));
        assert!(sub.take().is_none());
        canvas.draw(|px, size| {
            let i = (3 * usize::from(size.width) + 5) * 4;
            px[i..i + 4].copy_from_slice(&[1, 2, 3, 0]);
            vec![Rect::new(5, 3, 1, 1)]
        });
        let frame = sub.take().unwrap();
        assert_eq!(frame.regions.len(), 1);
        assert_eq!(frame.regions[0].rect, Rect::new(5, 3, 1, 1));
        assert_eq!(frame.regions[0].pixels, vec![1, 2, 3, 0]);
    }

    #[test]
    fn take_in_place_reads_the_canvas_as_take_would() {
        let canvas = Canvas::new(Size::new(4, 2));
        let mut sub = canvas.subscribe();
        let first = sub.take_in_place(|f| (f.size, f.rects, f.pixels.len())).unwrap();
        assert_eq!(first, (Size::new(4, 2), vec![Rect::new(0, 0, 4, 2)], 32));
        assert!(sub.take_in_place(|_| ()).is_none());
        canvas.draw(|px, _| {
            px[4..8].copy_from_slice(&[1, 2, 3, 0]);
            vec![Rect::new(1, 0, 1, 1)]
        });
        // An overlay over the other row: read composed, and its rectangle is damage too.
        canvas.set_overlay(Some(Overlay { rect: Rect::new(0, 1, 1, 1), pixels: vec![9, 9, 9, 0] }));
        let (rects, pixels) = sub.take_in_place(|f| (f.rects, f.pixels.to_vec())).unwrap();
        assert_eq!(rects, vec![Rect::new(0, 0, 2, 2)], "the draw and the overlay, merged");
        assert_eq!(&pixels[4..8], &[1, 2, 3, 0]);
        assert_eq!(&pixels[16..20], &[9, 9, 9, 0]);
        assert_eq!(sub.take().map(|f| f.regions.len()), None, "the damage was taken");
    }

    #[test]
    fn damage_stays_bounded() {
        let canvas = Canvas::new(Size::new(1000, 1000));
        let mut sub = canvas.subscribe();
        sub.take();
        for i in 0..10_000u32 {
            let x = (i * 37 % 990) as u16;
            let y = (i * 91 % 990) as u16;
            canvas.draw(|_, _| vec![Rect::new(x, y, 2, 2)]);
        }
        let frame = sub.take().unwrap();
        assert!(frame.regions.len() <= MAX_DAMAGE_RECTS);
    }

    #[test]
    fn aligned_rectangles_are_multiples_of_the_alignment() {
        for (rect, width, expected) in [
            (Rect::new(5, 0, 3, 2), 100, Rect::new(4, 0, 4, 2)),
            (Rect::new(5, 0, 10, 2), 100, Rect::new(4, 0, 12, 2)),
            (Rect::new(0, 0, 1, 1), 100, Rect::new(0, 0, 4, 1)),
            // At the right edge of a canvas 102 wide, the rectangle grows to the left.
            (Rect::new(100, 0, 2, 1), 102, Rect::new(98, 0, 4, 1)),
        ] {
            let got = align_rect(rect, 4, width);
            assert_eq!(got, expected, "{rect:?} in {width}");
            assert_eq!(got.width % 4, 0);
            assert!(got.x <= rect.x && got.right() >= rect.right());
        }
    }

    /// Fill the whole canvas with one colour per pixel derived from its position.
    fn paint_pattern(canvas: &Canvas) {
        canvas.draw(|px, size| {
            for (i, p) in px.chunks_exact_mut(4).enumerate() {
                let (x, y) = (i % usize::from(size.width), i / usize::from(size.width));
                p.copy_from_slice(&[x as u8, y as u8, 7, 0]);
            }
            vec![size.rect()]
        });
    }

    fn solid(rect: Rect, colour: [u8; 4]) -> Overlay {
        Overlay { rect, pixels: colour.repeat(rect.area() as usize) }
    }

    #[test]
    fn overlay_covers_reads_and_frames_and_leaves_the_desktop_pixels_alone() {
        let canvas = Canvas::new(Size::new(16, 8));
        paint_pattern(&canvas);
        let before = canvas.read(Size::new(16, 8).rect());
        let mut sub = canvas.subscribe();
        sub.take();

        let rect = Rect::new(4, 2, 5, 3);
        canvas.set_overlay(Some(solid(rect, [9, 9, 9, 0])));
        assert_eq!(canvas.overlay_rect(), Some(rect));
        let frame = sub.take().expect("setting an overlay is damage");
        assert!(frame.regions.iter().any(|r| r.rect == rect), "{:?}", frame.regions);
        let all = canvas.read(Size::new(16, 8).rect());
        for y in 0..8u16 {
            for x in 0..16u16 {
                let i = (usize::from(y) * 16 + usize::from(x)) * 4;
                let inside = (4..9).contains(&x) && (2..5).contains(&y);
                let expected = if inside { &[9, 9, 9, 0][..] } else { &before[i..i + 4] };
                assert_eq!(&all[i..i + 4], expected, "pixel {x},{y}");
            }
        }
        // A read that only clips the overlay's corner, and an aligned read around it.
        assert_eq!(canvas.read(Rect::new(8, 4, 2, 1)), vec![9, 9, 9, 0, before[(4 * 16 + 9) * 4], 4, 7, 0]);
        let aligned = canvas.read_aligned(Rect::new(5, 2, 1, 1), 4);
        assert_eq!(aligned.rect, Rect::new(4, 2, 4, 1));
        assert_eq!(aligned.pixels, [9, 9, 9, 0].repeat(4));

        // The desktop keeps drawing underneath; clearing shows what it drew, exactly.
        canvas.draw(|px, size| {
            let i = (3 * usize::from(size.width) + 5) * 4;
            px[i..i + 4].copy_from_slice(&[1, 2, 3, 0]);
            vec![Rect::new(5, 3, 1, 1)]
        });
        assert_eq!(canvas.read(Rect::new(5, 3, 1, 1)), vec![9, 9, 9, 0]);
        sub.take();
        canvas.set_overlay(None);
        assert_eq!(canvas.overlay_rect(), None);
        let frame = sub.take().expect("clearing an overlay is damage");
        let region = frame.regions.iter().find(|r| r.rect == rect).expect("the old rectangle is damaged");
        let mut expected = Vec::new();
        for y in 2..5usize {
            for x in 4..9usize {
                let i = (y * 16 + x) * 4;
                expected.extend_from_slice(if (x, y) == (5, 3) { &[1, 2, 3, 0][..] } else { &before[i..i + 4] });
            }
        }
        assert_eq!(region.pixels, expected);
        // Nothing to clear: no damage, no tick.
        canvas.set_overlay(None);
        assert!(sub.take().is_none());
    }

    #[test]
    fn moving_an_overlay_damages_where_it_was_and_where_it_is() {
        let canvas = Canvas::new(Size::new(64, 64));
        let mut sub = canvas.subscribe();
        sub.take();
        let mut changes = canvas.changes();
        changes.mark_unchanged();
        canvas.set_overlay(Some(solid(Rect::new(0, 0, 4, 4), [1, 1, 1, 0])));
        canvas.set_overlay(Some(solid(Rect::new(40, 40, 4, 4), [2, 2, 2, 0])));
        assert!(changes.has_changed().unwrap());
        let mut damage = Damage::new();
        for r in sub.take().unwrap().regions {
            damage.add(r.rect);
        }
        assert!(damage.covers(Rect::new(0, 0, 4, 4)) && damage.covers(Rect::new(40, 40, 4, 4)), "{damage:?}");
        assert_eq!(canvas.read(Rect::new(0, 0, 1, 1)), vec![0, 0, 0, 0]);
        assert_eq!(canvas.read(Rect::new(41, 41, 1, 1)), vec![2, 2, 2, 0]);
    }

    #[test]
    fn an_overlay_past_the_edge_is_clipped_also_after_a_shrink() {
        let canvas = Canvas::new(Size::new(20, 20));
        let mut sub = canvas.subscribe();
        canvas.set_overlay(Some(solid(Rect::new(15, 15, 10, 10), [5, 5, 5, 0])));
        let frame = sub.take().unwrap();
        assert_eq!(frame.regions[0].rect, Rect::new(0, 0, 20, 20));
        assert_eq!(canvas.read(Rect::new(19, 19, 1, 1)), vec![5, 5, 5, 0]);
        assert_eq!(canvas.read(Rect::new(14, 14, 1, 1)), vec![0, 0, 0, 0]);
        canvas.resize(Size::new(10, 10));
        let frame = sub.take().unwrap();
        assert!(frame.regions[0].pixels.iter().all(|&b| b == 0));
        assert_eq!(canvas.overlay_rect(), Some(Rect::new(15, 15, 10, 10)));
        canvas.set_overlay(None);
        assert!(sub.take().is_none(), "the old overlay lay wholly outside the smaller canvas");
    }

    #[test]
    #[should_panic(expected = "overlay pixels must fill its rectangle")]
    fn an_overlay_with_too_few_pixels_is_refused() {
        Canvas::new(Size::new(8, 8)).set_overlay(Some(Overlay { rect: Rect::new(0, 0, 2, 2), pixels: vec![0; 12] }));
    }

    #[test]
    fn resize_reports_whole_new_canvas() {
        let canvas = Canvas::new(Size::new(10, 10));
        let mut sub = canvas.subscribe();
        sub.take();
        canvas.resize(Size::new(20, 5));
        let frame = sub.take().unwrap();
        assert!(frame.resized);
        assert_eq!(frame.size, Size::new(20, 5));
        assert_eq!(frame.regions[0].rect, Rect::new(0, 0, 20, 5));
    }
}
