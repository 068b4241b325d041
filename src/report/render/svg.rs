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
