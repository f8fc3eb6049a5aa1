//! Turning values into page text: numbers, durations, escapes for HTML and
//! Markdown, base64 for embedded figures, percent-encoding for links.
//!
//! Every string from a run folder (names, captions, descriptions, config
//! values) passes through one of the escapes here before it reaches a page.

/// A metric as shown in the table: accuracies (named so, in [0, 1]) as
/// percentages, whole numbers whole, others to four significant digits.
pub fn number(metric: &str, v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if is_accuracy(metric, v) {
        return format!("{:.1} %", v * 100.0);
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if (1e-3..1e6).contains(&a) {
        let digits = 3 - a.log10().floor() as i32;
        format!("{:.*}", digits.max(0) as usize, v)
    } else {
        format!("{v:.3e}")
    }
}

/// `ours - reference`, in percentage points for accuracies.
pub fn difference(metric: &str, ours: f64, reference: f64) -> String {
    let d = ours - reference;
    if is_accuracy(metric, ours) && is_accuracy(metric, reference) {
        format!("{:+.1} pt", d * 100.0)
    } else {
        let s = number(metric, d);
        if d > 0.0 {
            format!("+{s}")
        } else {
            s
        }
    }
}

fn is_accuracy(metric: &str, v: f64) -> bool {
    metric.contains("accuracy") && (0.0..=1.0).contains(&v)
}

/// A config value in a settings line: f32-stored floats as their shortest
/// f32 text (`1e-4`, not `0.00009999999747378752`), strings bare, the rest
/// as compact JSON, at most `MAX_VALUE` characters.
pub fn setting(v: &serde_json::Value) -> String {
    const MAX_VALUE: usize = 160;
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && (f as f32) as f64 == f => format!("{}", f as f32),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    truncate(&s, MAX_VALUE)
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Seconds as "0.2 s", "81 s", "14 min 8 s", "2 h 3 min".
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "not recorded".into();
    }
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Text for HTML element content and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text for inline Markdown (a paragraph, a table cell, link text): every
/// character Markdown or HTML could read as markup is escaped, and line
/// breaks become spaces so text cannot start a block of its own.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '!' | '|' | '~' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// [`markdown`] for text that starts a paragraph: a leading "-", "+", "=",
/// ">" or "1." would otherwise start a list, a heading or a quote.
pub fn markdown_block(s: &str) -> String {
    let mut out = markdown(s);
    let first_ok = |t: &str| !matches!(t.chars().next(), Some('-' | '+' | '=' | '>'));
    if !first_ok(&out) {
        out.insert(0, '\\');
    }
    let digits = out.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && matches!(out[digits..].chars().next(), Some('.' | ')')) {
        out.insert(digits, '\\');
    }
    out
}

/// One path segment for a URL: everything but unreserved characters
/// percent-encoded, so a name cannot end the link or add a query.
pub fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, coded) in cases {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn numbers_read_as_the_report_writes_them() {
        assert_eq!(number("test_accuracy", 0.7958333), "79.6 %");
        assert_eq!(number("test_accuracy", 1.0), "100.0 %");
        assert_eq!(number("samples_per_class", 10.0), "10");
        assert_eq!(number("final_loss", 17657.224609375), "17657");
        assert_eq!(number("final_loss", 0.0038752), "0.003875");
        assert_eq!(number("contour_edge_range", 3.637978807091713e-12), "3.638e-12");
        assert_eq!(number("x", f64::NAN), "NaN");
        assert_eq!(difference("test_accuracy", 0.7958, 0.833), "-3.7 pt");
        assert_eq!(difference("test_accuracy", 0.85, 0.796), "+5.4 pt");
        assert_eq!(difference("loss", 2.5, 1.0), "+1.500");
    }

    #[test]
    fn settings_show_f32_values_as_written() {
        assert_eq!(setting(&serde_json::json!(0.00009999999747378752)), "0.0001");
        assert_eq!(setting(&serde_json::json!(0.800000011920929)), "0.8");
        assert_eq!(setting(&serde_json::json!(0.1)), "0.1");
        assert_eq!(setting(&serde_json::json!(60000)), "60000");
        assert_eq!(setting(&serde_json::json!("adam")), "adam");
        assert_eq!(setting(&serde_json::json!([25])), "[25]");
        assert_eq!(setting(&serde_json::json!("x".repeat(500))).chars().count(), 160);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.209), "0.2 s");
        assert_eq!(duration(81.36), "81 s");
        assert_eq!(duration(848.0), "14 min 8 s");
        assert_eq!(duration(7380.0), "2 h 3 min");
        assert_eq!(duration(f64::NAN), "not recorded");
    }

    #[test]
    fn escapes_leave_no_markup() {
        let evil = "<script>alert('x')</script> & \"q\"";
        let h = html(evil);
        assert!(!h.contains('<') && !h.contains('>') && !h.contains('"') && !h.contains('\''));
        let m = markdown("[a](javascript:x) <b> *c* | d\n# e");
        assert_eq!(m, "\\[a\\]\\(javascript:x\\) &lt;b&gt; \\*c\\* \\| d \\# e");
        assert_eq!(markdown_block("- item"), "\\- item");
        assert_eq!(markdown_block("12. x"), "12\\. x");
        assert_eq!(markdown("91.3 % -0.6 pt"), "91.3 % -0.6 pt");
        assert_eq!(url_segment("a b/..?#\"<x>.png"), "a%20b%2F..%3F%23%22%3Cx%3E.png");
    }
}
