//! Text that reaches a terminal. A file name, key or class name comes from
//! a user's files, and a terminal obeys the escape sequences inside it (clear
//! the screen, set the window title, move the cursor over the line above), so
//! every message is cleaned where it is printed, on every stream: control
//! characters, and the Unicode marks that reorder what is shown, appear as
//! `\u{1b}`-style escapes. A value quoted inside a message is also bounded in
//! length, so a 30 MB name gives a one-line error, not a 30 MB one.

use std::borrow::Cow;

/// The most characters of a user's value a message quotes.
pub const QUOTE_LIMIT: usize = 80;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls but
/// the line break (messages are lines), and the bidirectional marks that make
/// text display in another order than it reads.
pub fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each character that could steer a terminal written as an escape.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` on one line for a message: as [`clean`], and line breaks and tabs
/// written `\n`, `\r`, `\t`, so a value cannot start a line of its own.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// A user's value for a message, between quotes: escaped as Rust writes a
/// string (so a line break shows as `\n`), and cut after [`QUOTE_LIMIT`]
/// characters with its full length said.
pub fn quote(value: &str) -> String {
    let chars = value.chars().count();
    if chars <= QUOTE_LIMIT {
        return format!("'{}'", value.escape_debug());
    }
    let head: String = value.chars().take(QUOTE_LIMIT).collect();
    format!("'{}...' ({} bytes)", head.escape_debug(), value.len())
}

/// `eprintln!` for a message that may quote a user's text: the line goes
/// through [`clean`] first.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::terminal::clean(&::std::format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_steer_no_terminal() {
        // Clear screen, set the window title, carriage return, a right-to-left override.
        let hostile = "a\u{1b}[2J b\u{1b}]0;owned\u{7} c\rd \u{202e}txt.exe \u{9b}";
        let shown = clean(hostile);
        assert_eq!(shown, "a\\u{1b}[2J b\\u{1b}]0;owned\\u{7} c\\u{d}d \\u{202e}txt.exe \\u{9b}");
        assert!(!shown.chars().any(hidden));
        assert_eq!(clean("two\nlines, tab\there"), "two\nlines, tab\\u{9}here");
        assert!(matches!(clean("plain"), Cow::Borrowed("plain")));
        assert_eq!(inline("a=\"x\"\nseed = 7\r\u{1b}"), "a=\"x\"\\nseed = 7\\r\\u{1b}");
    }

    #[test]
    fn quotes_are_bounded() {
        assert_eq!(quote("a\nb"), "'a\\nb'");
        let long = "x".repeat(30_000_000);
        let q = quote(&long);
        assert_eq!(q, format!("'{}...' (30000000 bytes)", "x".repeat(QUOTE_LIMIT)));
        // Cut between characters, never inside one.
        assert_eq!(quote(&"é".repeat(100)), format!("'{}...' (200 bytes)", "é".repeat(QUOTE_LIMIT)));
    }
}
