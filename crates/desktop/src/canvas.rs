//! The canvas: a desktop's current pixels and, per subscriber, what changed since it last looked.
//!
//! Damage is kept per subscriber as a short list of rectangles that merges when it grows, so a
//! subscriber that does not look for a while costs a bounded amount of memory: at worst "the
//! whole screen changed". Nothing queues frames.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{Rect, Size};

/// Bytes per pixel: 32-bit BGRX (blue in the lowest byte, the fourth byte unused).
pub const BYTES_PER_PIXEL: usize = 4;

/// At most this many damage rectangles are kept per subscriber before they are merged.
const MAX_DAMAGE_RECTS: usize = 32;

pub struct Canvas {
    state: Mutex<State>,
    generation: watch::Sender<u64>,
}

struct State {
    size: Size,
    pixels: Vec<u8>,
    subscribers: Vec<SubscriberDamage>,
    next_subscriber: u64,
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
                pixels: vec![0; size.area() * BYTES_PER_PIXEL],
                subscribers: Vec::new(),
                next_subscriber: 0,
            }),
            generation: watch::Sender::new(0),
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
        let damage = f(&mut state.pixels, size);
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
        if state.size == size {
            return;
        }
        state.size = size;
        state.pixels = vec![0; size.area() * BYTES_PER_PIXEL];
        for sub in &mut state.subscribers {
            sub.resized = true;
            sub.damage.clear();
            sub.damage.add(size.rect());
        }
        drop(state);
        self.generation.send_modify(|g| *g += 1);
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
        CanvasUpdate { rect, pixels: copy_rect(&state.pixels, state.size, rect) }
    }

    /// Copy a rectangle of the current pixels (BGRX, tightly packed).
    pub fn read(&self, rect: Rect) -> Vec<u8> {
        let state = self.state.lock().unwrap();
        copy_rect(&state.pixels, state.size, rect.intersect(state.size.rect()))
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
        let size = state.size;
        let sub = state.subscribers.iter_mut().find(|s| s.id == self.id)?;
        if sub.damage.is_empty() && !sub.resized {
            return None;
        }
        let resized = std::mem::take(&mut sub.resized);
        let rects = sub.damage.take();
        let regions = rects
            .into_iter()
            .map(|r| align_rect(r.intersect(size.rect()), align, size.width))
            .filter(|r| !r.is_empty())
            .map(|rect| CanvasUpdate { rect, pixels: copy_rect(&state.pixels, size, rect) })
            .collect();
        Some(Frame { size, resized, regions })
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
