//! What a code host's delivery reports, read from its JSON: the [`Report`]
//! both providers produce, and the [`Reader`] the provider modules read
//! payloads with, which collects every problem as a 422 entry in the
//! webhook's shape (`["body", "deployment", "sha"]`).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value};
use vibemon_schemas::api::{LocPart, ValidationIssue};
use vibemon_schemas::fields::{check_timestamp_range, parse_timestamp};
use vibemon_schemas::{
    BranchName, CommitSha, DeploymentSource, DeploymentStatus, EnvironmentName, ExternalId,
    ExtraData, FieldError, RepoFullName,
};

use crate::request::WebhookRequest;

/// One status of one deployment, as a code host reported it, every field
/// validated; only the environment is still the code host's name for it.
#[derive(Debug)]
pub struct Report {
    /// What the event id is derived from, prefixed by its origin
    /// (`github-status:<id>`, `gitlab-idempotency:<key>`), so a redelivery
    /// is the same event.
    pub idempotency_key: String,
    /// The environment as the code host named it.
    pub environment: String,
    pub repository: RepoFullName,
    pub branch: Option<BranchName>,
    pub commit_sha: Option<CommitSha>,
    pub status: DeploymentStatus,
    pub deployed_at: DateTime<Utc>,
    /// `github-<deployment id>` / `gitlab-<deployment id>`: every status of
    /// one deployment updates one row.
    pub external_id: ExternalId,
    pub extra_data: ExtraData,
}

impl Report {
    /// The report as the webhook would have taken it, in `environment`.
    pub fn into_request(
        self,
        environment: EnvironmentName,
        source: DeploymentSource,
    ) -> WebhookRequest {
        WebhookRequest {
            environment,
            repository: self.repository,
            branch: self.branch,
            commit_sha: self.commit_sha,
            status: self.status,
            source,
            deployed_at: self.deployed_at,
            extra_data: self.extra_data,
            external_id: Some(self.external_id),
            previous_commit_sha: None,
            commits: Vec::new(),
        }
    }
}

/// When the delivery arrived, and how far ahead of it a code host's clock
/// may be (`INGEST_MAX_FUTURE_SKEW_SECS`, as for the webhook).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub max_future_skew: Duration,
}

/// Reads fields of a JSON payload by path, recording an issue for each
/// missing or mistyped one.
pub struct Reader<'a> {
    root: &'a Value,
    pub issues: Vec<ValidationIssue>,
}

/// The body as JSON, or the webhook's issue for bytes that are not a JSON
/// object.
pub fn decode(body: &[u8]) -> Result<Value, Vec<ValidationIssue>> {
    let (kind, msg) = match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => return Ok(v),
        Ok(_) => (
            "model_attributes_type",
            "Input should be a JSON object".to_owned(),
        ),
        Err(e) => ("json_invalid", format!("JSON decode error: {e}")),
    };
    Err(vec![issue(&["body"], kind, msg)])
}

fn issue(path: &[&str], kind: &str, msg: impl Into<String>) -> ValidationIssue {
    let mut loc = vec![LocPart::from("body")];
    loc.extend(
        path.iter()
            .filter(|p| **p != "body")
            .map(|p| LocPart::from(*p)),
    );
    ValidationIssue {
        loc,
        msg: msg.into(),
        kind: kind.to_owned(),
    }
}

impl<'a> Reader<'a> {
    pub fn new(root: &'a Value) -> Self {
        Self {
            root,
            issues: Vec::new(),
        }
    }

    /// The value at `path`, `None` when absent or null.
    fn at(&self, path: &[&str]) -> Option<&'a Value> {
        path.iter()
            .try_fold(self.root, |v, k| v.get(k))
            .filter(|v| !v.is_null())
    }

    pub fn problem(&mut self, path: &[&str], kind: &str, msg: impl Into<String>) {
        self.issues.push(issue(path, kind, msg));
    }

    /// A required string.
    pub fn string(&mut self, path: &[&str]) -> Option<&'a str> {
        match self.at(path) {
            None => {
                self.problem(path, "missing", "Field required");
                None
            }
            Some(v) => self.as_str(path, v),
        }
    }

    /// A string that may be absent, null or empty (`None` then).
    pub fn optional_string(&mut self, path: &[&str]) -> Option<&'a str> {
        let v = self.at(path)?;
        self.as_str(path, v).filter(|s| !s.is_empty())
    }

    fn as_str(&mut self, path: &[&str], v: &'a Value) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.problem(path, "string_type", "Input should be a valid string");
                None
            }
        }
    }

    /// A required integer id (GitHub's and GitLab's ids are 64-bit).
    pub fn id(&mut self, path: &[&str]) -> Option<i64> {
        match self.at(path) {
            None => {
                self.problem(path, "missing", "Field required");
                None
            }
            Some(v) => self.as_id(path, v),
        }
    }

    /// An integer id that may be absent or null.
    pub fn optional_id(&mut self, path: &[&str]) -> Option<i64> {
        let v = self.at(path)?;
        self.as_id(path, v)
    }

    fn as_id(&mut self, path: &[&str], v: &Value) -> Option<i64> {
        let id = v.as_i64();
        if id.is_none() {
            self.problem(path, "int_type", "Input should be a valid integer");
        }
        id
    }

    /// `value` parsed by a field's rule; the rule's message becomes the
    /// issue at `path`.
    pub fn parsed<T>(
        &mut self,
        path: &[&str],
        value: Option<&str>,
        parse: impl FnOnce(String) -> Result<T, FieldError>,
    ) -> Option<T> {
        match parse(value?.to_owned()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(path, e.kind, e.msg);
                None
            }
        }
    }

    /// A time as a code host writes it (RFC 3339, or GitLab's
    /// `2021-04-28 21:50:00 +0200`), in range and not too far ahead.
    pub fn time(
        &mut self,
        path: &[&str],
        value: Option<&str>,
        clock: Clock,
    ) -> Option<DateTime<Utc>> {
        let what = path.join(".");
        self.parsed(path, value, |s| checked_time(&s, &what, clock))
    }

    /// The issues found, or the value when there were none.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ValidationIssue>> {
        match value {
            Some(v) if self.issues.is_empty() => Ok(v),
            _ => {
                debug_assert!(
                    !self.issues.is_empty(),
                    "a field was dropped without an issue"
                );
                Err(self.issues)
            }
        }
    }
}

fn checked_time(s: &str, what: &str, clock: Clock) -> Result<DateTime<Utc>, FieldError> {
    let t = parse_code_host_time(s).ok_or_else(|| {
        FieldError::new(
            "datetime_parsing",
            format!("{what} must be a timestamp such as 2024-01-15T10:30:00Z or 2024-01-15 11:30:00 +0100, got {s:?}"),
        )
    })?;
    check_timestamp_range(t, what)?;
    if t > clock.now + clock.max_future_skew {
        return Err(FieldError::new(
            "datetime_future",
            format!(
                "{what} {s:?} is more than {}s in the future (server time {})",
                clock.max_future_skew.num_seconds(),
                clock.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    Ok(t)
}

/// RFC 3339 (GitHub), GitLab's `%Y-%m-%d %H:%M:%S %z` and its `... UTC`
/// form, or what [`parse_timestamp`] takes; microsecond precision.
fn parse_code_host_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z")
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .ok()
        .or_else(|| parse_timestamp(s.strip_suffix(" UTC").unwrap_or(s)))
}

/// A deployment's ref: the branch when it names one the seed's rule
/// accepts, else `None` and the ref is kept as `extra_data.ref` (a tag, a
/// commit SHA or its prefix). A tag that looks like a branch name (`v1.2`)
/// cannot be told from one: the payloads do not say.
pub fn branch_of(reference: &str, sha: Option<&CommitSha>) -> Option<BranchName> {
    if reference.starts_with("refs/tags/") {
        return None;
    }
    let name = reference.strip_prefix("refs/heads/").unwrap_or(reference);
    let lower = name.to_ascii_lowercase();
    let is_sha = (7..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_hexdigit())
        && sha.is_none_or(|s| s.as_str().starts_with(&lower));
    if is_sha {
        return None;
    }
    BranchName::parse(name).ok()
}

/// `extra_data` from the provider's fields, leaving out those it did not
/// give; a value that `jsonb` cannot hold is an issue at `extra_data`.
pub fn extra_data(
    reader: &mut Reader<'_>,
    fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
) -> Option<ExtraData> {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
    match ExtraData::parse(map) {
        Ok(e) => Some(e),
        Err(e) => {
            reader.problem(&[], e.kind, e.msg);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha() -> CommitSha {
        CommitSha::parse("279484c09fbe69ededfced8c1bb6e6d24616b468").unwrap()
    }

    #[test]
    fn gitlab_times_with_an_offset_are_read_in_utc() {
        let t = parse_code_host_time("2021-04-28 21:50:00 +0200").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-04-28T19:50:00+00:00");
        let t = parse_code_host_time("2021-04-28 19:50:00 UTC").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-04-28T19:50:00+00:00");
        let t = parse_code_host_time("2021-04-28T19:50:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2021-04-28T19:50:00+00:00");
        assert_eq!(parse_code_host_time("yesterday"), None);
    }

    #[test]
    fn a_branch_is_a_branch_and_a_tag_or_sha_is_not() {
        let s = sha();
        assert_eq!(branch_of("main", Some(&s)).unwrap().as_str(), "main");
        assert_eq!(
            branch_of("refs/heads/release/1", Some(&s))
                .unwrap()
                .as_str(),
            "release/1"
        );
        assert_eq!(branch_of("refs/tags/v1.0.0", Some(&s)), None);
        assert_eq!(branch_of("279484c0", Some(&s)), None);
        assert_eq!(branch_of(s.as_str(), Some(&s)), None);
        assert_eq!(branch_of("bad name", Some(&s)), None);
        // Hex that is not the deployed commit is a branch's name.
        assert_eq!(
            branch_of("deadbeef", Some(&s)).unwrap().as_str(),
            "deadbeef"
        );
    }
}
