//! A progress bar on standard error: redrawn in place on a terminal, a line per quarter
//! otherwise (CI logs).

use std::io::{IsTerminal, Write};

/// Counts up to a total, drawing itself.
#[derive(Debug)]
pub(crate) struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    terminal: bool,
    /// The last quarter printed, off a terminal.
    quarter: usize,
    enabled: bool,
}

impl Progress {
    pub(crate) fn new(label: &'static str, total: usize, enabled: bool) -> Self {
        let progress = Self {
            label,
            total,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
            quarter: 0,
            enabled,
        };
        progress.draw();
        progress
    }

    pub(crate) fn advance(&mut self) {
        self.done += 1;
        if self.terminal || self.done * 4 / self.total.max(1) > self.quarter {
            self.quarter = self.done * 4 / self.total.max(1);
            self.draw();
        }
    }

    pub(crate) fn finish(&self) {
        if self.enabled && self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }

    fn draw(&self) {
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 40;
        let filled = self.done.min(self.total) * WIDTH / self.total.max(1);
        let bar = format!(
            "{} [{}{}] {}/{}",
            self.label,
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{bar}")
        } else {
            writeln!(err, "{bar}")
        };
        let _ = err.flush();
    }
}
