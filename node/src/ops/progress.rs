//! Progress of long byte transfers (attachments between nodes), so that a
//! person watching a 20 MiB upload sees it move instead of a silent pause.
//!
//! On a terminal it is a live bar on stderr with rate and ETA; anywhere else
//! (CI logs, `| cat`, files) a redrawn bar would be noise, so it becomes a
//! handful of plain lines: the start, each quarter passed, and the average
//! rate at the end.

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One transfer's progress; `&self` methods so it can be shared by whoever
/// sees the bytes move.
pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    /// `None` when stderr is not a terminal: then the plain lines are used.
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

struct State {
    /// The last quarter mark (0 to 3) already printed as a plain line.
    announced: u8,
    finished: bool,
}

impl Progress {
    /// Starts the clock: the closing rate counts from here, so create it when
    /// the transfer begins, not when it is planned.
    pub fn bytes(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{prefix} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix(label.to_owned())
        });
        if bar.is_none() {
            plain(&start_line(label, total));
        }
        Progress {
            label: label.to_owned(),
            total,
            started: Instant::now(),
            bar,
            state: Mutex::new(State {
                announced: 0,
                finished: false,
            }),
        }
    }

    /// An absolute count, not an increment, because the reports it mirrors
    /// (a peer's "I have N bytes") are absolute and may repeat.
    pub fn set(&self, done: u64) {
        let done = done.min(self.total);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if let Some(quarter) = quarter_to_announce(done, self.total, state.announced) {
                    state.announced = quarter;
                    plain(&format!(
                        "{}: {} of {} ({}%)",
                        self.label,
                        HumanBytes(done),
                        HumanBytes(self.total),
                        percent(done, self.total)
                    ));
                }
            }
        }
    }

    /// The transfer is complete; later calls do nothing, so every path that
    /// sees the end may call it.
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished {
            return;
        }
        state.finished = true;
        let summary = summary(self.total, self.started.elapsed());
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid"),
                );
                bar.finish_with_message(summary);
            }
            None => plain(&format!("{}: {summary}", self.label)),
        }
    }
}

/// Which quarter mark (1 to 3) a plain update should announce, if any: at
/// most one line per update however many marks it jumps over, and none at
/// 100%, which the closing line reports with the rate.
fn quarter_to_announce(done: u64, total: u64, announced: u8) -> Option<u8> {
    if total == 0 {
        return None;
    }
    let quarter = (u128::from(done.min(total)) * 4 / u128::from(total)) as u8;
    (quarter > announced && quarter < 4).then_some(quarter)
}

fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
}

fn start_line(label: &str, total: u64) -> String {
    format!("{label}: 0 B of {}", HumanBytes(total))
}

/// The average over the whole transfer, not the last moment's rate: that is
/// what a person compares between runs.
fn summary(bytes: u64, elapsed: Duration) -> String {
    // A transfer on loopback can finish within the clock's resolution.
    let seconds = elapsed.as_secs_f64().max(0.001);
    format!(
        "{} in {:.1} s ({}/s)",
        HumanBytes(bytes),
        elapsed.as_secs_f64(),
        HumanBytes((bytes as f64 / seconds) as u64)
    )
}

/// Progress must never take the program down, even with stderr closed.
fn plain(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn nothing_is_announced_before_the_first_quarter() {
        assert_eq!(quarter_to_announce(0, 20 * MIB, 0), None);
        assert_eq!(quarter_to_announce(5 * MIB - 1, 20 * MIB, 0), None);
        assert_eq!(quarter_to_announce(5 * MIB, 20 * MIB, 0), Some(1));
    }

    #[test]
    fn a_quarter_is_announced_once() {
        assert_eq!(quarter_to_announce(6 * MIB, 20 * MIB, 1), None);
        assert_eq!(quarter_to_announce(10 * MIB, 20 * MIB, 1), Some(2));
    }

    #[test]
    fn a_jump_over_several_quarters_gives_one_line() {
        assert_eq!(quarter_to_announce(16 * MIB, 20 * MIB, 0), Some(3));
    }

    #[test]
    fn completion_is_left_to_the_closing_line() {
        assert_eq!(quarter_to_announce(20 * MIB, 20 * MIB, 1), None);
        assert_eq!(quarter_to_announce(30 * MIB, 20 * MIB, 0), None);
        assert_eq!(quarter_to_announce(0, 0, 0), None);
    }

    #[test]
    fn a_transfer_in_many_small_steps_prints_at_most_five_lines() {
        let total = 20 * MIB + 7;
        let mut announced = 0;
        let mut marks = Vec::new();
        for done in (0..=total).step_by(64 * 1024) {
            if let Some(q) = quarter_to_announce(done, total, announced) {
                announced = q;
                marks.push(q);
            }
        }
        // Plus the start and the closing line: five in all.
        assert_eq!(marks, vec![1, 2, 3]);
    }

    #[test]
    fn lines_read_as_sizes_and_rates() {
        assert_eq!(start_line("upload", 20 * MIB), "upload: 0 B of 20.00 MiB");
        assert_eq!(percent(5 * MIB, 20 * MIB), 25);
        assert_eq!(
            summary(20 * MIB, Duration::from_secs(2)),
            "20.00 MiB in 2.0 s (10.00 MiB/s)"
        );
        assert_eq!(
            summary(MIB, Duration::ZERO),
            "1.00 MiB in 0.0 s (1000.00 MiB/s)"
        );
    }
}
