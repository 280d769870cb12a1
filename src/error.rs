//! The one error type of mxsim. Every fallible public function returns [`Result`]; the CLI
//! prints the message to stderr and exits with status 2.

use std::path::PathBuf;

/// An error with a message that names the problem (and the file, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },
    /// A file's content is malformed, truncated or inconsistent.
    #[error("{path}: {msg}")]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An argument, option or configuration value is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Build an [`Error::Invalid`] from any message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Build an [`Error::Malformed`] for `path`.
    pub fn malformed(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Malformed {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Build an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used throughout mxsim.
pub type Result<T> = std::result::Result<T, Error>;
