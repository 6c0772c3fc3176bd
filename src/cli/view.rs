//! Rendering shared by the commands: aligned tables and receipt lines.

use std::io::Write;

/// Prints rows as left-aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
}

/// A receipt as `key: value` lines, transport details last.
pub(super) fn receipt_lines(receipt: &serde_json::Value) -> Vec<String> {
    let Ok(receipt) = serde_json::from_value::<crate::deliver::Receipt>(receipt.clone()) else {
        return vec![receipt.to_string()];
    };
    let mut lines = vec![
        format!("location: {}", receipt.location),
        format!("bytes: {}", receipt.bytes),
        format!("sha256: {}", receipt.sha256),
    ];
    lines.extend(receipt.details.iter().map(|(k, v)| format!("{k}: {v}")));
    lines
}
