//! A commit a deployment ships, as schema version 2 of `DeploymentReported`
//! carries it, and the rules on the list of them.
//!
//! ingest parses the webhook's `commits` field by field with these types and the
//! timestamp rules of `fields`, so its 422 names each problem; the event decoder
//! reads the same types, so a record ingest would refuse never reaches the
//! projector.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fields::{
    check_timestamp_range, parse_timestamp, CommitAuthor, CommitSha, CommitSubject, FieldError,
};

/// Most commits one report may list. A deployment shipping more is a first
/// deployment or a long-stalled pipeline; the reporter sends the newest 100.
///
/// With the per-field caps, 100 commits fit ingest's 256 KiB body limit even
/// as Python's `json.dumps` writes them by default (every non-ASCII character
/// `\u`-escaped, a surrogate pair of 12 bytes above U+FFFF): 2,215 bytes a
/// maximal commit, 221,700 for 100, which leaves about 40 KiB for the rest of
/// the body (the arithmetic is in ingest's config.rs). 250 would have needed
/// 540 KiB.
pub const MAX_COMMITS: usize = 100;

/// Longest a commit's `committed_at` or `authored_at` may be as written, in
/// characters, so a commit has a true worst-case size (RFC 3339 allows any
/// number of fraction digits). A timestamp with nanoseconds and an offset is
/// 35.
pub const COMMIT_TIMESTAMP_MAX_LEN: usize = 64;

/// A commit's `committed_at` or `authored_at` (`what`) as the webhook gives
/// it: at most [`COMMIT_TIMESTAMP_MAX_LEN`] characters, ISO 8601 as
/// [`parse_timestamp`] reads it, within [`check_timestamp_range`].
///
/// Unlike `deployed_at` there is no future-skew check: a developer's clock
/// can be wrong and an author date survives a rebase, and optional data must
/// never cost the deployment its record.
pub fn parse_commit_timestamp(s: &str, what: &str) -> Result<DateTime<Utc>, FieldError> {
    check_timestamp_len(s, what)?;
    let t = parse_timestamp(s).ok_or_else(|| {
        FieldError::new(
            "datetime_parsing",
            format!("{what} must be an ISO 8601 timestamp such as 2024-01-15T10:30:00Z, got {s:?}"),
        )
    })?;
    check_timestamp_range(t, what)?;
    Ok(t)
}

fn check_timestamp_len(s: &str, what: &str) -> Result<(), FieldError> {
    let chars = s.chars().count();
    if chars > COMMIT_TIMESTAMP_MAX_LEN {
        return Err(FieldError::new(
            "string_too_long",
            format!("{what} must be at most {COMMIT_TIMESTAMP_MAX_LEN} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// A commit's timestamp as the event decoder reads it: the bound and range
/// of [`parse_commit_timestamp`], and RFC 3339 with an offset, which is all
/// ingest writes (as chrono's own decoding of `DateTime` reads it).
fn decode_commit_timestamp(s: &str, what: &str) -> Result<DateTime<Utc>, FieldError> {
    check_timestamp_len(s, what)?;
    let t = s
        .parse::<DateTime<chrono::FixedOffset>>()
        .map_err(|e| {
            FieldError::new(
                "datetime_parsing",
                format!("{what} must be an RFC 3339 timestamp, got {s:?}: {e}"),
            )
        })?
        .with_timezone(&Utc);
    check_timestamp_range(t, what)?;
    Ok(t)
}

/// One commit a deployment ships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CommitFields")]
pub struct Commit {
    /// Full SHA, lower case.
    pub sha: CommitSha,
    /// When it was committed (git's committer date): what lead time for
    /// changes is measured from.
    pub committed_at: DateTime<Utc>,
    /// When it was first written (git's author date), when the CI gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authored_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<CommitAuthor>,
    /// The first line of the commit message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<CommitSubject>,
}

/// A commit as JSON spells it, before the timestamps are read. An optional
/// field is absent or a value, never `null`: ingest omits what it was not
/// given (its request reads `null` as not given), and the v2 schema refuses
/// `null`, so the decoder does too.
#[derive(Deserialize)]
struct CommitFields {
    sha: CommitSha,
    committed_at: String,
    #[serde(default, deserialize_with = "present")]
    authored_at: Option<String>,
    #[serde(default, deserialize_with = "present")]
    author: Option<CommitAuthor>,
    #[serde(default, deserialize_with = "present")]
    subject: Option<CommitSubject>,
}

/// An optional field whose key is present: its value, which `null` is not.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl TryFrom<CommitFields> for Commit {
    type Error = FieldError;
    fn try_from(c: CommitFields) -> Result<Self, FieldError> {
        let committed_at = decode_commit_timestamp(&c.committed_at, "committed_at")?;
        let authored_at = c
            .authored_at
            .map(|t| decode_commit_timestamp(&t, "authored_at"))
            .transpose()?;
        Ok(Commit {
            sha: c.sha,
            committed_at,
            authored_at,
            author: c.author,
            subject: c.subject,
        })
    }
}

/// The rules on a whole list: at most [`MAX_COMMITS`], and no SHA twice.
/// Returns the index of each SHA an earlier one already was; `None` (a
/// commit whose SHA did not parse, for ingest's every-problem report) is
/// never a repeat.
pub fn repeated_shas(shas: &[Option<CommitSha>]) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(shas.len());
    shas.iter()
        .enumerate()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| !seen.insert(s.as_str())))
        .map(|(i, _)| i)
        .collect()
}

/// The list rules as the event decoder applies them: what ingest writes is
/// never empty (an empty list is not written), never over [`MAX_COMMITS`]
/// and never repeats a SHA.
pub fn check_commit_list(commits: &[Commit]) -> Result<(), FieldError> {
    if commits.is_empty() {
        return Err(FieldError::new(
            "too_short",
            "commits, when present, lists at least one commit",
        ));
    }
    if commits.len() > MAX_COMMITS {
        return Err(FieldError::new(
            "too_long",
            format!(
                "commits must list at most {MAX_COMMITS} commits, got {}",
                commits.len()
            ),
        ));
    }
    let shas: Vec<Option<CommitSha>> = commits.iter().map(|c| Some(c.sha.clone())).collect();
    match repeated_shas(&shas).first() {
        None => Ok(()),
        Some(&i) => Err(FieldError::new(
            "value_error",
            format!("commits[{i}]: sha {} is listed twice", commits[i].sha),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_commit_round_trips_and_omits_what_it_was_not_given() {
        let c: Commit = serde_json::from_value(json!({
            "sha": "4F2C1D9E8B7A6F5E4D3C2B1A0F9E8D7C6B5A4F3E",
            "committed_at": "2024-01-15T09:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"sha": "4f2c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e", "committed_at": "2024-01-15T09:00:00Z"})
        );
    }

    #[test]
    fn a_commit_outside_the_rules_does_not_decode() {
        let base = json!({"sha": "a".repeat(40), "committed_at": "2024-01-15T09:00:00Z"});
        for (field, value) in [
            ("sha", json!("abc")),
            ("committed_at", json!("1900-01-01T00:00:00Z")),
            ("authored_at", json!("yesterday")),
            (
                "authored_at",
                json!(format!("2024-01-15T09:00:00.{}Z", "0".repeat(45))),
            ),
            ("author", json!("x".repeat(COMMIT_AUTHOR_MAX_LEN_PLUS))),
            ("author", json!("a\u{202E}b")),
            ("subject", json!("fix\nmore")),
            ("subject", json!("")),
            ("authored_at", json!(null)),
            ("author", json!(null)),
            ("subject", json!(null)),
        ] {
            let mut c = base.clone();
            c[field] = value;
            assert!(serde_json::from_value::<Commit>(c).is_err(), "{field}");
        }
    }

    #[test]
    fn a_commit_dated_in_the_future_decodes() {
        let future = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let c: Commit = serde_json::from_value(json!({
            "sha": "a".repeat(40), "committed_at": future, "authored_at": "9999-12-31T23:59:59Z"
        }))
        .unwrap();
        assert!(c.committed_at > Utc::now());
    }

    const COMMIT_AUTHOR_MAX_LEN_PLUS: usize = crate::fields::COMMIT_AUTHOR_MAX_LEN + 1;

    #[test]
    fn a_list_may_not_repeat_a_sha_or_be_empty_or_too_long() {
        let c = |sha: char| Commit {
            sha: CommitSha::parse(sha.to_string().repeat(40)).unwrap(),
            committed_at: Utc::now(),
            authored_at: None,
            author: None,
            subject: None,
        };
        let some = |ch: char| Some(c(ch).sha);
        assert_eq!(repeated_shas(&[some('a'), some('b'), some('a')]), [2]);
        assert_eq!(repeated_shas(&[None, some('a'), None, some('a')]), [3]);
        assert!(check_commit_list(&[c('a'), c('b')]).is_ok());
        assert!(check_commit_list(&[c('a'), c('a')]).is_err());
        assert!(check_commit_list(&[]).is_err());
        let many: Vec<Commit> = (0..=MAX_COMMITS)
            .map(|i| Commit {
                sha: CommitSha::parse(format!("{i:040x}")).unwrap(),
                ..c('a')
            })
            .collect();
        assert!(check_commit_list(&many[..MAX_COMMITS]).is_ok());
        assert!(check_commit_list(&many).is_err());
    }
}
