//! BENCHMARKS.svg: one horizontal bar per figure, rdhost / xrdp on a log axis, from the 1.0 line
//! (equal) to the ratio: green where rdhost is better, red where it is worse; the target
//! as a black tick on the bar's row.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar.
pub struct Bar {
    pub label: String,
    /// rdhost / xrdp.
    pub ratio: f64,
    /// Whether a higher ratio is better for rdhost (frames per second) or a lower one (ms, CPU).
    pub higher_is_better: bool,
    /// The target ratio, if it has one for this figure.
    pub target: Option<f64>,
}

const ROW: u32 = 30;
const LEFT: u32 = 430;
const WIDTH: u32 = 1100;

pub fn svg(bars: &[Bar]) -> Result<String> {
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.ratio.is_finite() && b.ratio > 0.0).collect();
    let height = 110 + ROW * bars.len().max(1) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e:?}");
        root.fill(&WHITE).map_err(e)?;
        // The axis spans every ratio and target, at least 0.1 .. 10, in whole decades.
        let values = bars.iter().flat_map(|b| std::iter::once(b.ratio).chain(b.target));
        let (lo, hi) = values.fold((0.1f64, 10.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
        let n = bars.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("rdhost / xrdp per figure (log scale; green: rdhost better, red: worse; | target)", ("sans-serif", 17))
            .margin(12)
            .margin_left(LEFT)
            .x_label_area_size(34)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..n)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("rdhost / xrdp")
            .x_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(e)?;
        for (i, b) in bars.iter().enumerate() {
            // Top row first.
            let y = n - i as f64 - 1.0;
            let better = if b.higher_is_better { b.ratio >= 1.0 } else { b.ratio <= 1.0 };
            let colour = if better { RGBColor(0x2e, 0x9e, 0x4f) } else { RGBColor(0xd0, 0x3b, 0x2f) };
            let (a, z) = (b.ratio.min(1.0), b.ratio.max(1.0));
            chart.draw_series(std::iter::once(Rectangle::new([(a, y + 0.2), (z, y + 0.8)], colour.filled()))).map_err(e)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.2}", b.ratio),
                    (z, y + 0.5),
                    ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(e)?;
            if let Some(t) = b.target {
                chart.draw_series(std::iter::once(PathElement::new(vec![(t, y + 0.05), (t, y + 0.95)], BLACK.stroke_width(3)))).map_err(e)?;
            }
            let (px, py) = chart.backend_coord(&(lo, y + 0.5));
            root.draw(&Text::new(
                b.label.clone(),
                (px - 8, py),
                ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(e)?;
        }
        // The 1.0 line: rdhost and xrdp equal.
        chart.draw_series(std::iter::once(PathElement::new(vec![(1.0, 0.0), (1.0, n)], BLACK.stroke_width(1)))).map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_targets_are_drawn() {
        let bars = vec![
            Bar { label: "latency".into(), ratio: 0.6, higher_is_better: false, target: Some(0.5) },
            Bar { label: "fps".into(), ratio: 0.4, higher_is_better: true, target: Some(1.0) },
            Bar { label: "not measured".into(), ratio: f64::NAN, higher_is_better: true, target: None },
        ];
        let svg = svg(&bars).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("latency") && svg.contains("fps") && !svg.contains("not measured"));
        // Two bars, in the two colours.
        assert!(svg.contains("#2E9E4F") || svg.contains("#2e9e4f"), "{svg}");
        assert!(svg.contains("#D03B2F") || svg.contains("#d03b2f"), "{svg}");
    }
}
