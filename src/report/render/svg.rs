//! Inline SVG charts: interval ("forest") plots and a bar chart. All labels are escaped.

use super::format::escape;

/// One row of an interval plot: label, point estimate and optional interval.
pub(crate) struct IntervalRow {
    pub label: String,
    pub value: f64,
    pub ci: Option<[f64; 2]>,
}

const LABEL_W: f64 = 280.0;
const PLOT_W: f64 = 420.0;
const ROW_H: f64 = 24.0;
const AXIS_H: f64 = 30.0;

/// A horizontal interval plot over `[lo, hi]`, with a dashed reference line at `reference`
/// and `ticks` axis labels formatted by `fmt`.
pub(crate) fn interval_plot(
    rows: &[IntervalRow],
    lo: f64,
    hi: f64,
    reference: Option<f64>,
    ticks: &[f64],
    fmt: &dyn Fn(f64) -> String,
    title: &str,
) -> String {
    let width = LABEL_W + PLOT_W + 20.0;
    let height = ROW_H * rows.len() as f64 + AXIS_H + 10.0;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |v: f64| LABEL_W + (v - lo) / span * PLOT_W;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\"><title>{}</title>",
        escape(title)
    );
    let bottom = ROW_H * rows.len() as f64;
    if let Some(r) = reference {
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{bottom:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
            x(r)
        ));
    }
    for (k, row) in rows.iter().enumerate() {
        let y = ROW_H * k as f64 + ROW_H / 2.0;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\">{}</text>",
            LABEL_W - 8.0,
            y + 4.0,
            escape(&row.label)
        ));
        if let Some([a, b]) = row.ci {
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#1f4e79\" stroke-width=\"2\"/>",
                x(a),
                x(b)
            ));
        }
        s.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#1f4e79\"/>",
            x(row.value)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{LABEL_W}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>",
        LABEL_W + PLOT_W
    ));
    for &t in ticks {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            x(t),
            bottom + 16.0,
            escape(&fmt(t))
        ));
    }
    s.push_str("</svg>");
    s
}

/// A vertical bar chart of counts with the first and last labels under the axis.
pub(crate) fn bar_chart(labels: &[String], values: &[u64], title: &str) -> String {
    let width = 720.0;
    let height = 180.0;
    let plot_h = 140.0;
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(1) as f64;
    let bar_w = (width - 60.0) / n;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\"><title>{}</title>",
        escape(title)
    );
    for (k, &v) in values.iter().enumerate() {
        let h = v as f64 / max * plot_h;
        s.push_str(&format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"#1f4e79\"><title>{}: {v}</title></rect>",
            50.0 + bar_w * k as f64,
            plot_h - h,
            (bar_w * 0.9).max(0.5),
            escape(labels.get(k).map(String::as_str).unwrap_or(""))
        ));
    }
    s.push_str(&format!(
        "<line x1=\"50\" y1=\"{plot_h}\" x2=\"{}\" y2=\"{plot_h}\" stroke=\"#333\"/><text x=\"45\" y=\"12\" text-anchor=\"end\" font-size=\"11\">{}</text><text x=\"45\" y=\"{plot_h}\" text-anchor=\"end\" font-size=\"11\">0</text>",
        width - 10.0,
        max as u64
    ));
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        s.push_str(&format!(
            "<text x=\"50\" y=\"{:.1}\" font-size=\"11\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            plot_h + 16.0,
            escape(first),
            width - 10.0,
            plot_h + 16.0,
            escape(last)
        ));
    }
    s.push_str("</svg>");
    s
}

/// One line of a line chart: a name for the legend, a colour and its (x, y) points.
pub(crate) struct Series {
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// Lines over a shared x axis (steps), with a logarithmic y axis when every value is
/// positive (losses span decades). Long series are thinned to about 600 points.
pub(crate) fn line_chart(series: &[Series], title: &str, x_label: &str) -> String {
    let (width, height) = (720.0, 260.0);
    let (left, right, top, bottom) = (64.0, 150.0, 10.0, 34.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let all = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let log = all().count() > 0 && all().all(|p| p.1 > 0.0);
    let fy = |v: f64| if log { v.log10() } else { v };
    let range = |it: &mut dyn Iterator<Item = f64>| {
        it.fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
    };
    let (x0, x1) = range(&mut all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y0, y1) = range(&mut all().map(|p| fy(p.1))).unwrap_or((0.0, 1.0));
    let (y0, y1) = if y1 > y0 {
        (y0, y1)
    } else {
        (y0 - 0.5, y1 + 0.5)
    };
    let xs = if x1 > x0 { x1 - x0 } else { 1.0 };
    let px = |x: f64| left + (x - x0) / xs * plot_w;
    let py = |y: f64| top + plot_h - (fy(y) - y0) / (y1 - y0) * plot_h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" class=\"chart\"><title>{}</title>",
        escape(title)
    );
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>"
    ));
    let label = |v: f64| {
        let v = if log { 10f64.powf(v) } else { v };
        if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
            format!("{v:.1e}")
        } else {
            format!("{v:.3}")
        }
    };
    for (k, v) in [(0, y0), (1, (y0 + y1) / 2.0), (2, y1)] {
        let y = top + plot_h - k as f64 * plot_h / 2.0;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            left - 6.0,
            y + 4.0,
            escape(&label(v))
        ));
    }
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"11\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}{}</text>",
        top + plot_h + 16.0,
        x0,
        left + plot_w,
        top + plot_h + 16.0,
        x1,
        left + plot_w / 2.0,
        top + plot_h + 28.0,
        escape(x_label),
        if log { " (log y)" } else { "" }
    ));
    for (k, line) in series.iter().enumerate() {
        let pts: Vec<&(f64, f64)> = line
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log || p.1 > 0.0))
            .collect();
        let every = pts.len().div_ceil(600).max(1);
        let path: Vec<String> = pts
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || *i + 1 == pts.len())
            .map(|(_, p)| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        let legend_y = top + 14.0 + 18.0 * k as f64;
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline><line x1=\"{:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            path.join(" "),
            escape(&line.name),
            width - right + 10.0,
            width - right + 28.0,
            width - right + 32.0,
            legend_y + 4.0,
            escape(&line.name),
            c = line.colour,
        ));
    }
    s.push_str("</svg>");
    s
}
