//! Text that came from outside (a value typed by an operator, a provider's
//! error body) cut to a bounded length before it is echoed in a message,
//! stored or printed: a 100 KB schedule or a 10 MB error page must not come
//! back whole.

use std::borrow::Cow;

/// At most this many characters of a value are echoed in a message.
pub const ECHO_MAX: usize = 200;

/// At most this many bytes of an error are stored or printed.
pub const ERROR_MAX: usize = 4096;

/// `text` cut to [`ECHO_MAX`] characters for a message, marked when cut.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ECHO_MAX) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!(
            "{}… ({} characters in all)",
            &text[..at],
            text.chars().count()
        )),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) followed by
/// a mark saying how long it was; unchanged when it fits.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max || already_bounded(text, max) {
        return Cow::Borrowed(text);
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    Cow::Owned(format!(
        "{}… [truncated: {} bytes in all]",
        &text[..at],
        text.len()
    ))
}

/// True when `text` is the output of [`bounded`] with this `max` (so that
/// bounding twice, at the source and where it is stored, keeps the first
/// mark with the original length).
fn already_bounded(text: &str, max: usize) -> bool {
    text.strip_suffix(" bytes in all]")
        .and_then(|t| t.rsplit_once("… [truncated: "))
        .is_some_and(|(head, n)| head.len() <= max && n.bytes().all(|b| b.is_ascii_digit()))
}

/// [`bounded`] to [`ERROR_MAX`], for error messages.
pub fn bounded_error(text: &str) -> Cow<'_, str> {
    bounded(text, ERROR_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_left_alone() {
        assert_eq!(excerpt("30 5 * * *"), "30 5 * * *");
        assert_eq!(bounded("abc", 3), "abc");
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let long = "x".repeat(100_000);
        let e = excerpt(&long);
        assert!(
            e.len() < 300 && e.ends_with("(100000 characters in all)"),
            "{e}"
        );
        let b = bounded_error(&long);
        assert!(b.len() < ERROR_MAX + 64, "{}", b.len());
        assert!(b.ends_with("[truncated: 100000 bytes in all]"), "{b}");
        assert_eq!(bounded_error(&b), b, "bounding twice keeps the first mark");
    }

    #[test]
    fn cutting_respects_character_boundaries() {
        let text = "é".repeat(10);
        let b = bounded(&text, 5);
        assert!(b.starts_with("éé…"), "{b}");
        let long = "ž".repeat(ECHO_MAX + 1);
        let e = excerpt(&long);
        assert!(e.starts_with(&"ž".repeat(ECHO_MAX)), "{e}");
    }
}
