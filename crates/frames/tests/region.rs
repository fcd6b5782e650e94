//! Feeds that show a region of the desktop (Desktop Sharing's shared rectangle): the region's
//! size, its pixels from its top-left corner, only damage inside it, one encode per region and
//! codec, planar's widths at an unaligned right edge, and regions that no longer fit the desktop.

mod common;

use std::sync::Arc;

use common::{Shadow, colour, idle, next, paint};
use rdhost_desktop::{Canvas, Rect, Size};
use rdhost_frames::{CodecProfile, FeedProfile, Stage};

const RAW: FeedProfile = FeedProfile::new(CodecProfile::Uncompressed, 4 * 1024 * 1024);
const PLANAR: FeedProfile = FeedProfile::new(CodecProfile::Planar, 4 * 1024 * 1024);
const DESKTOP: Size = Size::new(200, 100);
const REGION: Rect = Rect::new(10, 20, 100, 50);

fn region_size(region: Rect) -> Size {
    Size::new(region.width, region.height)
}

#[test]
fn profiles_are_built_whole_and_narrowed_to_a_region() {
    let whole = FeedProfile::new(CodecProfile::Planar, 1000);
    assert_eq!((whole.codec, whole.max_request_size, whole.region), (CodecProfile::Planar, 1000, None));
    let shared = whole.with_region(Some(REGION));
    assert_eq!(shared.region, Some(REGION));
    assert_ne!(shared, whole, "a region is part of what terminals must have in common");
    assert_eq!(shared.with_region(None), whole);
}

#[tokio::test]
async fn the_first_update_is_the_whole_region_from_its_top_left() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let profile = RAW.with_region(Some(REGION));
    let mut feed = stage.feed(profile);
    assert_eq!(feed.profile(), profile);
    assert_eq!(feed.size(), Size::new(100, 50));
    let mut shadow = Shadow::new();
    let first = next(&mut feed).await;
    assert_eq!(first.size, Size::new(100, 50));
    assert_eq!(shadow.apply(&first), vec![Rect::new(0, 0, 100, 50)]);
    assert_eq!(shadow.pixel(0, 0), colour(10, 20, 1));
    assert_eq!(shadow.pixel(99, 49), colour(109, 69, 1));
    assert!(shadow.shows(&canvas, REGION));
    assert!(idle(&mut feed).await);
}

#[tokio::test]
async fn damage_outside_the_region_costs_nothing() {
    let canvas = Canvas::new(DESKTOP);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW.with_region(Some(REGION)));
    next(&mut feed).await;
    // Left of, right of, above, below, and touching the region's edges from outside.
    for (i, rect) in [
        Rect::new(0, 0, 10, 100),
        Rect::new(110, 0, 90, 100),
        Rect::new(10, 0, 100, 20),
        Rect::new(10, 70, 100, 30),
    ]
    .into_iter()
    .enumerate()
    {
        // One at a time: the canvas may merge damage of separate draws into one rectangle.
        paint(&canvas, rect, i as u8 + 2);
        assert!(idle(&mut feed).await, "nothing inside the region changed: {rect:?}");
    }
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (1, 0), "and nothing was encoded: {stats:?}");
}

#[tokio::test]
async fn damage_straddling_the_region_is_clipped_and_translated() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(RAW.with_region(Some(REGION)));
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut feed).await);

    // Over the top-left corner: (10,20)..(30,30) of the desktop is (0,0)..(20,10) of the region.
    paint(&canvas, Rect::new(0, 10, 30, 20), 3);
    let update = next(&mut feed).await;
    assert_eq!(update.size, Size::new(100, 50));
    assert_eq!(shadow.apply(&update), vec![Rect::new(0, 0, 20, 10)]);
    assert_eq!(shadow.pixel(0, 0), colour(10, 20, 3));
    assert!(shadow.shows(&canvas, REGION));

    // Over the bottom-right corner.
    paint(&canvas, Rect::new(100, 60, 50, 50), 4);
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(90, 40, 10, 10)]);
    assert_eq!(shadow.pixel(99, 49), colour(109, 69, 4));
    assert!(shadow.shows(&canvas, REGION));

    // Across the whole region and beyond.
    paint(&canvas, DESKTOP.rect(), 5);
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(0, 0, 100, 50)]);
    assert!(shadow.shows(&canvas, REGION));
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (4, 0));
}

#[tokio::test]
async fn refreshes_and_late_joiners_are_in_the_regions_coordinates() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let profile = RAW.with_region(Some(REGION));
    let mut early = stage.feed(profile);
    let mut shadow = Shadow::new();
    shadow.apply(&next(&mut early).await);
    early.refresh(Rect::new(95, 45, 20, 20));
    assert_eq!(shadow.apply(&next(&mut early).await), vec![Rect::new(95, 45, 5, 5)], "clipped to the region's screen");
    assert!(shadow.shows(&canvas, REGION));

    paint(&canvas, Rect::new(50, 30, 4, 4), 6);
    next(&mut early).await;
    let mut late = stage.feed(profile);
    let mut late_shadow = Shadow::new();
    assert_eq!(late_shadow.apply(&next(&mut late).await), vec![Rect::new(0, 0, 100, 50)]);
    assert!(late_shadow.shows(&canvas, REGION));
}

#[tokio::test]
async fn feeds_with_the_same_region_share_one_encode() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let shared = RAW.with_region(Some(REGION));
    let other = RAW.with_region(Some(Rect::new(120, 0, 80, 100)));
    let (mut a, mut b) = (stage.feed(shared), stage.feed(shared));
    let mut c = stage.feed(other);
    let mut whole = stage.feed(RAW);
    let (mut sa, mut sb, mut sc, mut sw) = (Shadow::new(), Shadow::new(), Shadow::new(), Shadow::new());
    assert_eq!((stage.stats().profiles, stage.stats().feeds), (3, 4));

    for draw in 0..4u8 {
        if draw > 0 {
            // Inside the shared region, the other region, and both (straddling x = 110..120
            // which neither shows).
            paint(&canvas, Rect::new(20 + u16::from(draw) * 10, 30, 5, 5), draw + 10);
            paint(&canvas, Rect::new(130, u16::from(draw) * 10, 5, 5), draw + 20);
        }
        let (ua, ub) = (next(&mut a).await, next(&mut b).await);
        assert_eq!(ua.parts.len(), 1);
        assert!(Arc::ptr_eq(&ua.parts[0], &ub.parts[0]), "the very same bytes: encoded once");
        sa.apply(&ua);
        sb.apply(&ub);
        sc.apply(&next(&mut c).await);
        sw.apply(&next(&mut whole).await);
        assert!(sa.shows(&canvas, REGION) && sb.shows(&canvas, REGION));
        assert!(sc.shows(&canvas, Rect::new(120, 0, 80, 100)));
        // A feed without a region is the whole desktop, in the desktop's coordinates.
        assert!(sw.matches(&canvas));
    }
    let stats = stage.stats();
    assert_eq!(stats.profile(shared).map(|p| (p.feeds, p.shared_encodes, p.private_encodes)), Some((2, 4, 0)));
    assert_eq!(stats.profile(other).map(|p| (p.feeds, p.shared_encodes, p.private_encodes)), Some((1, 4, 0)));
    assert_eq!(stats.profile(RAW).map(|p| (p.feeds, p.shared_encodes, p.private_encodes)), Some((1, 4, 0)));
    assert_eq!(stats.shared_encodes, 12);
}

/// Every rectangle a planar feed painted is a multiple of 4 wide, or spans its whole screen.
fn planar_widths(painted: &[Rect], screen: Size) {
    for rect in painted {
        assert!(rect.width % 4 == 0 || rect.width == screen.width, "{rect:?} on a {screen:?} screen");
    }
}

#[tokio::test]
async fn planar_gets_aligned_widths_inside_a_region_of_odd_width() {
    let desktop = Size::new(64, 32);
    let canvas = Canvas::new(desktop);
    paint(&canvas, desktop.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    // Odd x and odd width: the region's right edge is not on the desktop's 4-pixel grid either.
    let region = Rect::new(5, 3, 37, 20);
    let mut feed = stage.feed(PLANAR.with_region(Some(region)));
    let screen = region_size(region);
    assert_eq!(feed.size(), screen);
    let mut shadow = Shadow::new();
    let painted = shadow.apply(&next(&mut feed).await);
    assert_eq!(painted, vec![screen.rect()], "the whole screen, drawn no further than its edge");
    assert_eq!(shadow.widths, vec![40], "in a bitmap padded to a multiple of 4");
    assert!(shadow.shows(&canvas, region));

    for (draw, rect, expected) in [
        // One pixel at the region's left edge: widened to the right, on the region's grid.
        (2u8, Rect::new(5, 4, 1, 1), Rect::new(0, 1, 4, 1)),
        // One pixel on the region's right edge (the canvas widened it to (40,5) 4 wide):
        // widened to the left, never past the edge.
        (3, Rect::new(41, 5, 1, 1), Rect::new(33, 2, 4, 1)),
        // Straddling the right edge, from inside (x = 36 once the canvas aligned it) to the
        // desktop's edge: the last 6 columns, in 8.
        (4, Rect::new(39, 10, 25, 2), Rect::new(29, 7, 8, 2)),
        // The canvas aligns on its own grid (8..20 here); already a multiple of 4 wide, the
        // rectangle stays off the region's grid.
        (5, Rect::new(10, 12, 8, 2), Rect::new(3, 9, 12, 2)),
    ] {
        paint(&canvas, rect, draw);
        let painted = shadow.apply(&next(&mut feed).await);
        planar_widths(&painted, screen);
        assert_eq!(painted, vec![expected], "painting {rect:?}");
        assert!(shadow.shows(&canvas, region), "after painting {rect:?}");
    }

    // A refresh of the last column is made encodable the same way.
    feed.refresh(Rect::new(36, 0, 1, 20));
    let painted = shadow.apply(&next(&mut feed).await);
    assert_eq!(painted, vec![Rect::new(33, 0, 4, 20)]);
    assert!(shadow.shows(&canvas, region));
}

#[tokio::test]
async fn a_region_narrower_than_the_alignment_is_drawn_from_padded_bitmaps() {
    let canvas = Canvas::new(Size::new(64, 32));
    paint(&canvas, Size::new(64, 32).rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let region = Rect::new(7, 7, 3, 5);
    let mut feed = stage.feed(PLANAR.with_region(Some(region)));
    let mut shadow = Shadow::new();
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(0, 0, 3, 5)]);
    paint(&canvas, Rect::new(8, 8, 1, 1), 9);
    // The canvas widened the pixel to (8,8) 4 wide; the region holds 2 of those.
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(1, 1, 2, 1)]);
    assert_eq!(shadow.widths, vec![4, 4]);
    assert!(shadow.shows(&canvas, region));
}

#[tokio::test]
async fn a_region_the_desktop_shrinks_under_shows_what_is_left_then_black() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let region = Rect::new(150, 50, 100, 100);
    let mut feed = stage.feed(RAW.with_region(Some(region)));
    let mut shadow = Shadow::new();

    // Reaching past the desktop: the part inside.
    assert_eq!(feed.size(), Size::new(50, 50));
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(0, 0, 50, 50)]);
    assert!(shadow.shows(&canvas, Rect::new(150, 50, 50, 50)));
    paint(&canvas, Rect::new(190, 90, 20, 20), 2);
    assert_eq!(shadow.apply(&next(&mut feed).await), vec![Rect::new(40, 40, 10, 10)]);
    assert!(shadow.shows(&canvas, Rect::new(150, 50, 50, 50)));

    // The desktop shrinks away from the region entirely: black at the region's size, never
    // the rest of the desktop.
    canvas.resize(Size::new(120, 80));
    paint(&canvas, Size::new(120, 80).rect(), 3);
    assert_eq!(feed.size(), Size::new(100, 100));
    let update = next(&mut feed).await;
    assert_eq!(update.size, Size::new(100, 100));
    assert_eq!(shadow.apply(&update), vec![Rect::new(0, 0, 100, 100)]);
    assert!(shadow.pixels.iter().all(|&b| b == 0), "nothing of the desktop shows");
    paint(&canvas, Size::new(120, 80).rect(), 4);
    assert!(idle(&mut feed).await, "nothing the region shows can change");

    // The desktop grows over all of it: the region's pixels at its full size.
    canvas.resize(Size::new(300, 200));
    paint(&canvas, Size::new(300, 200).rect(), 5);
    let update = next(&mut feed).await;
    assert_eq!(update.size, Size::new(100, 100));
    shadow.apply(&update);
    assert!(shadow.shows(&canvas, region));
    assert_eq!(shadow.pixel(0, 0), colour(150, 50, 5));
}

#[tokio::test]
async fn a_region_outside_the_desktop_from_the_start_is_black_for_early_and_late_feeds() {
    let canvas = Canvas::new(DESKTOP);
    paint(&canvas, DESKTOP.rect(), 1);
    let stage = Stage::new(Arc::clone(&canvas));
    let profile = PLANAR.with_region(Some(Rect::new(500, 500, 30, 10)));
    let mut early = stage.feed(profile);
    let mut shadow = Shadow::new();
    assert_eq!(shadow.apply(&next(&mut early).await), vec![Rect::new(0, 0, 30, 10)]);
    assert_eq!(shadow.size, Size::new(30, 10));
    assert!(shadow.pixels.iter().all(|&b| b == 0));
    let mut late = stage.feed(profile);
    let mut late_shadow = Shadow::new();
    assert_eq!(late_shadow.apply(&next(&mut late).await), vec![Rect::new(0, 0, 30, 10)]);
    assert!(late_shadow.pixels.iter().all(|&b| b == 0));

    // An empty region shows nothing of the desktop either.
    let mut empty = stage.feed(RAW.with_region(Some(Rect::new(10, 10, 0, 0))));
    assert_eq!(empty.size(), Size::new(1, 1));
    let update = next(&mut empty).await;
    assert_eq!(update.size, Size::new(1, 1));
    let mut empty_shadow = Shadow::new();
    empty_shadow.apply(&update);
    assert_eq!(empty_shadow.pixels, vec![0; 4]);
}
