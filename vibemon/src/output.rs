//! How commands print: the bare id or key for scripts by default on create,
//! aligned tables for lists, and JSON with `--json`.

use std::io::Write;

use serde::Serialize;

/// Prints one line on stdout. A reader that went away (`vibemon … | head`)
/// ends the command quietly, as it ends `ls` or `grep`, instead of a panic.
pub fn line(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("vibemon: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints rows as an aligned table with a header.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        line(padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

/// A list as `--json` asks (the items as JSON) or as a table of `headers`,
/// one row per item.
pub fn list<T: Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        self::json(&items)
    } else {
        table(headers, items.iter().map(row).collect())
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    line(serde_json::to_string_pretty(value).expect("serializable"));
}

/// An optional timestamp for a table cell.
pub fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
