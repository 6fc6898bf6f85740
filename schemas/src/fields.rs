//! Validated field types shared by the webhook and the event.
//!
//! Each newtype can only hold a value that passed its rules, so code past the
//! HTTP edge (the event builder, the projector, the CLI) never re-checks a
//! commit SHA or an environment name. The same types deserialize the event from
//! Kafka, so a malformed event is refused by the decoder with the same message
//! a client would have received.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a field value was refused; `kind` is the machine-readable type used in
/// 422 bodies (pydantic's vocabulary, which the seed's API family speaks).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{msg}")]
pub struct FieldError {
    /// Machine-readable error type, e.g. `string_too_long` or `value_error`.
    pub kind: &'static str,
    /// A sentence a CI author can act on.
    pub msg: String,
}

impl FieldError {
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
}

/// Longest environment name accepted; also enforced by the `environments` table.
pub const ENVIRONMENT_MAX_LEN: usize = 64;
/// Longest repository full name (GitLab allows deep group paths).
pub const REPOSITORY_MAX_LEN: usize = 255;
/// Longest branch name; git itself has no limit, but refs this long are typos.
pub const BRANCH_MAX_LEN: usize = 255;
/// Longest external id (a CI's own deployment or run id).
pub const EXTERNAL_ID_MAX_LEN: usize = 255;

fn check_len(value: &str, max: usize, what: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(
            "string_too_short",
            format!("{what} must not be empty"),
        ));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(FieldError::new(
            "string_too_long",
            format!("{what} must be at most {max} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// Declares a `String` newtype whose only constructor is `parse`.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates (and for some types normalises) `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
                let check: fn(String) -> Result<String, FieldError> = $check;
                check(value.into()).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// An environment name: ASCII letters, digits, `.`, `_` and `-`, starting with
    /// a letter or digit. Case-sensitive: `Production` is not `production`. The
    /// ASCII rule means a look-alike such as Cyrillic `рroduction` is refused with
    /// a message, instead of silently matching nothing.
    EnvironmentName,
    |v| {
        check_len(&v, ENVIRONMENT_MAX_LEN, "environment")?;
        let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(FieldError::new(
                "string_pattern_mismatch",
                format!(
                    "environment {v:?} is not a valid name: use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
                ),
            ));
        }
        Ok(v)
    }
);

validated_string!(
    /// A repository's full name, `owner/repo`, or a deeper path such as GitLab's
    /// `group/subgroup/project`. Each segment is letters, digits, `.`, `_`, `-`.
    RepoFullName,
    |v| {
        check_len(&v, REPOSITORY_MAX_LEN, "repository")?;
        let segments: Vec<&str> = v.split('/').collect();
        let segment_ok = |s: &&str| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if segments.len() < 2 || !segments.iter().all(segment_ok) {
            return Err(FieldError::new(
                "string_pattern_mismatch",
                format!(
                    "repository {v:?} must be a full name such as \"owner/repo\" (segments of ASCII letters, digits, '.', '_' and '-')"
                ),
            ));
        }
        Ok(v)
    }
);

validated_string!(
    /// A full git commit SHA: exactly 40 hexadecimal characters, stored in lower case.
    CommitSha,
    |v| {
        if v.len() != 40 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            let shown: String = v.chars().take(48).collect();
            return Err(FieldError::new(
                "string_pattern_mismatch",
                format!("commit_sha must be a full SHA of 40 hex characters, got {shown:?} ({} characters)", v.chars().count()),
            ));
        }
        Ok(v.to_ascii_lowercase())
    }
);

validated_string!(
    /// A branch (or ref) name. Git forbids whitespace and control characters in
    /// ref names, so do we; `origin/main` (Jenkins' `GIT_BRANCH`) is fine.
    BranchName,
    |v| {
        check_len(&v, BRANCH_MAX_LEN, "branch")?;
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError::new(
                "string_pattern_mismatch",
                "branch must not contain whitespace or control characters",
            ));
        }
        Ok(v)
    }
);

validated_string!(
    /// The CI's own id for one deployment (a workflow run id, a pipeline id).
    /// Reports sharing it in one environment are one deployment.
    ExternalId,
    |v| {
        check_len(&v, EXTERNAL_ID_MAX_LEN, "external_id")?;
        if v.chars().any(|c| c.is_control()) {
            return Err(FieldError::new(
                "string_pattern_mismatch",
                "external_id must not contain control characters",
            ));
        }
        Ok(v)
    }
);

/// Declares a closed string enum with its wire names, in order.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal, { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every accepted wire value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire value; the error lists every allowed value.
            pub fn parse(value: &str) -> Result<Self, FieldError> {
                match value {
                    $($wire => Ok($name::$variant),)+
                    other => Err(FieldError::new(
                        "enum",
                        format!(
                            "{} must be one of {}; got {:?}",
                            $field,
                            [$(concat!("'", $wire, "'")),+].join(", "),
                            other
                        ),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, FieldError> {
                Self::parse(s)
            }
        }
    };
}

wire_enum!(
    /// Where a deployment stands. The seed's default is `success`.
    DeploymentStatus, "status", {
        Pending => "pending",
        InProgress => "in_progress",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl DeploymentStatus {
    /// Reports of one deployment only move forward: pending < in_progress <
    /// a terminal status. Terminal statuses share a rank; among them the later
    /// report wins.
    pub fn rank(self) -> i16 {
        match self {
            DeploymentStatus::Pending => 0,
            DeploymentStatus::InProgress => 1,
            DeploymentStatus::Success | DeploymentStatus::Failed | DeploymentStatus::Cancelled => 2,
        }
    }
}

// The seed's default, spelled out beside the enum rather than as a derive
// attribute inside the macro.
#[allow(clippy::derivable_impls)]
impl Default for DeploymentStatus {
    fn default() -> Self {
        DeploymentStatus::Success
    }
}

wire_enum!(
    /// Which CI/CD system reported. The seed's default is `webhook`.
    DeploymentSource, "source", {
        Webhook => "webhook",
        GithubActions => "github_actions",
        Argocd => "argocd",
        Jenkins => "jenkins",
    }
);

#[allow(clippy::derivable_impls)]
impl Default for DeploymentSource {
    fn default() -> Self {
        DeploymentSource::Webhook
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_sha_is_normalised_to_lower_case() {
        let sha = CommitSha::parse("ABCDEF0123456789ABCDEF0123456789ABCDEF01").unwrap();
        assert_eq!(sha.as_str(), "abcdef0123456789abcdef0123456789abcdef01");
    }

    #[test]
    fn short_or_non_hex_commit_shas_are_refused() {
        assert!(CommitSha::parse("abc123").is_err());
        assert!(CommitSha::parse("g".repeat(40)).is_err());
        assert!(CommitSha::parse("a".repeat(41)).is_err());
    }

    #[test]
    fn environment_names_are_ascii_and_case_is_kept() {
        assert_eq!(
            EnvironmentName::parse("Production").unwrap().as_str(),
            "Production"
        );
        assert!(EnvironmentName::parse("prod-eu-1.blue_green").is_ok());
        // Cyrillic 'р' looks like a Latin 'p'.
        assert!(EnvironmentName::parse("\u{440}roduction").is_err());
        assert!(EnvironmentName::parse("").is_err());
        assert!(EnvironmentName::parse("-prod").is_err());
        assert!(EnvironmentName::parse("a".repeat(65)).is_err());
    }

    #[test]
    fn repositories_need_an_owner_and_a_name() {
        assert!(RepoFullName::parse("owner/repo").is_ok());
        assert!(RepoFullName::parse("group/sub.group/my_project-2").is_ok());
        for bad in [
            "repo",
            "owner/",
            "/repo",
            "owner//repo",
            "owner/../x",
            "own er/repo",
            "",
        ] {
            assert!(
                RepoFullName::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn unknown_status_lists_every_allowed_value() {
        let err = DeploymentStatus::parse("succeeded").unwrap_err();
        assert_eq!(err.kind, "enum");
        for allowed in DeploymentStatus::ALL {
            assert!(err.msg.contains(allowed.as_str()), "{}", err.msg);
        }
    }

    #[test]
    fn status_rank_only_moves_forward_to_a_terminal_state() {
        use DeploymentStatus::*;
        assert!(Pending.rank() < InProgress.rank());
        assert!(InProgress.rank() < Success.rank());
        assert_eq!(Success.rank(), Failed.rank());
        assert_eq!(Failed.rank(), Cancelled.rank());
    }
}
