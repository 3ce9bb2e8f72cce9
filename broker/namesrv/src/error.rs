//! Errors of the NameServer: loading its config and starting it. Request errors are not here:
//! they are answered on the wire with a response code (see `processor.rs`).

use std::path::PathBuf;

/// The crate's result.
pub type Result<T, E = NamesrvError> = std::result::Result<T, E>;

/// Starting or running the NameServer failed.
#[derive(Debug, thiserror::Error)]
pub enum NamesrvError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket cannot be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address tried.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A namesrv.conf that cannot be used; names the file, key, value and line as they apply.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `key=value`.
    #[error("{source}")]
    Syntax {
        /// The properties parser's error (names the line).
        #[source]
        source: raft_log::ConfigError,
    },
    /// A key neither RaftMQ's NameServer nor RocketMQ's knows.
    #[error("unknown key {key}{}", line_suffix(*.line))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The 1-based line, when the key came from a file.
        line: Option<usize>,
    },
    /// A known key with a value of the wrong kind.
    #[error("invalid value {value:?} for {key}{}: {reason}", line_suffix(*.line))]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// The 1-based line, when the key came from a file.
        line: Option<usize>,
        /// What the value should be.
        reason: &'static str,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}
