//! The CLI's one error type and its exit codes. Every message names the
//! problem and the fix.

use std::process::ExitCode;

use vibemon_runtime::watermarks::TopicError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input the user can correct (exit 2, like a usage error).
    #[error("{0}")]
    Invalid(String),
    /// A named thing does not exist (exit 3).
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or something depends on it (exit 4).
    #[error("{0}")]
    Conflict(String),
    /// Postgres or Kafka could not be reached (exit 5): retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (exit 1).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Other(_) => 1,
            CliError::Invalid(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Conflict(_) => 4,
            CliError::Unavailable(_) => 5,
        })
    }

    /// Wraps a database error, telling connection trouble from the rest.
    pub fn db(context: &str, e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => CliError::Unavailable(format!(
                "{context}: cannot reach Postgres ({e}); check DATABASE_URL, or start the local stack with deploy/local/services up"
            )),
            other => CliError::Other(anyhow::anyhow!("{context}: {other}")),
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// A topic the brokers do not know is not found (exit 3); a Kafka error is
/// unavailability (exit 5).
impl From<TopicError> for CliError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Missing(_) => CliError::NotFound(e.to_string()),
            TopicError::Kafka(_) => CliError::Unavailable(e.to_string()),
        }
    }
}
