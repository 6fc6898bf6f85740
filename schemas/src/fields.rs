//! Validated field types shared by the webhook and the event.
//!
//! Each newtype can only hold a value that passed its rules, so code past the
//! HTTP edge (the event builder, the projector, the CLI) never re-checks a
//! commit SHA or an environment name. The same types deserialize the event from
//! Kafka, so a malformed event is refused by the decoder with the same message
//! a client would have received.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
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
/// Longest name a person gives a key or a workspace; also enforced by the
/// `api_keys` and `workspaces` tables.
pub const DISPLAY_NAME_MAX_LEN: usize = 200;

/// Why `c` may not appear in a name or id, or `None` when it may.
///
/// Control characters break logs and tables; format characters (U+202E
/// RIGHT-TO-LEFT OVERRIDE, U+200B ZERO WIDTH SPACE, ...) make one value look
/// like another in the CLI's tables and the read API; private-use characters
/// render as anything at all. Unicode's general categories Cc, Cf and Co name
/// exactly these. The JSON Schema and the OpenAPI document spell the same rule
/// as a character class, and `schemas/tests/interop.rs` holds them together.
pub fn forbidden_char(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible formatting or bidirectional character"),
        GeneralCategory::PrivateUse => Some("a private-use character"),
        _ => None,
    }
}

/// Refuses a value holding a [`forbidden_char`], naming the first one and
/// where it is, so the reporter can find it in their CI variables.
pub(crate) fn check_visible(value: &str, what: &str) -> Result<(), FieldError> {
    let found = value
        .chars()
        .enumerate()
        .find_map(|(i, c)| forbidden_char(c).map(|why| (i, c, why)));
    match found {
        None => Ok(()),
        Some((i, c, why)) => Err(FieldError::new(
            "string_pattern_mismatch",
            format!(
                "{what} must not contain U+{:04X} ({why}), found at character {}",
                c as u32,
                i + 1
            ),
        )),
    }
}

pub(crate) fn check_len(value: &str, max: usize, what: &str) -> Result<(), FieldError> {
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

/// Declares a `String` newtype whose only constructors are `parse` (the rule
/// for new input) and its serde decoding. With `decode = ...`, decoding an
/// event applies that older, looser rule instead: the topic keeps events that
/// earlier builds accepted, and a v1 event must keep decoding as it did.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        validated_string!($(#[$doc])* $name, $check, decode = $check);
    };
    ($(#[$doc:meta])* $name:ident, $check:expr, decode = $decode:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(into = "String")]
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

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let decode: fn(String) -> Result<String, FieldError> = $decode;
                decode(String::deserialize(d)?)
                    .map(Self)
                    .map_err(serde::de::Error::custom)
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
    /// ref names, so do we, and invisible or bidirectional characters too (see
    /// [`forbidden_char`]); `origin/main` (Jenkins' `GIT_BRANCH`) is fine.
    BranchName,
    |v| {
        check_visible(&v, "branch")?;
        branch_v1(v)
    },
    decode = branch_v1
);

/// The branch rule of schema version 1 as first published: what every event
/// on the topic satisfies, and all Postgres needs (no NUL).
fn branch_v1(v: String) -> Result<String, FieldError> {
    check_len(&v, BRANCH_MAX_LEN, "branch")?;
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::new(
            "string_pattern_mismatch",
            "branch must not contain whitespace or control characters",
        ));
    }
    Ok(v)
}

validated_string!(
    /// The CI's own id for one deployment (a workflow run id, a pipeline id).
    /// Reports sharing it in one environment and repository are one deployment.
    ExternalId,
    |v| {
        check_visible(&v, "external_id")?;
        external_id_v1(v)
    },
    decode = external_id_v1
);

/// The external id rule of schema version 1 as first published.
fn external_id_v1(v: String) -> Result<String, FieldError> {
    check_len(&v, EXTERNAL_ID_MAX_LEN, "external_id")?;
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(
            "string_pattern_mismatch",
            "external_id must not contain control characters",
        ));
    }
    Ok(v)
}

validated_string!(
    /// A name a person gives an API key or a workspace, shown in the CLI's
    /// tables, the read API and the audit trail: 1 to 200 characters, none of
    /// them a [`forbidden_char`].
    DisplayName,
    |v| {
        check_visible(&v, "name")?;
        display_name_v1(v)
    },
    decode = display_name_v1
);

/// Key and workspace names as the `api_keys` and `workspaces` tables and the
/// first CLI held them: 1 to 200 characters, no control character. Events
/// carry key names made under this rule.
fn display_name_v1(v: String) -> Result<String, FieldError> {
    check_len(&v, DISPLAY_NAME_MAX_LEN, "name")?;
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(
            "string_pattern_mismatch",
            "name must not contain control characters",
        ));
    }
    Ok(v)
}

impl DisplayName {
    /// A stored name made before this rule existed, made safe to show: each
    /// forbidden character becomes U+FFFD, an empty name becomes `?`, and a
    /// long one is cut.
    pub fn sanitized(stored: &str) -> Self {
        let cleaned: String = stored
            .chars()
            .map(|c| {
                if forbidden_char(c).is_some() {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .take(DISPLAY_NAME_MAX_LEN)
            .collect();
        Self::parse(cleaned).unwrap_or_else(|_| Self("?".to_owned()))
    }
}

/// Longest commit author accepted in a v2 event's `commits`. Tighter than a
/// branch's 255 so that the maximal commits fit ingest's 256 KiB body limit
/// (see `commit::MAX_COMMITS`).
pub const COMMIT_AUTHOR_MAX_LEN: usize = 64;
/// Longest commit subject (the first line of the message); git's own advice
/// is 50 to 72 characters, and the body limit is why it is not 500.
pub const COMMIT_SUBJECT_MAX_LEN: usize = 100;

validated_string!(
    /// Who wrote a commit, as the CI reports it (git's author name): 1 to
    /// [`COMMIT_AUTHOR_MAX_LEN`] characters, none of them a [`forbidden_char`].
    CommitAuthor,
    |v| {
        check_visible(&v, "author")?;
        check_len(&v, COMMIT_AUTHOR_MAX_LEN, "author")?;
        Ok(v)
    },
    decode = |v| commit_text_v2(v, COMMIT_AUTHOR_MAX_LEN, "author")
);

validated_string!(
    /// A commit's subject, the first line of its message: 1 to
    /// [`COMMIT_SUBJECT_MAX_LEN`] characters, none of them a
    /// [`forbidden_char`], so it holds no line break either.
    CommitSubject,
    |v| {
        check_visible(&v, "subject")?;
        check_len(&v, COMMIT_SUBJECT_MAX_LEN, "subject")?;
        Ok(v)
    },
    decode = |v| commit_text_v2(v, COMMIT_SUBJECT_MAX_LEN, "subject")
);

/// Commit author and subject as schema version 2 decodes them, frozen:
/// 1 to `max` characters, no control character, no private-use character,
/// and none of the invisible and bidirectional format characters listed in
/// [`frozen_format`]. `forbidden_char` follows the Unicode tables, so a later
/// Unicode version could move another character into Cf; events already on
/// the topic must still decode when replayed.
fn commit_text_v2(v: String, max: usize, what: &str) -> Result<String, FieldError> {
    check_len(&v, max, what)?;
    let private_use =
        |c: char| matches!(c as u32, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    if let Some(c) = v
        .chars()
        .find(|&c| c.is_control() || private_use(c) || frozen_format(c))
    {
        return Err(FieldError::new(
            "string_pattern_mismatch",
            format!("{what} must not contain U+{:04X}", c as u32),
        ));
    }
    Ok(v)
}

/// The format (Cf) characters that hide or reorder text, as a fixed list:
/// zero-width characters, bidirectional marks, embeddings, overrides and
/// isolates, the word joiner and invisible operators, and the BOM.
fn frozen_format(c: char) -> bool {
    matches!(
        c as u32,
        0x061C | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF
    )
}

/// Deepest nesting accepted inside `extra_data`.
pub const EXTRA_DATA_MAX_DEPTH: usize = 16;

/// Free-form metadata from the CI: a JSON object that Postgres `jsonb` can
/// hold (no `\u0000` in any key or string) and no deeper than
/// [`EXTRA_DATA_MAX_DEPTH`], because a pathological depth is an attack, not
/// metadata. ingest parses the webhook's `extra_data` with it and the
/// projector decodes events with it, so a record that ingest would have
/// refused never reaches Postgres.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct ExtraData(Map<String, Value>);

impl ExtraData {
    pub fn parse(map: Map<String, Value>) -> Result<Self, FieldError> {
        fn check(v: &Value, depth: usize) -> Result<(), FieldError> {
            if depth > EXTRA_DATA_MAX_DEPTH {
                return Err(FieldError::new(
                    "value_error",
                    format!("extra_data must not nest deeper than {EXTRA_DATA_MAX_DEPTH} levels"),
                ));
            }
            match v {
                Value::String(s) => check_no_nul(s),
                Value::Array(items) => items.iter().try_for_each(|i| check(i, depth + 1)),
                Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                    check_no_nul(k)?;
                    check(v, depth + 1)
                }),
                _ => Ok(()),
            }
        }
        fn check_no_nul(s: &str) -> Result<(), FieldError> {
            if s.contains('\0') {
                return Err(FieldError::new(
                    "value_error",
                    "extra_data must not contain NUL (\\u0000) characters",
                ));
            }
            Ok(())
        }
        map.iter().try_for_each(|(k, v)| {
            check_no_nul(k)?;
            check(v, 1)
        })?;
        Ok(Self(map))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl TryFrom<Map<String, Value>> for ExtraData {
    type Error = FieldError;
    fn try_from(map: Map<String, Value>) -> Result<Self, FieldError> {
        Self::parse(map)
    }
}

// By reference: `serde(into)` would clone the whole map on every encode.
impl Serialize for ExtraData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Earliest instant an event may carry: anything before is a unit or parsing
/// mistake (seconds read as milliseconds, a zeroed date).
pub const EARLIEST_TIMESTAMP: &str = "1970-01-01T00:00:00Z";
/// Latest instant an event may carry: RFC 3339 has four-digit years, and
/// Postgres stores nothing beyond 294276 AD.
pub const LATEST_TIMESTAMP: &str = "9999-12-31T23:59:59.999999Z";

/// Parses a timestamp: RFC 3339 with any offset, or an ISO 8601 date-time
/// without offset, which is taken as UTC. Precision is cut to microseconds,
/// which is what Postgres keeps.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
                .map(|t| t.and_utc())
        })?;
    Some(parsed.trunc_subsecs(6))
}

/// A timestamp a reader asks about (`since`, `until`, `at`, from the read
/// API or the CLI): [`parse_timestamp`], then [`check_timestamp_range`], with
/// a message that names `what` and shows an example.
pub fn parse_query_timestamp(s: &str, what: &str) -> Result<DateTime<Utc>, String> {
    let t = parse_timestamp(s).ok_or_else(|| {
        format!("{what} must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z, got {s:?}")
    })?;
    check_timestamp_range(t, what).map_err(|e| e.msg)?;
    Ok(t)
}

/// Refuses an instant outside [`EARLIEST_TIMESTAMP`]..=[`LATEST_TIMESTAMP`].
pub fn check_timestamp_range(t: DateTime<Utc>, what: &str) -> Result<(), FieldError> {
    let bound = |s: &str| DateTime::parse_from_rfc3339(s).expect("a valid bound");
    if t < bound(EARLIEST_TIMESTAMP) {
        return Err(FieldError::new(
            "datetime_too_old",
            format!("{what} {} is before {EARLIEST_TIMESTAMP}", t.to_rfc3339()),
        ));
    }
    if t > bound(LATEST_TIMESTAMP) {
        return Err(FieldError::new(
            "datetime_too_far",
            format!("{what} {} is after {LATEST_TIMESTAMP}", t.to_rfc3339()),
        ));
    }
    Ok(())
}

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
    /// Which CI/CD system reported. The seed's default is `webhook`. The
    /// webhook takes the seed's four ([`DeploymentSource::WEBHOOK`]); `github`
    /// and `gitlab` name a code host's own deployment events, received
    /// natively (event version 3).
    DeploymentSource, "source", {
        Webhook => "webhook",
        GithubActions => "github_actions",
        Argocd => "argocd",
        Jenkins => "jenkins",
        Github => "github",
        Gitlab => "gitlab",
    }
);

impl DeploymentSource {
    /// The values the webhook accepts: the seed's four.
    pub const WEBHOOK: &'static [DeploymentSource] = &[
        DeploymentSource::Webhook,
        DeploymentSource::GithubActions,
        DeploymentSource::Argocd,
        DeploymentSource::Jenkins,
    ];

    /// A code host's own deployment events, received natively: event
    /// version 3 carries them.
    pub fn is_native_intake(self) -> bool {
        !Self::WEBHOOK.contains(&self)
    }

    /// Parses a webhook body's `source`: one of the seed's four, the error
    /// listing them.
    pub fn parse_webhook(value: &str) -> Result<Self, FieldError> {
        match Self::parse(value) {
            Ok(source) if !source.is_native_intake() => Ok(source),
            _ => Err(FieldError::new(
                "enum",
                format!(
                    "source must be one of {}; got {value:?}",
                    Self::WEBHOOK
                        .iter()
                        .map(|s| format!("'{s}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}

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
    fn commit_author_and_subject_decode_by_the_frozen_rule_that_ingest_tightens() {
        // U+00AD is Cf today but not in the frozen list: ingest refuses it,
        // and the decoder would keep an event holding it, as it must if a
        // Unicode update ever moves a character into Cf.
        let soft_hyphen = "Ada\u{AD}";
        assert!(CommitAuthor::parse(soft_hyphen).is_err());
        assert!(CommitSubject::parse(soft_hyphen).is_err());
        let json = serde_json::to_string(soft_hyphen).unwrap();
        assert!(serde_json::from_str::<CommitAuthor>(&json).is_ok());
        assert!(serde_json::from_str::<CommitSubject>(&json).is_ok());
        // What hides or reorders text stays refused by both.
        for bad in [
            "Ada\u{7}",
            "a\u{202E}b",
            "a\u{200B}b",
            "a\u{E000}b",
            "a\u{2066}b",
        ] {
            let json = serde_json::to_string(bad).unwrap();
            assert!(
                serde_json::from_str::<CommitAuthor>(&json).is_err(),
                "{bad:?}"
            );
            assert!(
                serde_json::from_str::<CommitSubject>(&json).is_err(),
                "{bad:?}"
            );
        }
        let long = serde_json::to_string(&"a".repeat(COMMIT_SUBJECT_MAX_LEN + 1)).unwrap();
        assert!(serde_json::from_str::<CommitSubject>(&long).is_err());
    }

    #[test]
    fn invisible_and_bidirectional_characters_are_refused_by_name() {
        for (bad, code) in [
            ("main\u{202E}", "U+202E"),
            ("ma\u{200B}in", "U+200B"),
            ("\u{FEFF}main", "U+FEFF"),
            ("main\u{E000}", "U+E000"),
            ("main\u{7}", "U+0007"),
            ("a\u{E0041}", "U+E0041"),
        ] {
            let err = BranchName::parse(bad).unwrap_err();
            assert!(err.msg.contains(code), "{bad:?}: {}", err.msg);
            assert!(ExternalId::parse(bad).is_err(), "{bad:?}");
            assert!(DisplayName::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "release/2024.1",
            "f\u{00FC}r-m\u{00FC}nchen",
            "\u{65E5}\u{672C}",
            "caf\u{00E9}",
        ] {
            assert!(BranchName::parse(good).is_ok(), "{good:?}");
            assert!(DisplayName::parse(good).is_ok(), "{good:?}");
        }
        assert!(DisplayName::parse("GitHub Actions (prod)").is_ok());
        assert!(DisplayName::parse("x".repeat(201)).is_err());
    }

    #[test]
    fn extra_data_must_be_a_shallow_enough_object_without_nul() {
        let mut deep = serde_json::json!(1);
        for _ in 0..20 {
            deep = serde_json::json!({ "a": deep });
        }
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert!(ExtraData::parse(obj(deep)).is_err());
        let err = ExtraData::parse(obj(serde_json::json!({"k": ["a\u{0}b"]}))).unwrap_err();
        assert!(err.msg.contains("NUL"), "{}", err.msg);
        assert!(ExtraData::parse(obj(serde_json::json!({"a\u{0}": 1}))).is_err());
        assert!(ExtraData::parse(obj(serde_json::json!({"k": {"n": [1, {"x": null}]}}))).is_ok());
    }

    #[test]
    fn timestamps_outside_what_postgres_and_rfc3339_hold_are_refused() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(check_timestamp_range(t("1970-01-01T00:00:00Z"), "x").is_ok());
        assert!(check_timestamp_range(t("1969-12-31T23:59:59Z"), "x").is_err());
        assert!(check_timestamp_range(t("9999-12-31T23:59:59Z"), "x").is_ok());
        let far = DateTime::<Utc>::MAX_UTC;
        assert_eq!(
            check_timestamp_range(far, "x").unwrap_err().kind,
            "datetime_too_far"
        );
    }

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
