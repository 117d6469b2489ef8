//! Lint-mode loading: how strictly a configuration loads ([`Mode`]), and
//! what a lint-mode load notes instead of failing ([`Note`]).

use super::error::Span;

/// How strictly a configuration loads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// As the server loads it: anything unreadable or unsupported is an
    /// error.
    #[default]
    Serve,
    /// For `switchyard check`, possibly on another machine: files missing
    /// here (includes, certificates) and names that do not resolve become
    /// [`Note`]s instead of errors.
    Lint,
    /// `switchyard check --nginx`: as `Lint`, and directives, parameters
    /// and variables that nginx has and Switchyard does not are noted and
    /// skipped.
    LintNginx,
}

impl Mode {
    /// Whether this is a lint mode.
    pub fn lint(self) -> bool {
        self != Mode::Serve
    }
}

/// What `switchyard check` learns while loading that the server would have
/// refused or could not know: a statement skipped, a file missing on this
/// machine, a name that does not resolve here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// What kind of note.
    pub kind: NoteKind,
    /// The statement it is about.
    pub span: Span,
    /// What happened, in nginx's words where nginx has them.
    pub message: String,
}

/// The kinds of [`Note`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// A directive or parameter nginx accepts and Switchyard does not
    /// implement (`check --nginx` only): skipped.
    Skipped,
    /// A file named by the configuration is not on this machine.
    MissingFile,
    /// An upstream or listen host name does not resolve here.
    Unresolved,
    /// A variable Switchyard does not know (`check --nginx` only).
    UnknownVariable,
}
