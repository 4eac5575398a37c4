//! Latency-by-percentile charts, drawn like the ones in Cloudflare's
//! "Faster Workers KV" post: one line per setup, read latency up, percentile
//! across.
//!
//! The write-to-visible lag (see [`crate::visibility`]) is drawn the same
//! way, in a file of its own ([`write_lag_plot`], next to the latency chart
//! at [`lag_plot_path`]): lag by percentile, one line per setup. A chart
//! file holds one chart of a fixed size, so the lag gets a second file
//! rather than a panel.
//!
//! # Axes
//!
//! - **x, percentile, in nines.** A percentile `p` is placed at
//!   `-log10(1 - p/100)`, so 90, 99, 99.9 and 99.99 are equally spaced and
//!   the tail, where tiering matters, gets most of the width. Ticks are
//!   chosen from 50, 90, 99, 99.9, 99.99, … first and then 0, 75, 95, 99.5,
//!   99.95 where their labels fit.
//! - **y, read latency in ms, log scale.** A tiered read is about 0.3 ms at
//!   p50 and an untiered one about 100 ms; on a linear axis from 0 the tiered
//!   curve would be a flat line along the bottom, while on a log axis both
//!   curves keep their shape and "3× slower" is the same distance anywhere
//!   on the chart. The axis is fitted to the data with a little headroom and
//!   labelled at 1-2-5 steps (or every decade, or 1…9, whichever fits).
//!   There is no 0 on a log axis: latencies below 0.001 ms (1 µs), 0
//!   included, are drawn at 0.001 ms.
//!
//! # Points the axes cannot show as given
//!
//! - p100, the maximum, has no finite position in nines. It is drawn at the
//!   right edge, one nine past the highest other percentile of any curve
//!   (so the step up to the maximum stays visible), and that tick is
//!   labelled `max`. Without p100 points the right edge is the highest
//!   percentile rounded up to whole nines. The axis stops at 99.9999;
//!   anything beyond is drawn there.
//! - Points with a NaN or infinite value, or a percentile outside 0..=100,
//!   are dropped. Points are sorted by percentile before drawing.
//! - A curve with no points left is still listed in the legend, marked
//!   "(no data)". If no curve has a point, there is nothing to scale the
//!   axes by and [`write_plot`] returns [`PlotError::NoData`] instead of
//!   writing a file.
//!
//! # Text
//!
//! PNG text is rasterised from Open Sans Regular, bundled in
//! `loadgen/assets/` (Apache-2.0) and registered with plotters' `ab_glyph`
//! feature, so no system font or fontconfig is needed. plotters 0.3.7
//! drops each glyph's left side bearing when it draws `ab_glyph` text, so
//! PNG text is drawn glyph by glyph, at positions laid out here with the
//! `ab_glyph` crate itself (see `TextMode::PerGlyph`). SVG text is written
//! as `<text>` elements in the viewer's `sans-serif`; the layout around it
//! is measured with Open Sans and leaves some room for wider fonts.
//!
//! The legend sits above the plot, under the title, so it never covers a
//! curve. Tick labels are drawn here too, not by plotters' mesh.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ab_glyph::{Font as _, FontRef, ScaleFont as _};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{
    KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter,
};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One setup's curve: (percentile in 0..100, latency in ms) points, percentile ascending.
#[derive(Debug, Clone)]
pub struct Curve {
    /// The setup's name, shown in the legend.
    pub name: String,
    /// (percentile in 0..=100, latency in ms) points.
    pub points: Vec<(f64, f64)>,
}

/// Why a plot could not be written.
///
/// Only [`PlotError::Io`] can go away on a retry; the others need different
/// arguments.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The path does not end in `.svg` or `.png` (any case).
    #[error("cannot tell the chart format of {path:?}: use a .svg or .png extension")]
    UnknownExtension {
        /// The path given.
        path: PathBuf,
    },
    /// No curve has a point that can be drawn.
    #[error(
        "nothing to plot: no curve has a point with a finite latency and a percentile in 0..=100"
    )]
    NoData,
    /// plotters failed to lay out, draw or encode the chart.
    #[error("drawing {path:?}: {message}")]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// plotters' description of the failure.
        message: String,
    },
    /// The file could not be created or written.
    #[error("writing {path:?}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the read latency curves to `path`; the extension picks the format
/// (.svg or .png).
///
/// Both formats are [`WIDTH`] × [`HEIGHT`] pixels. See the [module
/// docs](self) for how the axes treat p100, zero latencies and empty curves.
pub fn write_plot(path: &Path, title: &str, curves: &[Curve]) -> Result<(), PlotError> {
    write_chart(path, title, READ_LATENCY_AXIS, curves)
}

/// Writes write-to-visible lag curves (percentile, lag in ms) to `path`,
/// like [`write_plot`]. Waits that timed out are at the wait's bound.
pub fn write_lag_plot(path: &Path, title: &str, curves: &[Curve]) -> Result<(), PlotError> {
    write_chart(path, title, LAG_AXIS, curves)
}

/// Where the lag chart goes when the latency chart goes to `plot`: the same
/// directory and format, `-visibility` added to the name (`out.png` →
/// `out-visibility.png`).
pub fn lag_plot_path(plot: &Path) -> PathBuf {
    let stem = plot
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match plot.extension() {
        Some(ext) => format!("{stem}-visibility.{}", ext.to_string_lossy()),
        None => format!("{stem}-visibility"),
    };
    plot.with_file_name(name)
}

/// The latency axis's description on the read latency chart.
const READ_LATENCY_AXIS: &str = "read latency, ms (log scale)";
/// The latency axis's description on the lag chart.
const LAG_AXIS: &str = "write-to-visible lag, ms (log scale)";

/// Writes one chart with `y_label` along the latency axis.
fn write_chart(path: &Path, title: &str, y_label: &str, curves: &[Curve]) -> Result<(), PlotError> {
    let format = Format::of(path)?;
    let data = Data::new(curves)?;
    let draw_err = |message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let io_err = |source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let font = font().map_err(draw_err)?;
    match format {
        Format::Svg => {
            let mut svg = String::new();
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            draw(root, TextMode::Whole, title, y_label, &data).map_err(draw_err)?;
            std::fs::write(path, svg).map_err(io_err)
        }
        Format::Png => {
            // plotters reports a failed save as an opaque image error;
            // creating the file first gives a typed I/O error for the usual
            // causes (missing directory, permissions).
            std::fs::File::create(path).map_err(io_err)?;
            let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
            let drawn = draw(root, TextMode::PerGlyph(font), title, y_label, &data);
            if drawn.is_err() {
                // Leave no empty or partial file behind; the drawing error
                // is the one to report.
                let _ = std::fs::remove_file(path);
            }
            drawn.map_err(draw_err)
        }
    }
}

/// Chart width in pixels (SVG user units).
pub const WIDTH: u32 = 1200;
/// Chart height in pixels (SVG user units).
pub const HEIGHT: u32 = 720;

/// The bundled font, Open Sans Regular; see `loadgen/assets/OpenSans-LICENSE.txt`.
const FONT: &[u8] = include_bytes!("../assets/OpenSans-Regular.ttf");
/// The family the font is registered as. plotters looks fonts up by family
/// name, and SVG viewers get this name, so it stays a generic family.
const FAMILY: &str = "sans-serif";

/// [`FONT`], parsed, and registered with plotters, once per process.
fn font() -> Result<&'static FontRef<'static>, String> {
    static PARSED: OnceLock<Result<FontRef<'static>, String>> = OnceLock::new();
    const INVALID: &str = "the bundled font is not a valid TrueType font";
    PARSED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| INVALID.to_string())?;
            FontRef::try_from_slice(FONT).map_err(|_| INVALID.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

impl Format {
    fn of(path: &Path) -> Result<Self, PlotError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => Err(PlotError::UnknownExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Latencies below this many ms are drawn at it (a log axis has no 0).
const MIN_LATENCY_MS: f64 = 0.001;
/// Headroom above and below the data on the latency axis, as a factor.
const Y_HEADROOM: f64 = 1.15;

/// `-log10(1 - p/100)`: 0 for p0, 1 for p90, 2 for p99, 3 for p99.9.
/// Rounded to 1e-9 so that 99.9 counts as exactly three nines.
fn nines(p: f64) -> f64 {
    let n = 2.0 - (100.0 - p).log10();
    (n * 1e9).round() / 1e9
}

/// The percentile with `k` nines, `k` in 1..=6, as a literal so it prints
/// as written.
fn nines_percentile(k: usize) -> f64 {
    const TABLE: [f64; 7] = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999];
    TABLE[k.clamp(1, TABLE.len() - 1)]
}

/// Percentiles that may get a tick: (percentile, labelled before the others).
const X_CANDIDATES: [(f64, bool); 12] = [
    (0.0, false),
    (50.0, true),
    (75.0, false),
    (90.0, true),
    (95.0, false),
    (99.0, true),
    (99.5, false),
    (99.9, true),
    (99.95, false),
    (99.99, true),
    (99.999, true),
    (99.9999, true),
];

/// The most nines the percentile axis reaches.
const MAX_NINES: usize = 6;

/// The curves after cleaning, and the axis ranges they need.
#[derive(Debug)]
struct Data {
    /// (name, points), points clamped to the axes and sorted.
    curves: Vec<(String, Vec<(f64, f64)>)>,
    /// Leftmost percentile.
    x_lo: f64,
    /// Rightmost percentile; where p100 is drawn.
    x_hi: f64,
    /// Whether some curve has a p100 point, drawn at `x_hi`.
    has_max: bool,
    /// Latency range, ms, headroom included.
    y: Range<f64>,
}

impl Data {
    fn new(curves: &[Curve]) -> Result<Self, PlotError> {
        let mut cleaned: Vec<(String, Vec<(f64, f64)>)> = curves
            .iter()
            .map(|c| {
                let mut points: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .filter(|(p, ms)| ms.is_finite() && (0.0..=100.0).contains(p))
                    .map(|&(p, ms)| (p, ms.max(MIN_LATENCY_MS)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                (c.name.clone(), points)
            })
            .collect();
        let all = || cleaned.iter().flat_map(|(_, pts)| pts.iter());
        if all().next().is_none() {
            return Err(PlotError::NoData);
        }

        let has_max = all().any(|&(p, _)| p >= 100.0);
        let top_nines = all()
            .filter(|&&(p, _)| p < 100.0)
            .map(|&(p, _)| nines(p))
            .fold(0.0, f64::max);
        let k = if has_max {
            top_nines.floor() as usize + 1
        } else {
            top_nines.ceil() as usize
        };
        let x_hi = nines_percentile(k.clamp(2, MAX_NINES));
        let x_min = all()
            .map(|&(p, _)| p.min(x_hi))
            .fold(f64::INFINITY, f64::min);
        let x_lo = X_CANDIDATES
            .iter()
            .map(|&(c, _)| c)
            .filter(|&c| c <= x_min && c < x_hi)
            .fold(0.0, f64::max);

        let (y_min, y_max) = all().fold((f64::INFINITY, 0.0_f64), |(lo, hi), &(_, ms)| {
            (lo.min(ms), hi.max(ms))
        });
        let y = snap_down(y_min / Y_HEADROOM)..snap_up(y_max * Y_HEADROOM);

        for (_, points) in &mut cleaned {
            for point in points.iter_mut() {
                point.0 = point.0.min(x_hi);
            }
        }
        Ok(Self {
            curves: cleaned,
            x_lo,
            x_hi,
            has_max,
            y,
        })
    }
}

/// `m × 10^e` for the mantissas of a 1…9 step, as a value and a label that
/// prints it without float noise.
fn log_tick(m: u32, e: i32) -> (f64, String) {
    let value = f64::from(m) * 10f64.powi(e);
    let decimals = usize::try_from(-e).unwrap_or(0);
    (value, format!("{value:.decimals$}"))
}

/// Round mantissas for the top of the latency axis.
const SNAP_UP: [f64; 12] = [1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
/// Round mantissas for the bottom, all of them tick values so that the
/// bottom edge is labelled.
const SNAP_DOWN: [f64; 3] = [1.0, 2.0, 5.0];

/// The largest `m × 10^e`, `m` in [`SNAP_DOWN`], at or below `v`.
fn snap_down(v: f64) -> f64 {
    let e = v.log10().floor();
    let m = v / 10f64.powi(e as i32) + 1e-9;
    let m = SNAP_DOWN
        .iter()
        .rev()
        .find(|&&s| s <= m)
        .copied()
        .unwrap_or(1.0);
    m * 10f64.powi(e as i32)
}

/// The smallest `m × 10^e`, `m` in 1 or [`SNAP_UP`], at or above `v`.
fn snap_up(v: f64) -> f64 {
    let e = v.log10().floor();
    let m = v / 10f64.powi(e as i32) - 1e-9;
    if m <= 1.0 {
        return 10f64.powi(e as i32);
    }
    let m = SNAP_UP.iter().find(|&&s| s >= m).copied().unwrap_or(10.0);
    m * 10f64.powi(e as i32)
}

/// An axis whose values are placed by `scale` (nines or log10) between
/// `lo` and `hi`.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    scale: fn(f64) -> f64,
    /// Labelled ticks, ascending.
    ticks: Vec<(f64, String)>,
    /// Unlabelled grid lines.
    light: Vec<f64>,
}

impl Axis {
    /// The percentile axis, placed in nines, for a plot `width_px` wide
    /// whose labels are `text_width` pixels wide: candidate ticks are tried
    /// preferred ones first, each kept only if its label clears every kept
    /// label by `gap_px`.
    fn percentile(
        data: &Data,
        width_px: f64,
        gap_px: f64,
        text_width: impl Fn(&str) -> f64,
    ) -> Self {
        let (lo, hi) = (data.x_lo, data.x_hi);
        let span = nines(hi) - nines(lo);
        let px = |p: f64| (nines(p) - nines(lo)) / span * width_px;
        let edge_label = if data.has_max {
            "max".to_string()
        } else {
            hi.to_string()
        };
        let mut ordered = vec![(hi, edge_label)];
        for preferred in [true, false] {
            ordered.extend(
                X_CANDIDATES
                    .iter()
                    .filter(|&&(p, pref)| pref == preferred && p >= lo && p < hi)
                    .map(|&(p, _)| (p, p.to_string())),
            );
        }
        let mut ticks: Vec<(f64, String)> = Vec::new();
        let mut light = Vec::new();
        for (p, label) in ordered {
            let w = text_width(&label);
            let fits = ticks
                .iter()
                .all(|(q, other)| (px(p) - px(*q)).abs() >= (w + text_width(other)) / 2.0 + gap_px);
            if fits {
                ticks.push((p, label));
            } else {
                light.push(p);
            }
        }
        ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self {
            lo,
            hi,
            scale: nines,
            ticks,
            light,
        }
    }

    /// The latency axis, in ms on a log scale, with the densest tick set
    /// (every decade; 1-2-5; 1…9) whose labels are at least `min_gap_px`
    /// apart on a plot `height_px` tall. The 1…9 values not labelled become
    /// light grid lines where they are at least 4 px apart.
    fn latency(range: Range<f64>, height_px: f64, min_gap_px: f64) -> Self {
        let (lo, hi) = (range.start, range.end);
        let px_per_decade = height_px / (hi.log10() - lo.log10());
        let candidates = |mantissas: &[u32]| -> Vec<(f64, String)> {
            let first = lo.log10().floor() as i32;
            let last = hi.log10().ceil() as i32;
            (first..=last)
                .flat_map(|e| mantissas.iter().map(move |&m| log_tick(m, e)))
                .filter(|(v, _)| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
                .collect()
        };
        let min_gap = |ticks: &[(f64, String)]| {
            ticks
                .windows(2)
                .map(|w| (w[1].0.log10() - w[0].0.log10()) * px_per_decade)
                .fold(f64::INFINITY, f64::min)
        };
        let sets = [
            candidates(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            candidates(&[1, 2, 5]),
            candidates(&[1]),
        ];
        let ticks = sets
            .iter()
            .find(|set| set.len() >= 2 && min_gap(set) >= min_gap_px)
            .or(sets.last())
            .cloned()
            .unwrap_or_default();
        let fine = &sets[0];
        let light = if min_gap(fine) >= 4.0 {
            fine.iter()
                .map(|t| t.0)
                .filter(|v| !ticks.iter().any(|t| t.0 == *v))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            lo,
            hi,
            scale: f64::log10,
            ticks,
            light,
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = self.scale;
        let frac = (f(value.clamp(self.lo, self.hi)) - f(self.lo)) / (f(self.hi) - f(self.lo));
        let frac = if frac.is_finite() { frac } else { 0.0 };
        limit.0 + (f64::from(limit.1 - limit.0) * frac).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.iter().map(|t| t.0).collect(),
            KeyPointWeight::Any => self.light.clone(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// plotters' own tick labels are left blank; [`draw`] writes them.
impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, _: &f64) -> String {
        String::new()
    }
}

/// Line colours, in curve order: the Okabe–Ito palette (distinguishable
/// with the common colour-vision deficiencies), yellow left out as too
/// faint on white. Colours repeat from the eighth curve on.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

// Layout, in pixels. Font sizes are plotters' (the glyph box height).
const OUTER_MARGIN: i32 = 16;
const TITLE_SIZE: f64 = 30.0;
const TITLE_ROW: i32 = 46;
const LEGEND_SIZE: f64 = 20.0;
const LEGEND_ROW: i32 = 32;
const LEGEND_SWATCH: i32 = 32;
const LEGEND_SPACING: i32 = 36;
const LABEL_SIZE: f64 = 19.0;
const DESC_SIZE: f64 = 21.0;
const LINE_WIDTH: u32 = 3;
const CHART_MARGIN: (i32, i32, i32, i32) = (8, 12, 10, 36); // top, bottom, left, right
const X_LABEL_AREA: i32 = 64;
const Y_LABEL_AREA: i32 = 92;
const TICK_MARK: i32 = 6;
const X_TICK_GAP: f64 = 14.0;
const Y_TICK_GAP: f64 = 30.0;

/// How text reaches the backend.
#[derive(Debug, Clone, Copy)]
enum TextMode {
    /// One text element per string: SVG, whose viewer lays the text out.
    Whole,
    /// One text element per glyph, placed by [`glyph_lefts`]: bitmaps.
    /// plotters 0.3.7's `ab_glyph` text drops each glyph's left side
    /// bearing, so letters with wide bearings (`1`, `l`, `t`) shift left
    /// and spacing looks uneven; drawn one by one, each glyph's bitmap
    /// starts where it belongs.
    PerGlyph(&'static FontRef<'static>),
}

/// Each character of `text` with the x, in pixels from the text's origin,
/// where its glyph bitmap's left edge belongs at plotters font size `size`:
/// the pen position as plotters' `ab_glyph` text computes it (advances and
/// kerning summed in f32, truncated) plus the left edge of the outline's
/// pixel bounds, which plotters leaves out.
fn glyph_lefts(font: &FontRef<'_>, text: &str, size: f64) -> Vec<(char, i32)> {
    let font = font.as_scaled(size as f32);
    let mut pen = 0f32;
    let mut prev = None;
    text.chars()
        .map(|c| {
            let id = font.glyph_id(c);
            if let Some(prev) = prev {
                pen += font.kern(prev, id);
            }
            prev = Some(id);
            let bearing = font
                .outline_glyph(id.with_scale(font.scale()))
                .map_or(0, |outline| outline.px_bounds().min.x as i32);
            let left = pen as i32 + bearing;
            pen += font.h_advance(id);
            (c, left)
        })
        .collect()
}

/// Writes text on a chart, in one [`TextMode`].
struct Pen<'r, DB: DrawingBackend> {
    root: &'r DrawingArea<DB, Shift>,
    mode: TextMode,
}

impl<DB: DrawingBackend> Pen<'_, DB> {
    fn font_desc(size: f64) -> FontDesc<'static> {
        FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
    }

    /// The width of `text` in pixels, as plotters lays it out.
    fn width(&self, text: &str, size: f64) -> i32 {
        self.root
            .estimate_text_size(text, &TextStyle::from(Self::font_desc(size)))
            .map_or(
                (size * 0.6 * text.chars().count() as f64) as i32,
                |(w, _)| w as i32,
            )
    }

    /// Draws `text` anchored at `pos`; `upright: false` turns it to read
    /// bottom to top.
    fn text(
        &self,
        text: &str,
        size: f64,
        pos: (i32, i32),
        (h, v): (HPos, VPos),
        upright: bool,
    ) -> Result<(), String> {
        let transform = if upright {
            FontTransform::None
        } else {
            FontTransform::Rotate270
        };
        let style = TextStyle::from(Self::font_desc(size).transform(transform));
        let font = match self.mode {
            TextMode::Whole => {
                return self
                    .root
                    .draw(&Text::new(text, pos, style.pos(Pos::new(h, v))))
                    .map_err(|e| e.to_string());
            }
            TextMode::PerGlyph(font) => font,
        };
        // plotters' own anchoring arithmetic, applied to the whole string.
        let width = self.width(text, size);
        let start = match h {
            HPos::Left => 0,
            HPos::Center => -width / 2,
            HPos::Right => -width,
        };
        let style = style.pos(Pos::new(HPos::Left, v));
        let mut buf = [0u8; 4];
        for (c, left) in glyph_lefts(font, text, size) {
            if c.is_whitespace() {
                continue;
            }
            let along = start + left;
            let at = if upright {
                (pos.0 + along, pos.1)
            } else {
                (pos.0, pos.1 - along)
            };
            self.root
                .draw(&Text::new(&*c.encode_utf8(&mut buf), at, style.clone()))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Draws the whole chart on `root` and presents it.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    mode: TextMode,
    title: &str,
    y_label: &str,
    data: &Data,
) -> Result<(), String> {
    let pen = Pen { root: &root, mode };
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let width = root.dim_in_pixel().0 as i32;

    // Legend entries, wrapped into rows no wider than the chart.
    let entries: Vec<(RGBColor, String, i32)> = data
        .curves
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            let label = if points.is_empty() {
                format!("{name} (no data)")
            } else {
                name.clone()
            };
            // An SVG viewer's sans-serif may be wider than the bundled
            // font the layout is measured with; leave it room.
            let text_w = pen.width(&label, LEGEND_SIZE);
            let slack = match mode {
                TextMode::Whole => text_w / 6,
                TextMode::PerGlyph(_) => 0,
            };
            let w = LEGEND_SWATCH + 8 + text_w + slack;
            (PALETTE[i % PALETTE.len()], label, w)
        })
        .collect();
    let row_width = |row: &[&(RGBColor, String, i32)]| {
        row.iter().map(|e| e.2).sum::<i32>() + LEGEND_SPACING * (row.len() as i32 - 1)
    };
    let mut rows: Vec<Vec<&(RGBColor, String, i32)>> = Vec::new();
    for entry in &entries {
        match rows.last_mut() {
            Some(row) if row_width(row) + LEGEND_SPACING + entry.2 <= width - 2 * OUTER_MARGIN => {
                row.push(entry);
            }
            _ => rows.push(vec![entry]),
        }
    }

    // Title and legend.
    pen.text(
        title,
        TITLE_SIZE,
        (width / 2, OUTER_MARGIN + TITLE_ROW / 2),
        (HPos::Center, VPos::Center),
        true,
    )?;
    for (r, row) in rows.iter().enumerate() {
        let mut x = (width - row_width(row)) / 2;
        let y = OUTER_MARGIN + TITLE_ROW + LEGEND_ROW * r as i32 + LEGEND_ROW / 2;
        for (color, label, w) in row {
            root.draw(&PathElement::new(
                vec![(x, y), (x + LEGEND_SWATCH, y)],
                color.stroke_width(LINE_WIDTH),
            ))
            .map_err(|e| e.to_string())?;
            pen.text(
                label,
                LEGEND_SIZE,
                (x + LEGEND_SWATCH + 8, y),
                (HPos::Left, VPos::Center),
                true,
            )?;
            x += w + LEGEND_SPACING;
        }
    }

    // The plot: grid, axes and tick marks from plotters, labels from `pen`.
    let header = OUTER_MARGIN + TITLE_ROW + LEGEND_ROW * rows.len() as i32 + 4;
    let area = root.margin(header, OUTER_MARGIN, OUTER_MARGIN, OUTER_MARGIN);
    let (area_w, area_h) = area.dim_in_pixel();
    let (top, bottom, left, right) = CHART_MARGIN;
    let plot_w = f64::from(area_w as i32 - left - right - Y_LABEL_AREA);
    let plot_h = f64::from(area_h as i32 - top - bottom - X_LABEL_AREA);
    let x_axis = Axis::percentile(data, plot_w, X_TICK_GAP, |t| {
        f64::from(pen.width(t, LABEL_SIZE))
    });
    let y_axis = Axis::latency(data.y.clone(), plot_h, Y_TICK_GAP);
    let x_ticks = x_axis.ticks.clone();
    let y_ticks = y_axis.ticks.clone();

    let mut chart = ChartBuilder::on(&area)
        .margin_top(top)
        .margin_bottom(bottom)
        .margin_left(left)
        .margin_right(right)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .set_all_tick_mark_size(TICK_MARK)
        // plotters' labels are blank and transparent, so nothing is drawn.
        .label_style(TextStyle::from(Pen::<DB>::font_desc(LABEL_SIZE)).color(&TRANSPARENT))
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.06))
        .draw()
        .map_err(|e| e.to_string())?;
    for ((_, points), (color, _, _)) in data.curves.iter().zip(&entries) {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(LINE_WIDTH),
            ))
            .map_err(|e| e.to_string())?;
        // A line through one point draws nothing; mark it instead.
        if let [point] = points.as_slice() {
            chart
                .draw_series([Circle::new(*point, LINE_WIDTH + 2, color.filled())])
                .map_err(|e| e.to_string())?;
        }
    }

    let (xs, ys) = chart.plotting_area().get_pixel_range();
    for (p, label) in &x_ticks {
        let x = chart.backend_coord(&(*p, data.y.start)).0;
        pen.text(
            label,
            LABEL_SIZE,
            (x, ys.end + TICK_MARK + 6),
            (HPos::Center, VPos::Top),
            true,
        )?;
    }
    for (ms, label) in &y_ticks {
        let y = chart.backend_coord(&(data.x_lo, *ms)).1;
        pen.text(
            label,
            LABEL_SIZE,
            (xs.start - TICK_MARK - 6, y),
            (HPos::Right, VPos::Center),
            true,
        )?;
    }
    pen.text(
        "percentile (log scale toward 100)",
        DESC_SIZE,
        ((xs.start + xs.end) / 2, ys.end + X_LABEL_AREA - 14),
        (HPos::Center, VPos::Center),
        true,
    )?;
    pen.text(
        y_label,
        DESC_SIZE,
        (xs.start - Y_LABEL_AREA + 12, (ys.start + ys.end) / 2),
        (HPos::Center, VPos::Center),
        false,
    )?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(name: &str, points: &[(f64, f64)]) -> Curve {
        Curve {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn side_bearings_move_glyphs_right_of_the_pen() {
        let font = font().expect("bundled font loads");
        // At a size equal to Open Sans's ascent minus descent, a pixel is a
        // font unit: '1' advances 1171 units and its outline starts 188
        // units right of the pen.
        assert_eq!(
            glyph_lefts(font, "11", 2789.0),
            [('1', 188), ('1', 1171 + 188)]
        );
        // 'T' advances 1133 units and kerns -143 units with 'o', whose
        // outline starts 115 units right of its pen position.
        assert_eq!(
            glyph_lefts(font, "To", 2789.0),
            [('T', 18), ('o', 1133 - 143 + 115)]
        );
    }

    #[test]
    fn glyph_runs_end_where_plotters_measures_the_text() {
        let font = font().expect("bundled font loads");
        let mut buf = vec![0u8; 3];
        let root = BitMapBackend::with_buffer(&mut buf, (1, 1)).into_drawing_area();
        let pen = Pen {
            root: &root,
            mode: TextMode::PerGlyph(font),
        };
        for size in [LABEL_SIZE, LEGEND_SIZE, TITLE_SIZE] {
            for text in [
                "percentile (log scale toward 100)",
                "To Wo AV 99.999",
                "0.005",
                "max",
            ] {
                // A space ends the run: it has no outline, so its left is
                // the pen position after the text.
                let run = glyph_lefts(font, &format!("{text} "), size);
                let end = run.last().expect("non-empty").1;
                assert_eq!(end, pen.width(text, size), "{text:?} at {size}");
            }
        }
    }

    #[test]
    fn per_glyph_bitmaps_start_where_placed() {
        let font = font().expect("bundled font loads");
        let (w, h) = (200u32, 60u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let pen = Pen {
                root: &root,
                mode: TextMode::PerGlyph(font),
            };
            pen.text("1l", 40.0, (20, 30), (HPos::Left, VPos::Center), true)
                .expect("drawn");
            root.present().expect("presented");
        }
        let inked = |x: u32| (0..h).any(|y| buf[((y * w + x) * 3) as usize] < 128);
        let first_ink = (0..w).find(|&x| inked(x)).expect("some ink");
        let lefts = glyph_lefts(font, "1l", 40.0);
        assert!(lefts[0].1 > 0, "{lefts:?}");
        assert!(
            first_ink.abs_diff(20 + lefts[0].1 as u32) <= 1,
            "ink from x={first_ink}, placed at {lefts:?}"
        );
    }

    #[test]
    fn nines_are_whole_at_90_99_999() {
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(nines(90.0), 1.0);
        assert_eq!(nines(99.0), 2.0);
        assert_eq!(nines(99.9), 3.0);
        assert_eq!(nines(99.99), 4.0);
        assert_eq!(nines(99.9999), 6.0);
    }

    #[test]
    fn the_lag_chart_goes_next_to_the_latency_chart() {
        assert_eq!(
            lag_plot_path(Path::new("out/curves.png")),
            Path::new("out/curves-visibility.png")
        );
        assert_eq!(
            lag_plot_path(Path::new("c.SVG")),
            Path::new("c-visibility.SVG")
        );
        assert_eq!(lag_plot_path(Path::new("c")), Path::new("c-visibility"));
    }

    #[test]
    fn extension_picks_format_in_any_case() {
        assert_eq!(Format::of(Path::new("a/b.svg")).ok(), Some(Format::Svg));
        assert_eq!(Format::of(Path::new("b.PNG")).ok(), Some(Format::Png));
        for bad in ["b.jpg", "b", "svg", "b.svg.gz"] {
            assert!(matches!(
                Format::of(Path::new(bad)),
                Err(PlotError::UnknownExtension { .. })
            ));
        }
    }

    #[test]
    fn max_goes_one_nine_past_the_highest_percentile() {
        let data =
            Data::new(&[curve("a", &[(1.0, 1.0), (99.99, 5.0), (100.0, 9.0)])]).expect("has data");
        assert_eq!((data.x_lo, data.x_hi), (0.0, 99.999));
        assert!(data.has_max);
        assert_eq!(data.curves[0].1.last(), Some(&(99.999, 9.0)));

        // 99.9 is exactly three nines: the max goes to 99.99, not onto 99.9.
        let data =
            Data::new(&[curve("a", &[(50.0, 1.0), (99.9, 5.0), (100.0, 9.0)])]).expect("has data");
        assert_eq!((data.x_lo, data.x_hi), (50.0, 99.99));
    }

    #[test]
    fn without_max_the_edge_is_the_next_whole_nine() {
        let data = Data::new(&[curve("a", &[(60.0, 1.0), (99.95, 2.0)])]).expect("has data");
        assert_eq!((data.x_lo, data.x_hi), (50.0, 99.99));
        assert!(!data.has_max);
        let data = Data::new(&[curve("a", &[(99.999999, 2.0)])]).expect("has data");
        assert_eq!(data.x_hi, 99.9999);
        assert!(data.x_lo < data.x_hi);
    }

    #[test]
    fn bad_points_are_dropped_and_low_latencies_floored() {
        let data = Data::new(&[curve(
            "a",
            &[
                (f64::NAN, 1.0),
                (101.0, 1.0),
                (-1.0, 1.0),
                (50.0, f64::INFINITY),
                (90.0, 0.0),
                (50.0, 2.0),
            ],
        )])
        .expect("has data");
        assert_eq!(data.curves[0].1, vec![(50.0, 2.0), (90.0, MIN_LATENCY_MS)]);
        assert!(data.y.start <= MIN_LATENCY_MS && data.y.end >= 2.0);
    }

    #[test]
    fn no_points_at_all_is_no_data() {
        assert!(matches!(Data::new(&[]), Err(PlotError::NoData)));
        assert!(matches!(
            Data::new(&[curve("a", &[]), curve("b", &[(f64::NAN, 1.0)])]),
            Err(PlotError::NoData)
        ));
    }

    #[test]
    fn latency_range_snaps_to_round_values() {
        assert_eq!(snap_down(0.26), 0.2);
        assert_eq!(snap_down(0.6), 0.5);
        assert_eq!(snap_down(3.0), 2.0);
        assert_eq!(snap_down(10.0), 10.0);
        assert_eq!(snap_up(1136.0), 1200.0);
        assert_eq!(snap_up(520.0), 600.0);
        assert_eq!(snap_up(950.0), 1000.0);
        assert_eq!(snap_up(100.0), 100.0);
    }

    #[test]
    fn latency_ticks_thin_out_with_the_span() {
        let labels = |axis: &Axis| axis.ticks.iter().map(|t| t.1.clone()).collect::<Vec<_>>();
        let wide = Axis::latency(0.2..600.0, 480.0, 30.0);
        assert_eq!(
            labels(&wide),
            [
                "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100", "200", "500"
            ]
        );
        let huge = Axis::latency(0.001..100_000.0, 480.0, 30.0);
        assert_eq!(
            labels(&huge),
            [
                "0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000", "100000"
            ]
        );
        let narrow = Axis::latency(9.0..20.0, 480.0, 30.0);
        assert!(labels(&narrow).len() >= 3, "{:?}", labels(&narrow));
    }
}
