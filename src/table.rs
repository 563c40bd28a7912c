//! Plain aligned-column tables for the CLI.
//!
//! Invariants: every column is as wide as its widest cell (in display
//! columns: a CJK character or an emoji takes two); lines carry no trailing
//! spaces; control characters in cells
//! (a provider-supplied snapshot name, say) are escaped so that they cannot
//! move the cursor or recolour the terminal.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use unicode_width::UnicodeWidthStr;

/// An instant as every human output shows it: in `zone` (the output's one
/// zone), to the second, with the zone's abbreviation:
/// `2026-12-01 08:15:00 CET`.
pub fn instant(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Render `rows` under `headers` within `max_width` display columns by
/// shortening the cells of the `flexible` column (with `…`) as far as
/// needed; the other columns keep their width. Without a limit, as
/// [`render`].
pub fn render_fit(
    headers: &[&str],
    rows: &[Vec<String>],
    max_width: Option<usize>,
    flexible: usize,
) -> String {
    let Some(max) = max_width else {
        return render(headers, rows);
    };
    let others: usize = (0..headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0)))
        .filter(|&i| i != flexible)
        .map(|i| {
            std::iter::once(headers.get(i).map_or(0, |h| h.width()))
                .chain(
                    rows.iter()
                        .map(|r| r.get(i).map_or(0, |c| sanitize(c).width())),
                )
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum();
    let room = max
        .saturating_sub(others)
        .max(headers.get(flexible).map_or(0, |h| h.width()));
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if let Some(cell) = row.get_mut(flexible) {
                *cell = shorten(&sanitize(cell), room);
            }
            row
        })
        .collect();
    render(headers, &rows)
}

/// `text` cut to `width` display columns, ending in `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Render `rows` under `headers`, columns separated by two spaces, with a
/// dashed rule under the header. Rows shorter than the header are padded
/// with empty cells; longer rows add columns.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|h| sanitize(h)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| sanitize(c)).collect())
        .collect();

    let columns = body
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(header.len()))
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in std::iter::once(&header).chain(body.iter()) {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.width());
        }
    }

    let mut out = String::new();
    push_line(&mut out, &header, &widths);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    push_line(&mut out, &rule, &widths);
    for row in &body {
        push_line(&mut out, row, &widths);
    }
    out
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (i, width) in widths.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let cell = cells.get(i).map(String::as_str).unwrap_or("");
        line.push_str(cell);
        let pad = width.saturating_sub(cell.width());
        line.extend(std::iter::repeat_n(' ', pad));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn sanitize(cell: &str) -> String {
    escape_controls(cell).into_owned()
}

/// `text` with every control character escaped (`\n`, `\u{1b}`, ...), so
/// that text from outside (a provider's message, a description) cannot
/// move the cursor, recolour the terminal or start a new log line.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// [`escape_controls`], keeping line breaks: for multi-line messages of
/// our own that may quote text from outside.
pub fn escape_controls_but_newlines(text: &str) -> String {
    text.split('\n')
        .map(|line| escape_controls(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_display_columns_and_fitting_shortens_one_column() {
        let rows = vec![
            vec![
                "日本".to_owned(),
                "a long error message".to_owned(),
                "x".to_owned(),
            ],
            vec!["ab".to_owned(), "short".to_owned(), "y".to_owned()],
        ];
        let full = render(&["Name", "Error", "Z"], &rows);
        let lines: Vec<&str> = full.lines().collect();
        // "日本" is four columns wide, like "Name".
        assert_eq!(lines[2], "日本  a long error message  x");
        let fit = render_fit(&["Name", "Error", "Z"], &rows, Some(20), 1);
        for line in fit.lines() {
            assert!(line.width() <= 20, "{line:?} is {} wide", line.width());
        }
        assert!(fit.contains("a long err…  x"), "{fit}");
        assert!(fit.contains("short"), "{fit}");
        assert_eq!(render_fit(&["Name", "Error", "Z"], &rows, None, 1), full);
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let out = render(
            &["Snapshot", "Action"],
            &[
                row(&["a", "keep"]),
                row(&["daily-20260101_000000", "delete"]),
            ],
        );
        let expected = "\
Snapshot               Action
---------------------  ------
a                      keep
daily-20260101_000000  delete
";
        assert_eq!(out, expected);
    }

    #[test]
    fn ragged_rows_are_padded_and_lines_have_no_trailing_spaces() {
        let out = render(&["A", "B"], &[row(&["x"]), row(&["y", "z", "extra"])]);
        let expected = "\
A  B
-  -  -----
x
y  z  extra
";
        assert_eq!(out, expected);
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let out = render(&["N"], &[row(&["žžž"]), row(&["abc"])]);
        assert_eq!(out, "N\n---\nžžž\nabc\n");
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let out = render(&["N", "X"], &[row(&["evil\u{1b}[2Jname\nnext", "y"])]);
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert_eq!(out.lines().count(), 3, "{out:?}");
        assert!(out.contains("evil\\u{1b}[2Jname\\nnext  y"), "{out:?}");
    }

    #[test]
    fn no_rows_renders_the_header_only() {
        assert_eq!(render(&["A", "Bb"], &[]), "A  Bb\n-  --\n");
        assert_eq!(render(&[], &[]), "\n\n");
    }
}
