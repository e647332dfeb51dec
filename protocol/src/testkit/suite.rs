//! The performance suite's one table. Benchmarks live in three crates and
//! run as separate binaries; each adds its rows to a file in the directory
//! named by `KONSILIUM_BENCH_RESULTS`, and the repository's `bench` script
//! puts the files together in a fixed order. Run alone (the variable
//! unset), a benchmark only prints its own table.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The environment variable naming the directory rows are written to.
pub const RESULTS_DIR: &str = "KONSILIUM_BENCH_RESULTS";

/// One row of the table, in the columns of the `bench` script's header. Every figure is measured in the run that writes
/// the row; the texts carry their own units.
pub struct SuiteRow {
    pub row: String,
    /// What Konsilium did.
    pub measured: String,
    /// The raw equivalent without Konsilium (raw libp2p, batch
    /// verification, ...), with its figure.
    pub baseline: String,
    /// The sum of what the operation cannot avoid, with its parts; a fixed
    /// budget where the issue sets one (memory, CPU, a wall-clock target).
    pub limit: String,
    /// The figure the target judges.
    pub judged: String,
    /// Context beside the judged figure (the ratio to the baseline).
    pub context: String,
    pub target: String,
    pub met: bool,
}

impl SuiteRow {
    fn markdown(&self) -> String {
        let verdict = if self.met { "met" } else { "**missed**" };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            self.row,
            self.measured,
            self.baseline,
            self.limit,
            self.judged,
            self.context,
            self.target,
            verdict
        )
    }
}

/// Writes `rows` as `<bench>.md` in the results directory, replacing an
/// earlier run's. Returns where, or `None` when no directory is set.
pub fn record(bench: &str, rows: &[SuiteRow]) -> std::io::Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os(RESULTS_DIR) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let mut text = String::new();
    for row in rows {
        let _ = write!(text, "{}", row.markdown());
    }
    let path = dir.join(format!("{bench}.md"));
    std::fs::write(&path, text)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_one_markdown_line_with_as_many_cells_as_the_header() {
        let row = SuiteRow {
            row: "r".into(),
            measured: "1 ms".into(),
            baseline: "raw 0.5 ms".into(),
            limit: "0.8 ms".into(),
            judged: "1.25× limit".into(),
            context: "2.0× raw".into(),
            target: "≤ 1.3×".into(),
            met: true,
        };
        let line = row.markdown();
        assert_eq!(line.lines().count(), 1);
        // The `bench` script's header has eight columns.
        assert_eq!(line.matches('|').count(), 9);
        assert!(line.contains("| met |"));
        let missed = SuiteRow { met: false, ..row };
        assert!(missed.markdown().contains("**missed**"));
    }
}
