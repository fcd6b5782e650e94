//! The embedded monospace font (DejaVu Sans Mono, regular and bold) and its cell metrics.
//!
//! Parsed fonts and rasterised glyphs are shared by every session of the process: a font costs
//! megabytes once, and a glyph is rasterised once per size, not once per session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fontdue::{Font, FontSettings};

/// Font sizes outside this range are clamped: smaller is unreadable, larger makes one cell huge.
pub const MIN_FONT_PX: f32 = 6.0;
pub const MAX_FONT_PX: f32 = 96.0;

fn fonts() -> &'static [Font; 2] {
    static FONTS: OnceLock<[Font; 2]> = OnceLock::new();
    FONTS.get_or_init(|| {
        let load = |data: &'static [u8]| {
            Font::from_bytes(data, FontSettings::default()).expect("the embedded DejaVu font parses")
        };
        [load(dejavu::sans_mono::regular()), load(dejavu::sans_mono::bold())]
    })
}

/// A rasterised glyph: coverage (0..=255) rows, top to bottom, placed relative to the pen.
#[derive(Debug)]
pub struct Glyph {
    /// Left edge relative to the cell's left edge.
    pub left: i32,
    /// Top edge relative to the cell's top edge.
    pub top: i32,
    pub width: usize,
    pub height: usize,
    pub coverage: Vec<u8>,
}

/// Integer cell geometry for one font size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellMetrics {
    pub width: u16,
    pub height: u16,
    /// Baseline, in pixels from the cell's top.
    pub baseline: u16,
    /// Underline row, in pixels from the cell's top, and its thickness.
    pub underline_y: u16,
    pub underline_thickness: u16,
}

/// One font size: metrics and a glyph cache for regular and bold.
pub struct Face {
    px: f32,
    pub metrics: CellMetrics,
    glyphs: Mutex<HashMap<(char, bool), Arc<Glyph>>>,
}

impl Face {
    /// The shared face for a size (clamped to the supported range).
    pub fn get(px: f32) -> Arc<Face> {
        static FACES: OnceLock<Mutex<HashMap<u32, Arc<Face>>>> = OnceLock::new();
        let px = clamp_px(px);
        let mut faces = FACES.get_or_init(Default::default).lock().unwrap();
        Arc::clone(faces.entry(px.to_bits()).or_insert_with(|| Arc::new(Face::new(px))))
    }

    fn new(px: f32) -> Face {
        let regular = &fonts()[0];
        let line = regular.horizontal_line_metrics(px).expect("DejaVu Sans Mono has horizontal metrics");
        // Monospace: every glyph has the same advance; rounding keeps cells integer-sized.
        let advance = regular.metrics('M', px).advance_width;
        let width = advance.round().max(1.0) as u16;
        let baseline = line.ascent.ceil().max(1.0) as u16;
        // No line gap: box-drawing glyphs span ascent..descent and must join between rows.
        let height = baseline + (-line.descent).ceil().max(1.0) as u16;
        let underline_thickness = (px / 14.0).round().max(1.0) as u16;
        let underline_y = (baseline + underline_thickness.max(2)).min(height - underline_thickness);
        Face {
            px,
            metrics: CellMetrics { width, height, baseline, underline_y, underline_thickness },
            glyphs: Mutex::new(HashMap::new()),
        }
    }

    pub fn glyph(&self, c: char, bold: bool) -> Arc<Glyph> {
        if let Some(glyph) = self.glyphs.lock().unwrap().get(&(c, bold)) {
            return Arc::clone(glyph);
        }
        // Rasterise outside the lock: other sessions keep drawing cached glyphs meanwhile.
        let (m, coverage) = fonts()[usize::from(bold)].rasterize(c, self.px);
        let glyph = Arc::new(Glyph {
            left: m.xmin,
            top: i32::from(self.metrics.baseline) - (m.ymin + m.height as i32),
            width: m.width,
            height: m.height,
            coverage,
        });
        // Bounded by the characters a session prints; a flood of distinct code points is
        // capped so one session cannot grow the shared cache without limit.
        let mut glyphs = self.glyphs.lock().unwrap();
        if glyphs.len() >= 8192 {
            glyphs.clear();
        }
        Arc::clone(glyphs.entry((c, bold)).or_insert(glyph))
    }

    /// The glyph's coverage clipped to `cells` cells, as a `cells * width` by `height` mask.
    pub fn cell_mask(&self, c: char, bold: bool, cells: u16) -> Vec<u8> {
        let m = self.metrics;
        let w = usize::from(m.width) * usize::from(cells);
        let h = usize::from(m.height);
        let mut mask = vec![0u8; w * h];
        let glyph = self.glyph(c, bold);
        for gy in 0..glyph.height {
            let y = glyph.top + gy as i32;
            if y < 0 || y >= h as i32 {
                continue;
            }
            for gx in 0..glyph.width {
                let x = glyph.left + gx as i32;
                if x < 0 || x >= w as i32 {
                    continue;
                }
                let a = glyph.coverage[gy * glyph.width + gx];
                let dst = &mut mask[y as usize * w + x as usize];
                *dst = (*dst).max(a);
            }
        }
        mask
    }
}

fn clamp_px(px: f32) -> f32 {
    if px.is_finite() { px.clamp(MIN_FONT_PX, MAX_FONT_PX) } else { 16.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_at_16px() {
        let face = Face::get(16.0);
        let m = face.metrics;
        assert_eq!((m.width, m.height), (10, 19), "{m:?}");
        assert!(m.baseline < m.height);
        assert!(m.underline_y + m.underline_thickness <= m.height);
    }

    #[test]
    fn glyphs_have_ink_and_space_has_none() {
        let face = Face::get(16.0);
        assert!(face.cell_mask('A', false, 1).iter().any(|&a| a > 200));
        assert!(face.cell_mask(' ', false, 1).iter().all(|&a| a == 0));
        assert_ne!(face.cell_mask('A', false, 1), face.cell_mask('A', true, 1));
    }
}
