//! Plain-text tables and usage bars for the human output.

/// Left-aligned columns separated by three spaces, `kubectl get` style.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Width of a usage bar, in characters between the brackets.
pub const BAR_WIDTH: u128 = 20;

/// `[#####---------------]  25%`: used out of total, rounded up so that any use shows.
pub fn bar(used: u128, total: u128) -> String {
    if total == 0 {
        return format!("[{}]    -", " ".repeat(BAR_WIDTH as usize));
    }
    let used = used.min(total);
    let filled = (used * BAR_WIDTH).div_ceil(total);
    let percent = used * 100 / total;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled as usize),
        "-".repeat((BAR_WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_any_use_and_a_full_pool() {
        assert_eq!(bar(0, 10), "[--------------------]   0%");
        assert_eq!(bar(1, 1000), "[#-------------------]   0%");
        assert_eq!(bar(5, 10), "[##########----------]  50%");
        assert_eq!(bar(10, 10), "[####################] 100%");
        assert_eq!(bar(0, 0), "[                    ]    -");
    }

    #[test]
    fn columns_line_up() {
        let t = table(&[
            vec!["NAME".into(), "USED".into()],
            vec!["a-long-name".into(), "1".into()],
        ]);
        assert_eq!(t, "NAME          USED\na-long-name   1\n");
    }
}
