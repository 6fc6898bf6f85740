//! How commands print: the bare id or key for scripts by default on create,
//! aligned tables for lists, and JSON with `--json`.

use serde::Serialize;

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
        println!("{}", padded.join("  ").trim_end());
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
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// An optional timestamp for a table cell.
pub fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
