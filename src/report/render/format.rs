//! Number and text formatting shared by the renderings.

/// Escapes text for HTML and SVG content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

/// Integer with thousands separators: 1204 -> "1,204".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A proportion as a percentage with one decimal: 0.5213 -> "52.1".
pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The confidence level of `alpha` as a percentage without a needless ".0": 0.05 -> "95".
pub(crate) fn level(alpha: f64) -> String {
    let s = format!("{:.1}", 100.0 * (1.0 - alpha));
    s.trim_end_matches(".0").to_string()
}

/// A p-value the way papers print it: "< 0.001", or two significant digits.
pub(crate) fn p_value(p: Option<f64>) -> String {
    match p {
        None => "n/a".to_string(),
        Some(p) if p < 0.001 => "< 0.001".to_string(),
        Some(p) if p >= 0.1 => format!("{p:.2}"),
        Some(p) if p >= 0.01 => format!("{p:.3}"),
        Some(p) => format!("{p:.4}"),
    }
}

/// "= 0.15" or "< 0.001", to follow "p ".
pub(crate) fn p_clause(p: Option<f64>) -> String {
    let s = p_value(p);
    if s.starts_with('<') {
        s
    } else {
        format!("= {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&#39;&quot;&gt;");
        assert_eq!(p_clause(Some(0.1523)), "= 0.15");
        assert_eq!(p_clause(Some(0.0004)), "< 0.001");
        assert_eq!(level(0.05), "95");
        assert_eq!(level(0.1), "90");
        assert_eq!(level(0.005), "99.5");
    }
}
