//! The report's figures: small, dependency-free SVG charts (ROC curves, paired bars with
//! CI whiskers, the running best over rounds, box plots, interval plots). Every chart is a
//! string of inline SVG (HTML needs no namespace for it, so the report names no address at
//! all) with a `<title>` for screen readers, and draws only what it is given.

use std::fmt::Write as _;

/// The final (or only) model's colour.
pub const MODEL: &str = "#0b61d6";
/// The baseline's (the initial model's) colour.
pub const BASELINE: &str = "#e8590c";
/// Reference lines and rounds that were not kept.
pub const MUTED: &str = "#8c959f";
/// Failed, timed-out and refused rounds.
pub const BAD: &str = "#cf222e";
/// Kept rounds.
pub const GOOD: &str = "#1a7f37";

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// About `n` round tick values covering `lo..=hi` (steps of 1, 2 or 5 times a power of ten).
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A value range padded so that every value fits, for axes that need not start at 0.
pub fn range_of(values: impl IntoIterator<Item = f64>, clamp: (f64, f64)) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return clamp;
    }
    let pad = ((hi - lo) * 0.08).max(0.01);
    ((lo - pad).max(clamp.0), (hi + pad).min(clamp.1))
}

fn num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A plotting area inside an SVG of `w` x `h` pixels, with data ranges on both axes.
struct Axes {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * (self.w - self.left - self.right)
    }

    fn py(&self, y: f64) -> f64 {
        self.h
            - self.bottom
            - (y - self.y.0) / (self.y.1 - self.y.0) * (self.h - self.top - self.bottom)
    }

    /// The opening tag, the title, the grid, the ticks and the axis labels.
    fn open(
        &self,
        title: &str,
        x_label: &str,
        y_label: &str,
        x_ticks: &[f64],
        y_ticks: &[f64],
    ) -> String {
        let mut s = format!(
            r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" font-family="system-ui, sans-serif" font-size="11"><title>{t}</title>"#,
            w = self.w,
            h = self.h,
            t = esc(title)
        );
        let (x0, x1) = (self.px(self.x.0), self.px(self.x.1));
        let (y0, y1) = (self.py(self.y.0), self.py(self.y.1));
        for &t in y_ticks {
            let y = self.py(t);
            let _ = write!(
                s,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#eaeef2"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end" fill="#57606a">{v}</text>"##,
                tx = x0 - 4.0,
                ty = y + 3.5,
                v = num(t)
            );
        }
        for &t in x_ticks {
            let x = self.px(t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y2:.1}" stroke="#57606a"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle" fill="#57606a">{v}</text>"##,
                y2 = y0 + 4.0,
                ty = y0 + 15.0,
                v = num(t)
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" stroke="#57606a"/><line x1="{x0:.1}" y1="{y0:.1}" x2="{x0:.1}" y2="{y1:.1}" stroke="#57606a"/>"##
        );
        let _ = write!(
            s,
            r##"<text x="{cx:.1}" y="{by:.1}" text-anchor="middle" fill="#24292f">{xl}</text><text transform="translate(12 {cy:.1}) rotate(-90)" text-anchor="middle" fill="#24292f">{yl}</text>"##,
            cx = (x0 + x1) / 2.0,
            by = self.h - 4.0,
            cy = (y0 + y1) / 2.0,
            xl = esc(x_label),
            yl = esc(y_label)
        );
        s
    }
}

/// A legend entry: a colour and a label.
pub type Key<'a> = (&'a str, String);

fn legend(s: &mut String, x: f64, y: f64, keys: &[Key]) {
    for (i, (colour, label)) in keys.iter().enumerate() {
        let ly = y + i as f64 * 15.0;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{ry:.1}" width="10" height="10" fill="{colour}"/><text x="{tx:.1}" y="{ty:.1}" fill="#24292f">{l}</text>"##,
            ry = ly - 9.0,
            tx = x + 14.0,
            ty = ly,
            l = esc(label)
        );
    }
}

/// A square plot of [0, 1] x [0, 1] with its dashed diagonal (chance for a ROC curve,
/// perfect calibration for a reliability diagram): the axes and the opened SVG.
fn unit_square(title: &str, x_label: &str, y_label: &str) -> (Axes, String) {
    let a = Axes {
        w: 380.0,
        h: 360.0,
        left: 46.0,
        right: 12.0,
        top: 12.0,
        bottom: 40.0,
        x: (0.0, 1.0),
        y: (0.0, 1.0),
    };
    let t = ticks(0.0, 1.0, 5);
    let mut s = a.open(title, x_label, y_label, &t, &t);
    let _ = write!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{MUTED}" stroke-dasharray="4 3"/>"#,
        a.px(0.0),
        a.py(0.0),
        a.px(1.0),
        a.py(1.0)
    );
    (a, s)
}

/// A curve to draw: its colour, legend label and points.
#[derive(Debug)]
pub struct Curve {
    pub colour: &'static str,
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// ROC curves: false-positive rate against sensitivity, with the chance diagonal.
pub fn roc(title: &str, curves: &[Curve]) -> String {
    let (a, mut s) = unit_square(
        title,
        "1 − specificity (false-positive rate)",
        "sensitivity",
    );
    for c in curves {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", a.px(x), a.py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="curve" points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            c.colour
        );
    }
    let keys: Vec<Key> = curves.iter().map(|c| (c.colour, c.label.clone())).collect();
    legend(
        &mut s,
        a.px(0.3),
        a.py(0.05) - 15.0 * (keys.len() as f64 - 1.0),
        &keys,
    );
    s.push_str("</svg>");
    s
}

/// One model's reliability diagram: per bin of predicted probability, the mean prediction,
/// the observed rate and the number of cases.
#[derive(Debug)]
pub struct Reliability {
    pub colour: &'static str,
    pub label: String,
    pub bins: Vec<(f64, f64, usize)>,
}

/// Reliability diagrams: mean predicted probability against the observed rate per bin,
/// with the diagonal of perfect calibration; each bin a dot whose area grows with its cases.
pub fn reliability(title: &str, x_label: &str, y_label: &str, series: &[Reliability]) -> String {
    let (a, mut s) = unit_square(title, x_label, y_label);
    let most = series
        .iter()
        .flat_map(|r| r.bins.iter().map(|b| b.2))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for r in series {
        let pts: Vec<String> = r
            .bins
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", a.px(x), a.py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            pts.join(" "),
            r.colour
        );
        for &(x, y, n) in &r.bins {
            let _ = write!(
                s,
                r#"<circle class="bin" cx="{:.1}" cy="{:.1}" r="{:.1}" fill="{}"><title>{} cases: predicted {:.3}, observed {:.3}</title></circle>"#,
                a.px(x),
                a.py(y),
                2.5 + 5.5 * (n as f64 / most).sqrt(),
                r.colour,
                n,
                x,
                y
            );
        }
    }
    let keys: Vec<Key> = series.iter().map(|r| (r.colour, r.label.clone())).collect();
    legend(&mut s, a.px(0.05), a.py(0.95), &keys);
    s.push_str("</svg>");
    s
}

/// One bar: value, 95% interval, colour.
#[derive(Debug)]
pub struct Bar {
    pub value: f64,
    pub ci: Option<(f64, f64)>,
    pub colour: &'static str,
}

/// A group of bars under one metric name, with the significance mark drawn above it.
#[derive(Debug)]
pub struct BarGroup {
    pub name: String,
    pub bars: Vec<Bar>,
    pub mark: Option<String>,
}

/// Grouped bars on a 0-to-1 scale with CI whiskers; `keys` names the colours.
pub fn bars(title: &str, y_label: &str, groups: &[BarGroup], keys: &[Key]) -> String {
    let per = groups
        .iter()
        .map(|g| g.bars.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let slot = 26.0 * per + 30.0;
    let a = Axes {
        w: (60.0 + slot * groups.len() as f64).max(360.0),
        h: 290.0 + 15.0 * keys.len() as f64,
        left: 46.0,
        right: 12.0,
        top: 30.0 + 15.0 * keys.len() as f64,
        bottom: 62.0,
        x: (0.0, groups.len().max(1) as f64),
        y: (0.0, 1.0),
    };
    let mut s = a.open(title, "", y_label, &[], &ticks(0.0, 1.0, 5));
    for (i, g) in groups.iter().enumerate() {
        let centre = a.px(i as f64 + 0.5);
        let bw = 22.0;
        let start = centre - bw * g.bars.len() as f64 / 2.0;
        let mut top = a.py(0.0);
        for (j, b) in g.bars.iter().enumerate() {
            let x = start + j as f64 * bw;
            let v = b.value.clamp(0.0, 1.0);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{v:.4}</title></rect>"#,
                y = a.py(v),
                w = bw - 3.0,
                h = a.py(0.0) - a.py(v),
                c = b.colour,
                v = b.value
            );
            top = top.min(a.py(v));
            if let Some((lo, hi)) = b.ci {
                let (lo, hi) = (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0));
                let cx = x + (bw - 3.0) / 2.0;
                let _ = write!(
                    s,
                    r##"<path class="whisker" d="M{cx:.1} {l:.1}V{h:.1}M{a1:.1} {l:.1}H{a2:.1}M{a1:.1} {h:.1}H{a2:.1}" stroke="#24292f" fill="none"/>"##,
                    l = a.py(lo),
                    h = a.py(hi),
                    a1 = cx - 4.0,
                    a2 = cx + 4.0
                );
                top = top.min(a.py(hi));
            }
        }
        if let Some(mark) = &g.mark {
            let _ = write!(
                s,
                r##"<text class="mark" x="{centre:.1}" y="{y:.1}" text-anchor="middle" fill="#24292f" font-weight="600">{m}</text>"##,
                y = top - 6.0,
                m = esc(mark)
            );
        }
        let _ = write!(
            s,
            r##"<text transform="translate({centre:.1} {y:.1}) rotate(-25)" text-anchor="end" fill="#24292f">{n}</text>"##,
            y = a.py(0.0) + 14.0,
            n = esc(&g.name)
        );
    }
    legend(&mut s, a.left + 6.0, 16.0, keys);
    s.push_str("</svg>");
    s
}

/// A round on the chart over rounds.
#[derive(Debug)]
pub struct RoundPoint {
    pub round: u32,
    /// The objective on validation, when the round was scored.
    pub value: Option<f64>,
    pub kept: bool,
    /// Whether it ran and was scored (failed, timed-out and refused rounds are not).
    pub done: bool,
}

/// The validation objective of every round (kept rounds filled), and the running best as a
/// step line; rounds without a score are crosses on the bottom edge.
pub fn rounds(title: &str, metric: &str, points: &[RoundPoint]) -> String {
    let last = points.iter().map(|p| p.round).max().unwrap_or(0).max(1) as f64;
    let (lo, hi) = range_of(points.iter().filter_map(|p| p.value), (0.0, 1.0));
    let a = Axes {
        w: (120.0 + 36.0 * last).clamp(560.0, 900.0),
        h: 300.0,
        left: 52.0,
        right: 16.0,
        top: 30.0,
        bottom: 40.0,
        x: (-0.5, last + 0.5),
        y: (lo, hi),
    };
    let step = (last / 12.0).ceil().max(1.0);
    let xt: Vec<f64> = (0..=last as u32)
        .map(f64::from)
        .filter(|r| r % step == 0.0)
        .collect();
    let mut s = a.open(
        title,
        "round",
        &format!("{metric} (validation)"),
        &xt,
        &ticks(lo, hi, 5),
    );
    let mut best: Option<f64> = None;
    let mut path = String::new();
    for p in points {
        if p.kept
            && let Some(v) = p.value
        {
            let x = a.px(f64::from(p.round));
            if best.is_some() {
                let _ = write!(path, "H{x:.1}V{:.1}", a.py(v));
            } else {
                let _ = write!(path, "M{x:.1} {:.1}", a.py(v));
            }
            best = Some(v);
        }
    }
    if best.is_some() {
        let _ = write!(path, "H{:.1}", a.px(last));
        let _ = write!(
            s,
            r#"<path class="best" d="{path}" fill="none" stroke="{GOOD}" stroke-width="2"/>"#
        );
    }
    for p in points {
        let x = a.px(f64::from(p.round));
        match p.value {
            Some(v) if p.done => {
                let (fill, stroke) = if p.kept {
                    (GOOD, GOOD)
                } else {
                    ("#ffffff", MUTED)
                };
                let _ = write!(
                    s,
                    r#"<circle class="round" cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{fill}" stroke="{stroke}" stroke-width="1.5"><title>round {r}: {v:.4}</title></circle>"#,
                    y = a.py(v),
                    r = p.round
                );
            }
            _ => {
                let y = a.py(lo) - 6.0;
                let _ = write!(
                    s,
                    r#"<path class="round" d="M{a1:.1} {b1:.1}L{a2:.1} {b2:.1}M{a1:.1} {b2:.1}L{a2:.1} {b1:.1}" stroke="{BAD}" stroke-width="2"><title>round {r}: no score</title></path>"#,
                    a1 = x - 4.0,
                    a2 = x + 4.0,
                    b1 = y - 4.0,
                    b2 = y + 4.0,
                    r = p.round
                );
            }
        }
    }
    legend(
        &mut s,
        a.left + 6.0,
        16.0,
        &[(GOOD, "kept (running best)".into())],
    );
    legend(&mut s, a.left + 150.0, 16.0, &[(MUTED, "not kept".into())]);
    legend(
        &mut s,
        a.left + 235.0,
        16.0,
        &[(BAD, "no score (failed, timed out, refused)".into())],
    );
    s.push_str("</svg>");
    s
}

/// A box: quartiles and the 5th and 95th percentiles of a subgroup's predicted probability.
#[derive(Debug)]
pub struct BoxStat {
    pub colour: &'static str,
    pub n: usize,
    pub p05: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub p95: f64,
}

/// Box plots in named groups (one box per model), with a dashed line per threshold.
pub fn boxes(
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<BoxStat>)],
    thresholds: &[(&'static str, f64)],
    keys: &[Key],
) -> String {
    let (lo, hi) = range_of(
        groups
            .iter()
            .flat_map(|(_, b)| b.iter().flat_map(|b| [b.p05, b.p95]))
            .chain(thresholds.iter().map(|t| t.1)),
        (0.0, 1.0),
    );
    let a = Axes {
        w: (70.0 + 120.0 * groups.len() as f64).max(380.0),
        h: 300.0 + 15.0 * keys.len() as f64,
        left: 52.0,
        right: 12.0,
        top: 22.0 + 15.0 * keys.len() as f64,
        bottom: 58.0,
        x: (0.0, groups.len().max(1) as f64),
        y: (lo, hi),
    };
    let mut s = a.open(title, "", y_label, &[], &ticks(lo, hi, 5));
    for &(colour, t) in thresholds {
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-dasharray="5 3" opacity="0.7"/>"#,
            a.px(0.0),
            a.px(groups.len().max(1) as f64),
            y = a.py(t)
        );
    }
    for (i, (name, stats)) in groups.iter().enumerate() {
        let centre = a.px(i as f64 + 0.5);
        let bw = 26.0;
        let start = centre - bw * stats.len() as f64 / 2.0;
        for (j, b) in stats.iter().enumerate() {
            let x = start + j as f64 * bw + 2.0;
            let cx = x + (bw - 4.0) / 2.0;
            let _ = write!(
                s,
                r#"<g class="box"><title>n {n}; median {m:.3}; IQR {q1:.3}–{q3:.3}; 5–95%: {p5:.3}–{p95:.3}</title><path d="M{cx:.1} {y5:.1}V{y95:.1}" stroke="{c}"/><rect x="{x:.1}" y="{yq3:.1}" width="{w:.1}" height="{h:.1}" fill="{c}" fill-opacity="0.25" stroke="{c}"/><path d="M{x:.1} {ym:.1}h{w:.1}" stroke="{c}" stroke-width="2"/></g>"#,
                n = b.n,
                m = b.median,
                q1 = b.q1,
                q3 = b.q3,
                p5 = b.p05,
                p95 = b.p95,
                y5 = a.py(b.p05),
                y95 = a.py(b.p95),
                yq3 = a.py(b.q3),
                w = bw - 4.0,
                h = (a.py(b.q1) - a.py(b.q3)).max(1.0),
                ym = a.py(b.median),
                c = b.colour
            );
        }
        let n: Vec<String> = stats.iter().map(|b| b.n.to_string()).collect();
        let mut y = a.py(lo) + 15.0;
        for line in name.split('\n') {
            let _ = write!(
                s,
                r##"<text x="{centre:.1}" y="{y:.1}" text-anchor="middle" fill="#24292f">{l}</text>"##,
                l = esc(line)
            );
            y += 13.0;
        }
        let _ = write!(
            s,
            r##"<text x="{centre:.1}" y="{y:.1}" text-anchor="middle" fill="#57606a">n {n}</text>"##,
            n = n.join(" / ")
        );
    }
    legend(&mut s, a.left + 6.0, 16.0, keys);
    s.push_str("</svg>");
    s
}

/// A point with its 95% interval: colour, value, interval.
pub type Point = (&'static str, f64, Option<(f64, f64)>);

/// One row of an interval plot: a label, and a point with its 95% interval per model.
#[derive(Debug)]
pub struct IntervalRow {
    pub name: String,
    pub points: Vec<Point>,
}

/// Points with horizontal 95% intervals, one row per quantity, with a line at `reference`.
pub fn intervals(
    title: &str,
    x_label: &str,
    rows: &[IntervalRow],
    clamp: (f64, f64),
    reference: Option<f64>,
    keys: &[Key],
) -> String {
    let (lo, hi) = range_of(
        rows.iter()
            .flat_map(|r| r.points.iter())
            .flat_map(|&(_, v, ci)| [Some(v), ci.map(|c| c.0), ci.map(|c| c.1)])
            .flatten()
            .chain(reference),
        clamp,
    );
    let per = rows
        .iter()
        .map(|r| r.points.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let row_h = 14.0 * per + 14.0;
    let a = Axes {
        w: 560.0,
        h: 54.0 + 15.0 * keys.len() as f64 + row_h * rows.len() as f64,
        left: 230.0,
        right: 16.0,
        top: 14.0 + 15.0 * keys.len() as f64,
        bottom: 40.0,
        x: (lo, hi),
        y: (0.0, rows.len().max(1) as f64),
    };
    let mut s = a.open(title, x_label, "", &ticks(lo, hi, 5), &[]);
    if let Some(r) = reference {
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{MUTED}" stroke-dasharray="4 3"/>"#,
            a.py(0.0),
            a.py(rows.len() as f64),
            x = a.px(r)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let top = a.py((rows.len() - i) as f64);
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y:.1}" text-anchor="end" fill="#24292f">{n}</text>"##,
            x = a.left - 8.0,
            y = top + row_h / 2.0 + 4.0,
            n = esc(&row.name)
        );
        for (j, &(colour, v, ci)) in row.points.iter().enumerate() {
            let y = top + 14.0 + j as f64 * 14.0;
            if let Some((l, h)) = ci {
                let _ = write!(
                    s,
                    r#"<path class="whisker" d="M{:.1} {y:.1}H{:.1}" stroke="{colour}" stroke-width="1.5"/>"#,
                    a.px(l),
                    a.px(h)
                );
            }
            let _ = write!(
                s,
                r#"<circle class="point" cx="{:.1}" cy="{y:.1}" r="4" fill="{colour}"><title>{v:.4}{ci}</title></circle>"#,
                a.px(v),
                ci = ci.map_or(String::new(), |(l, h)| format!(" [{l:.4}, {h:.4}]"))
            );
        }
    }
    legend(&mut s, a.left, 14.0, keys);
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(0.83, 0.91, 4);
        assert_eq!(t.len(), 4);
        assert!(
            (t[0] - 0.84).abs() < 1e-12 && (t[3] - 0.9).abs() < 1e-12,
            "{t:?}"
        );
        assert_eq!(ticks(1.0, 1.0, 5), vec![1.0]);
        assert_eq!(ticks(f64::NAN, 1.0, 5).len(), 1);
    }

    #[test]
    fn escaping_keeps_markup_out() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ranges_pad_and_clamp() {
        assert_eq!(range_of([], (0.0, 1.0)), (0.0, 1.0));
        let (lo, hi) = range_of([0.98, 0.99], (0.0, 1.0));
        assert!(
            lo < 0.98 && lo > 0.96 && hi > 0.99 && hi <= 1.0,
            "{lo} {hi}"
        );
        assert_eq!(range_of([0.0, 1.0], (0.0, 1.0)), (0.0, 1.0));
    }

    #[test]
    fn charts_draw_what_they_are_given() {
        let r = roc(
            "ROC",
            &[Curve {
                colour: MODEL,
                label: "final <1>".into(),
                points: vec![(0.0, 0.0), (0.0, 0.5), (1.0, 1.0)],
            }],
        );
        assert!(r.starts_with("<svg") && r.ends_with("</svg>"));
        assert!(r.contains("final &lt;1&gt;") && r.matches("class=\"curve\"").count() == 1);
        let b = bars(
            "bars",
            "value",
            &[BarGroup {
                name: "auc".into(),
                bars: vec![
                    Bar {
                        value: 0.8,
                        ci: Some((0.7, 0.9)),
                        colour: MODEL,
                    },
                    Bar {
                        value: 0.7,
                        ci: None,
                        colour: BASELINE,
                    },
                ],
                mark: Some("*".into()),
            }],
            &[],
        );
        assert_eq!(b.matches("class=\"bar\"").count(), 2);
        assert_eq!(b.matches("class=\"whisker\"").count(), 1);
        assert_eq!(b.matches("class=\"mark\"").count(), 1);
        let pts = [
            RoundPoint {
                round: 0,
                value: Some(0.8),
                kept: true,
                done: true,
            },
            RoundPoint {
                round: 1,
                value: Some(0.7),
                kept: false,
                done: true,
            },
            RoundPoint {
                round: 2,
                value: None,
                kept: false,
                done: false,
            },
            RoundPoint {
                round: 3,
                value: Some(0.85),
                kept: true,
                done: true,
            },
        ];
        let s = rounds("rounds", "auc", &pts);
        assert_eq!(s.matches("class=\"round\"").count(), 4);
        assert_eq!(s.matches("class=\"best\"").count(), 1);
        assert!(s.contains("no score"));
    }
}
