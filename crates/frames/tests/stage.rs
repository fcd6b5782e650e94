//! The stage: one encode per change per profile, shared by every feed; slow feeds skip to the
//! newest state and are made whole privately; cancel safety; resizes.
//!
//! Pixels are checked end to end: feeds with the Uncompressed profile are decoded into a shadow
//! screen (`common::Shadow`: fast-path reassembly, then Surface Bits with raw bottom-up rows)
//! that must end equal to the canvas.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Shadow, idle, next, paint};
use rdhost_desktop::{Canvas, Rect, Size};
use rdhost_frames::{CodecProfile, Feed, FeedProfile, Stage, Update};

const RAW: FeedProfile = FeedProfile::new(CodecProfile::Uncompressed, 4 * 1024 * 1024);
const PLANAR: FeedProfile = FeedProfile::new(CodecProfile::Planar, 4 * 1024 * 1024);
const SIZE: Size = Size::new(64, 32);

/// Distinct small rectangles spread over the 64x32 canvas.
fn small_rect(i: usize) -> Rect {
    Rect::new((i % 8) as u16 * 8, (i / 8 % 4) as u16 * 8, 3, 2)
}

#[tokio::test]
async fn one_feed_gets_the_whole_screen_then_only_changes() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW);
    assert_eq!(feed.profile(), RAW);
    assert_eq!(feed.size(), SIZE);
    let mut shadow = Shadow::new();

    let first = next(&mut feed).await;
    assert_eq!(first.size, SIZE);
    assert_eq!(shadow.apply(&first), vec![SIZE.rect()]);
    assert!(shadow.matches(&canvas));

    paint(&canvas, Rect::new(5, 3, 3, 2), 2);
    let update = next(&mut feed).await;
    assert_eq!(update.size, SIZE);
    assert_eq!(shadow.apply(&update), vec![Rect::new(5, 3, 3, 2)]);
    assert!(shadow.matches(&canvas));

    assert!(idle(&mut feed).await, "nothing changed, nothing sent");
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes, stats.feeds, stats.profiles), (2, 0, 1, 1));
}

#[tokio::test]
async fn twenty_feeds_share_one_encode_per_change() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feeds: Vec<(Feed, Shadow)> = (0..20).map(|_| (stage.feed(RAW), Shadow::new())).collect();
    const DRAWS: usize = 10;
    for draw in 0..=DRAWS {
        if draw > 0 {
            paint(&canvas, small_rect(draw), draw as u8);
        }
        let mut first: Option<Arc<[u8]>> = None;
        for (feed, shadow) in &mut feeds {
            let update = next(feed).await;
            assert_eq!(update.parts.len(), 1);
            // The very same bytes, not a copy: encoded once.
            let first = first.get_or_insert_with(|| Arc::clone(&update.parts[0]));
            assert!(Arc::ptr_eq(first, &update.parts[0]));
            shadow.apply(&update);
            assert!(shadow.matches(&canvas));
        }
    }
    let stats = stage.stats();
    assert_eq!(stats.shared_encodes, DRAWS as u64 + 1, "one encode per change (the first is the whole screen)");
    assert_eq!(stats.private_encodes, 0);
    assert_eq!((stats.feeds, stats.profiles), (20, 1));
    let raw = stats.profile(RAW).expect("the raw profile");
    assert_eq!((raw.feeds, raw.shared_encodes), (20, DRAWS as u64 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_viewers_of_an_animation_cost_one_encode_per_frame() {
    let size = Size::new(320, 200);
    let canvas = Canvas::new(size);
    let stage = Stage::new(Arc::clone(&canvas));
    let finished = Arc::new(AtomicBool::new(false));
    let viewers: Vec<_> = (0..20)
        .map(|n| {
            let mut feed = stage.feed(RAW);
            let finished = Arc::clone(&finished);
            tokio::spawn(async move {
                let mut shadow = Shadow::new();
                let mut updates = 0;
                loop {
                    // Some viewers are slow: they take their time between updates.
                    if n % 4 == 0 {
                        tokio::time::sleep(Duration::from_millis(7)).await;
                    }
                    match tokio::time::timeout(Duration::from_millis(300), feed.next()).await {
                        Ok(update) => {
                            shadow.apply(&update.expect("encoding works"));
                            updates += 1;
                        }
                        Err(_) if finished.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
                (feed, shadow, updates)
            })
        })
        .collect();
    const FRAMES: u64 = 40;
    for frame in 0..FRAMES {
        paint(&canvas, size.rect(), frame as u8);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    finished.store(true, Ordering::SeqCst);
    for viewer in viewers {
        let (_feed, shadow, updates) = viewer.await.expect("viewer task");
        assert!(updates >= 1);
        assert!(shadow.matches(&canvas), "every viewer ends with the newest pixels");
    }
    let stats = stage.stats();
    assert!(stats.shared_encodes <= FRAMES + 1, "at most one encode per frame: {stats:?}");
    assert_eq!(stats.private_encodes, 0, "slow viewers of full-screen frames cost no encode: {stats:?}");
}

#[tokio::test]
async fn a_slow_feed_gets_only_the_newest_state_and_what_it_missed() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut fast, mut slow) = (stage.feed(RAW), stage.feed(RAW));
    let (mut fast_shadow, mut slow_shadow) = (Shadow::new(), Shadow::new());
    fast_shadow.apply(&next(&mut fast).await);
    slow_shadow.apply(&next(&mut slow).await);

    for draw in 1..=10 {
        paint(&canvas, small_rect(draw), draw as u8 + 10);
        let update = next(&mut fast).await;
        assert_eq!(fast_shadow.apply(&update), vec![small_rect(draw)]);
    }
    let update = next(&mut slow).await;
    // The newest shared encode, then a private one of the rectangles it does not cover.
    assert_eq!(update.parts.len(), 2);
    let painted = slow_shadow.apply(&update);
    assert_eq!(painted[0], small_rect(10));
    for draw in 1..10 {
        assert!(painted[1..].iter().any(|r| r.x <= small_rect(draw).x && r.right() >= small_rect(draw).right()
            && r.y <= small_rect(draw).y && r.bottom() >= small_rect(draw).bottom()));
    }
    assert!(slow_shadow.matches(&canvas));
    assert!(idle(&mut slow).await, "one update brings the slow feed up to date");
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (11, 1));
}

#[tokio::test]
async fn a_slow_feed_of_full_screen_frames_costs_no_encode() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut fast, mut slow) = (stage.feed(RAW), stage.feed(RAW));
    let mut slow_shadow = Shadow::new();
    next(&mut fast).await;
    slow_shadow.apply(&next(&mut slow).await);
    let mut newest = None;
    for frame in 1..=10 {
        paint(&canvas, SIZE.rect(), frame);
        newest = Some(next(&mut fast).await);
    }
    let update = next(&mut slow).await;
    assert_eq!(update.parts.len(), 1);
    assert!(Arc::ptr_eq(&update.parts[0], &newest.expect("frames").parts[0]), "the slow feed gets the shared newest frame");
    slow_shadow.apply(&update);
    assert!(slow_shadow.matches(&canvas));
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (11, 0));
}

#[tokio::test]
async fn memory_stays_bounded_and_a_feed_far_behind_gets_the_whole_screen() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut fast, mut slow) = (stage.feed(RAW), stage.feed(RAW));
    let mut slow_shadow = Shadow::new();
    next(&mut fast).await;
    slow_shadow.apply(&next(&mut slow).await);
    for draw in 1..=100 {
        paint(&canvas, small_rect(draw), draw as u8);
        next(&mut fast).await;
        let stats = stage.stats();
        assert!(stats.profile(RAW).expect("raw").retained_deltas <= Stage::HISTORY);
    }
    let update = next(&mut slow).await;
    let painted = slow_shadow.apply(&update);
    assert_eq!(painted, vec![small_rect(100), SIZE.rect()]);
    assert!(slow_shadow.matches(&canvas));
    assert_eq!(stage.stats().private_encodes, 1);
}

#[tokio::test]
async fn each_profile_encodes_once_per_change() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut raw = [stage.feed(RAW), stage.feed(RAW), stage.feed(RAW)];
    let mut planar = [stage.feed(PLANAR), stage.feed(PLANAR)];
    for draw in 0..=5 {
        if draw > 0 {
            paint(&canvas, small_rect(draw), draw as u8);
        }
        for feed in raw.iter_mut().chain(planar.iter_mut()) {
            let update = next(feed).await;
            assert_eq!(update.size, SIZE);
            assert!(!update.parts.is_empty() && update.parts.iter().all(|p| !p.is_empty()));
        }
    }
    let stats = stage.stats();
    assert_eq!((stats.profiles, stats.feeds), (2, 5));
    assert_eq!(stats.profile(RAW).map(|p| (p.shared_encodes, p.private_encodes)), Some((6, 0)));
    assert_eq!(stats.profile(PLANAR).map(|p| (p.shared_encodes, p.private_encodes)), Some((6, 0)));
    assert_eq!(stats.shared_encodes, 12);
}

/// Poll `next()` once and drop it; returns the update if it happened to be ready at once.
async fn poll_once_and_drop(feed: &mut Feed) -> Option<Update> {
    tokio::select! {
        biased;
        update = feed.next() => Some(update.expect("encoding works")),
        () = std::future::ready(()) => None,
    }
}

#[tokio::test]
async fn a_cancelled_wait_for_a_shared_encode_loses_nothing() {
    let size = Size::new(1024, 768);
    let canvas = Canvas::new(size);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW);
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut feed).await);
    paint(&canvas, size.rect(), 3);
    // The first poll starts the shared encode; dropping the future does not stop it.
    let update = match poll_once_and_drop(&mut feed).await {
        Some(update) => update,
        None => next(&mut feed).await,
    };
    shadow.apply(&update);
    assert!(shadow.matches(&canvas));
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (2, 0), "the encode was not started twice");
}

#[tokio::test]
async fn a_cancelled_wait_for_a_private_encode_loses_nothing() {
    let size = Size::new(1024, 768);
    let canvas = Canvas::new(size);
    paint(&canvas, size.rect(), 4);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW);
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut feed).await);
    // A refresh is encoded for this feed alone; the cancelled call started it.
    feed.refresh(Rect::new(0, 0, 1024, 700));
    let update = match poll_once_and_drop(&mut feed).await {
        Some(update) => update,
        None => next(&mut feed).await,
    };
    // Cut into strips that fit a request, together exactly the refreshed rectangle.
    let painted = shadow.apply(&update);
    assert_eq!(painted.iter().fold(Rect::new(0, 0, 0, 0), |a, &b| a.union(b)), Rect::new(0, 0, 1024, 700));
    assert_eq!(painted.iter().map(|r| r.area()).sum::<u64>(), 1024 * 700);
    assert!(shadow.matches(&canvas));
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (1, 1), "the private encode was not started twice");
    assert!(idle(&mut feed).await);
}

#[tokio::test]
async fn refresh_repaints_just_that_rectangle() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 5);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut asker, mut other) = (stage.feed(RAW), stage.feed(RAW));
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut asker).await);
    next(&mut other).await;
    asker.refresh(Rect::new(10, 10, 4, 4));
    let update = next(&mut asker).await;
    assert_eq!(shadow.apply(&update), vec![Rect::new(10, 10, 4, 4)]);
    assert!(idle(&mut other).await, "another terminal's refresh is not shared");
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (1, 1));
}

#[tokio::test]
async fn a_late_feed_gets_the_whole_screen_then_shares() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut early = stage.feed(RAW);
    for draw in 0..3 {
        paint(&canvas, small_rect(draw), draw as u8 + 1);
        next(&mut early).await;
    }
    let mut late = stage.feed(RAW);
    let mut shadow = Shadow::new();
    let first = next(&mut late).await;
    assert_eq!(shadow.apply(&first), vec![SIZE.rect()]);
    assert!(shadow.matches(&canvas));
    assert_eq!(stage.stats().private_encodes, 1);

    paint(&canvas, small_rect(7), 77);
    let a = next(&mut early).await;
    let b = next(&mut late).await;
    assert!(Arc::ptr_eq(&a.parts[0], &b.parts[0]));
    assert_eq!(shadow.apply(&b), vec![small_rect(7)]);
    assert!(shadow.matches(&canvas));
}

#[tokio::test]
async fn a_resize_reaches_every_feed_with_the_whole_new_screen() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut fast, mut slow) = (stage.feed(RAW), stage.feed(RAW));
    let (mut fast_shadow, mut slow_shadow) = (Shadow::new(), Shadow::new());
    fast_shadow.apply(&next(&mut fast).await);
    slow_shadow.apply(&next(&mut slow).await);

    let bigger = Size::new(80, 40);
    canvas.resize(bigger);
    assert_eq!(fast.size(), bigger);
    paint(&canvas, Rect::new(60, 30, 20, 10), 9);
    let update = next(&mut fast).await;
    assert_eq!(update.size, bigger);
    assert_eq!(fast_shadow.apply(&update), vec![bigger.rect()]);
    assert!(fast_shadow.matches(&canvas));
    // More changes after the resize: the slow feed skips the resize but still gets everything.
    for draw in 0..3 {
        paint(&canvas, small_rect(draw), draw as u8 + 20);
        fast_shadow.apply(&next(&mut fast).await);
    }
    let update = next(&mut slow).await;
    assert_eq!(update.size, bigger);
    slow_shadow.apply(&update);
    assert!(slow_shadow.matches(&canvas));
    assert!(fast_shadow.matches(&canvas));
}

#[tokio::test]
async fn a_paused_feed_takes_nothing_and_resumes_with_the_newest_state() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW);
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut feed).await);
    feed.set_paused(true);
    for draw in 1..=5 {
        paint(&canvas, SIZE.rect(), draw);
    }
    assert!(idle(&mut feed).await, "a paused feed gets nothing");
    assert_eq!(stage.stats().shared_encodes, 1, "and starts no encode");
    feed.set_paused(false);
    shadow.apply(&next(&mut feed).await);
    assert!(shadow.matches(&canvas));
    assert_eq!(stage.stats().shared_encodes, 2, "five changes, one encode");
}

#[tokio::test]
async fn feeds_leave_and_the_last_one_takes_its_profile_along() {
    let canvas = Canvas::new(SIZE);
    let stage = Stage::new(Arc::clone(&canvas));
    let a = stage.feed(RAW);
    let b = stage.feed(PLANAR);
    let mut c = stage.feed(RAW);
    assert_eq!(c.stage().stats().feeds, 3);
    assert_eq!(stage.stats().profiles, 2);
    drop(b);
    assert_eq!((stage.stats().feeds, stage.stats().profiles), (2, 1));
    next(&mut c).await;
    drop((a, c));
    assert_eq!((stage.stats().feeds, stage.stats().profiles), (0, 0));
    // A feed of a profile that had left starts over: its first update is the whole screen.
    let mut again = stage.feed(RAW);
    let mut shadow = Shadow::new();
    assert_eq!(shadow.apply(&next(&mut again).await), vec![SIZE.rect()]);
}

#[tokio::test]
async fn small_request_limits_cut_updates_into_strips_that_still_add_up() {
    let size = Size::new(300, 200);
    let canvas = Canvas::new(size);
    paint(&canvas, size.rect(), 6);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(FeedProfile::new(CodecProfile::Uncompressed, 0));
    let mut shadow = Shadow::new();
    let painted = shadow.apply(&next(&mut feed).await);
    assert!(painted.len() > 1, "a 240 KB screen does not fit one 64 KB update");
    assert!(shadow.matches(&canvas));
}

#[test]
fn feeds_and_their_waits_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>(_: &T) {}
    let stage = Stage::new(Canvas::new(SIZE));
    send_sync(&stage);
    let mut feed = stage.feed(RAW);
    send(&feed);
    send(&feed.next());
}

#[tokio::test]
async fn planar_at_an_odd_desktop_width_pads_the_bitmaps_not_the_screen() {
    // 61 wide: a rectangle spanning the whole width cannot be widened with real pixels.
    let size = Size::new(61, 20);
    let canvas = Canvas::new(size);
    paint(&canvas, size.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(PLANAR);
    let mut shadow = Shadow::new();
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![size.rect()]);
    assert_eq!(shadow.widths, vec![64]);
    assert!(shadow.matches(&canvas));
    // At the right edge, a small change grows left over real pixels instead.
    paint(&canvas, Rect::new(60, 5, 1, 1), 2);
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(57, 5, 4, 1)]);
    assert!(shadow.matches(&canvas));
}

#[tokio::test]
async fn a_repaint_of_the_same_pixels_sends_nothing_and_a_change_only_its_cells() {
    let size = Size::new(256, 128);
    let canvas = Canvas::new(size);
    paint(&canvas, size.rect(), 3);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW);
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut feed).await);

    paint(&canvas, size.rect(), 3);
    assert!(idle(&mut feed).await, "the desktop drew what it showed already");

    // One pixel, though the desktop says it drew everything: only its 64x64 cell goes.
    canvas.draw(|pixels, size| {
        let i = (70 * usize::from(size.width) + 100) * 4;
        pixels[i] ^= 0xff;
        vec![size.rect()]
    });
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(64, 64, 64, 64)]);
    assert!(shadow.matches(&canvas));

    // A terminal that joins now still gets the whole screen.
    let mut late = stage.feed(RAW);
    let mut late_shadow = Shadow::new();
    assert_eq!(late_shadow.apply(&next(&mut late).await), vec![size.rect()]);
    assert!(late_shadow.matches(&canvas));
}
