//! What is wrong with a scenario file, and where: diagnostics located by file, line and column.
//!
//! Every problem, from a TOML syntax error to a call to an unknown endpoint, becomes a
//! [`Diagnostic`] printed as `file:line:col: error: message`, the form editors and terminals turn
//! into links. Lines and columns are 1-based and count characters, computed from byte offsets.

use std::fmt;
use std::ops::Range;

use thiserror::Error;

/// One problem in a scenario file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the parser.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
    /// What was found and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: error: cannot read the scenario file: {source}")]
    Read {
        /// The path as given.
        file: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than any scenario has reason to be (it may be a device or a log).
    #[error("{file}: error: the file is larger than {limit_bytes} bytes; a scenario file is at most that")]
    TooLarge {
        /// The path as given.
        file: String,
        /// The most a scenario file may hold.
        limit_bytes: u64,
    },
    /// The file was read but is not a valid scenario: one line per diagnostic, in file order.
    #[error("{}", render(diagnostics))]
    Invalid {
        /// Every problem found, sorted by position.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ScenarioError {
    /// The located problems (none for a file that could not be read).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ScenarioError::Read { .. } | ScenarioError::TooLarge { .. } => &[],
            ScenarioError::Invalid { diagnostics } => diagnostics,
        }
    }
}

/// One diagnostic per line.
fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}

/// Turns byte spans in one file's text into located diagnostics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file`.
    pub(crate) fn new(text: &'a str, file: &'a str) -> Locator<'a> {
        Locator { text, file }
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn diagnostic(&self, span: Range<usize>, message: String) -> Diagnostic {
        let (line, column) = self.line_column(span.start);
        Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    /// The 1-based line and character column of a byte offset, clamped into the text.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The 1-based line of a byte offset, for messages that point at another place.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_column(offset).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let locator = Locator::new("a = 1\nbé = \"x\"\n", "f.toml");
        assert_eq!(locator.line_column(0), (1, 1));
        assert_eq!(locator.line_column(4), (1, 5));
        assert_eq!(locator.line_column(6), (2, 1));
        assert_eq!(locator.line_column(10), (2, 4));
        assert_eq!(
            locator.line_column(8),
            (2, 2),
            "inside a multibyte character"
        );
        assert_eq!(locator.line_column(999), (3, 1));
    }

    #[test]
    fn diagnostics_display_as_file_line_column() {
        let error = ScenarioError::Invalid {
            diagnostics: vec![Locator::new("x\ny", "s.toml").diagnostic(2..3, "bad".into())],
        };
        assert_eq!(error.to_string(), "s.toml:2:1: error: bad");
    }
}
