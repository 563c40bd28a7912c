//! Plain aligned-column tables for the CLI.
//!
//! Invariants: every column is as wide as its widest cell (counted in
//! characters); lines carry no trailing spaces; control characters in cells
//! (a provider-supplied snapshot name, say) are escaped so that they cannot
//! move the cursor or recolour the terminal.

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
            widths[i] = widths[i].max(cell.chars().count());
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
        let pad = width.saturating_sub(cell.chars().count());
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
