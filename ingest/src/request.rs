//! The webhook body, parsed and validated into a [`WebhookRequest`].
//!
//! Validation reports every problem at once, each with its location, in the
//! 422 shape of the seed's API family. The body is first read as a list of
//! (key, value) pairs rather than a map so a duplicated key is caught instead
//! of silently keeping the last one, and unknown fields (`commitSha`) are
//! refused instead of dropped; the same holds inside each commit object.
//! `commits` (beyond the seed, like `external_id`) is checked item by item,
//! so a 422 names `["body", "commits", 3, "sha"]`.

use chrono::{DateTime, Duration, Utc};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use vibemon_schemas::api::{LocPart, ValidationIssue};
use vibemon_schemas::commit::{parse_commit_timestamp, repeated_shas};
use vibemon_schemas::fields::{check_timestamp_range, parse_timestamp};
use vibemon_schemas::{
    BranchName, Commit, CommitAuthor, CommitSha, CommitSubject, DeploymentSource, DeploymentStatus,
    EnvironmentName, ExternalId, ExtraData, FieldError, RepoFullName, MAX_COMMITS,
};

/// Every field the webhook accepts.
const FIELDS: [&str; 11] = [
    "environment",
    "repository",
    "branch",
    "commit_sha",
    "status",
    "source",
    "deployed_at",
    "extra_data",
    "external_id",
    "previous_commit_sha",
    "commits",
];

/// Every field of one entry of `commits`.
const COMMIT_FIELDS: [&str; 5] = ["sha", "committed_at", "authored_at", "author", "subject"];

/// A webhook body that passed every rule, with the seed's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    pub environment: EnvironmentName,
    pub repository: RepoFullName,
    pub branch: Option<BranchName>,
    pub commit_sha: Option<CommitSha>,
    pub status: DeploymentStatus,
    pub source: DeploymentSource,
    pub deployed_at: DateTime<Utc>,
    pub extra_data: ExtraData,
    pub external_id: Option<ExternalId>,
    /// What the reporter believes was deployed before (event version 2).
    pub previous_commit_sha: Option<CommitSha>,
    /// The commits this deployment ships (event version 2); empty when not
    /// given.
    pub commits: Vec<Commit>,
}

/// Top-level JSON object as ordered pairs, duplicates kept, and the keys
/// repeated inside each object of (the first) `commits`, which a `Value`
/// would have silently collapsed.
struct Pairs {
    pairs: Vec<(String, Value)>,
    /// (index in `commits`, key) for each repetition of a key.
    commit_duplicates: Option<Vec<(usize, String)>>,
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Pairs {
                    pairs: Vec::with_capacity(FIELDS.len()),
                    commit_duplicates: None,
                };
                while let Some(k) = map.next_key::<String>()? {
                    let v = if k == "commits" && out.commit_duplicates.is_none() {
                        // Read once as text: once for the repeated keys,
                        // once as the value the checker reads.
                        let raw = map.next_value::<Box<serde_json::value::RawValue>>()?;
                        out.commit_duplicates = Some(repeated_keys_per_item(raw.get()));
                        serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?
                    } else {
                        map.next_value::<Value>()?
                    };
                    out.pairs.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// For a JSON array, (index, key) for each key an object item repeats;
/// nothing for anything else (the checker refuses a non-array itself).
fn repeated_keys_per_item(raw: &str) -> Vec<(usize, String)> {
    let items: Vec<RepeatedKeys> = serde_json::from_str(raw).unwrap_or_default();
    items
        .into_iter()
        .enumerate()
        .flat_map(|(i, keys)| keys.0.into_iter().map(move |k| (i, k)))
        .collect()
}

/// The keys a JSON object repeats (each repetition once); any other value
/// has none.
struct RepeatedKeys(Vec<String>);

impl<'de> Deserialize<'de> for RepeatedKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RepeatedKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RepeatedKeys, A::Error> {
                let (mut seen, mut repeated) = (Vec::<String>::new(), Vec::new());
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if seen.contains(&k) {
                        repeated.push(k);
                    } else {
                        seen.push(k);
                    }
                }
                Ok(RepeatedKeys(repeated))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RepeatedKeys, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<RepeatedKeys, E> {
                Ok(RepeatedKeys(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

fn issue(loc: &[&str], kind: &str, msg: impl Into<String>) -> ValidationIssue {
    issue_at(loc.iter().map(|s| LocPart::from(*s)).collect(), kind, msg)
}

fn issue_at(loc: Vec<LocPart>, kind: &str, msg: impl Into<String>) -> ValidationIssue {
    ValidationIssue {
        loc,
        msg: msg.into(),
        kind: kind.to_owned(),
    }
}

fn field_issue(field: &str, err: FieldError) -> ValidationIssue {
    issue(&["body", field], err.kind, err.msg)
}

/// `["body", field]`, the location of a top-level field.
fn body_loc(field: &str) -> Vec<LocPart> {
    vec![LocPart::from("body"), LocPart::from(field)]
}

/// Collects issues while the fields are checked one by one.
struct Checker {
    issues: Vec<ValidationIssue>,
}

impl Checker {
    /// A string field: `None` when absent, null or (for optional fields) empty.
    /// CI variables that are unset expand to `""` (GitLab's `CI_COMMIT_BRANCH`
    /// on a tag pipeline), so an empty optional string means "not given".
    fn string(&mut self, field: &str, value: Option<&Value>, required: bool) -> Option<String> {
        self.string_at(body_loc(field), value, required)
    }

    /// [`Checker::string`] at any location, such as inside `commits`.
    fn string_at(
        &mut self,
        loc: Vec<LocPart>,
        value: Option<&Value>,
        required: bool,
    ) -> Option<String> {
        match value {
            None | Some(Value::Null) if required => {
                self.issues.push(issue_at(loc, "missing", "Field required"));
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() && !required => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.issues.push(issue_at(
                    loc,
                    "string_type",
                    format!("Input should be a valid string, got {}", json_type(other)),
                ));
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        field: &str,
        value: Option<String>,
        parse: impl FnOnce(String) -> Result<T, FieldError>,
    ) -> Option<T> {
        self.parsed_at(body_loc(field), value, parse)
    }

    /// [`Checker::parsed`] at any location.
    fn parsed_at<T>(
        &mut self,
        loc: Vec<LocPart>,
        value: Option<String>,
        parse: impl FnOnce(String) -> Result<T, FieldError>,
    ) -> Option<T> {
        match parse(value?) {
            Ok(v) => Some(v),
            Err(e) => {
                self.issues.push(issue_at(loc, e.kind, e.msg));
                None
            }
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and validates a body. `now` is when the request arrived (the
/// default `deployed_at`); `max_future_skew` bounds how far ahead of it a
/// CI clock may be. `max_event_version` is `INGEST_MAX_EVENT_VERSION`: below
/// 2, a body giving a field only version 2 carries is refused, naming it.
pub fn parse(
    body: &[u8],
    now: DateTime<Utc>,
    max_future_skew: Duration,
    max_event_version: u8,
) -> Result<WebhookRequest, Vec<ValidationIssue>> {
    let Pairs {
        pairs,
        commit_duplicates,
    } = decode(body)?;
    let mut c = Checker { issues: Vec::new() };
    let [environment, repository, branch, commit_sha, status, source, deployed_at, extra_data, external_id, mut previous_commit_sha, mut commits] =
        c.fields(&pairs);
    if max_event_version < 2 {
        c.not_yet("previous_commit_sha", &mut previous_commit_sha);
        c.not_yet("commits", &mut commits);
    }

    // Field groups in this order, so the issues are listed in it.
    let (environment, repository) = c.target(environment, repository);
    let (branch, commit_sha) = c.revision(branch, commit_sha);
    let (status, source, external_id) = c.outcome(status, source, external_id);
    let clock = Clock {
        now,
        max_future_skew,
    };
    let deployed_at = c.deployed_at(deployed_at, clock);
    let extra_data = c.extra_data(extra_data);
    let (previous_commit_sha, commits) = c.what_changed(
        previous_commit_sha,
        commits,
        commit_duplicates.as_deref().unwrap_or_default(),
    );

    let (Some(environment), Some(repository), Some(extra_data), Some(commits), true) = (
        environment,
        repository,
        extra_data,
        commits,
        c.issues.is_empty(),
    ) else {
        // Every `None` above recorded an issue; the fuzz targets and tests
        // run with debug assertions and would catch a field that did not.
        debug_assert!(!c.issues.is_empty(), "a field was dropped without an issue");
        return Err(c.issues);
    };
    Ok(WebhookRequest {
        environment,
        repository,
        branch,
        commit_sha,
        status: status.unwrap_or_default(),
        source: source.unwrap_or_default(),
        deployed_at: deployed_at.unwrap_or(now),
        extra_data,
        external_id,
        previous_commit_sha,
        commits,
    })
}

/// [`CommitSha::parse`], its message naming `field` rather than `commit_sha`.
fn sha_named(field: &'static str) -> impl Fn(String) -> Result<CommitSha, FieldError> {
    move |s| {
        CommitSha::parse(s).map_err(|mut e| {
            e.msg = e.msg.replacen("commit_sha", field, 1);
            e
        })
    }
}

/// When the request arrived, and how far ahead of it a CI clock may be.
#[derive(Clone, Copy)]
struct Clock {
    now: DateTime<Utc>,
    max_future_skew: Duration,
}

impl Clock {
    /// A timestamp the body gives as `what`: ISO 8601, a time Postgres can
    /// hold, not further ahead of the arrival than the allowed skew.
    fn timestamp(self, s: &str, what: &str) -> Result<DateTime<Utc>, FieldError> {
        let t = parse_timestamp(s).ok_or_else(|| {
            FieldError::new(
                "datetime_parsing",
                format!(
                    "{what} must be an ISO 8601 timestamp such as 2024-01-15T10:30:00Z, got {s:?}"
                ),
            )
        })?;
        check_timestamp_range(t, what)?;
        if t > self.now + self.max_future_skew {
            return Err(FieldError::new(
                "datetime_future",
                format!(
                    "{what} {s:?} is more than {}s in the future (server time {}); check the CI clock",
                    self.max_future_skew.num_seconds(),
                    self.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        Ok(t)
    }
}

/// The body as (key, value) pairs, or the one issue that it is not a JSON
/// object.
fn decode(body: &[u8]) -> Result<Pairs, Vec<ValidationIssue>> {
    match serde_json::from_slice::<Pairs>(body) {
        Ok(p) => Ok(p),
        Err(e) if e.is_data() => Err(vec![issue(
            &["body"],
            "model_attributes_type",
            "Input should be a JSON object",
        )]),
        Err(e) => {
            let mut i = issue(&["body"], "json_invalid", format!("JSON decode error: {e}"));
            i.loc.push(LocPart::Index(e.column() as u64));
            Err(vec![i])
        }
    }
}

/// The value given for each field, in [`FIELDS`] order.
type Fields<'a> = [Option<&'a Value>; FIELDS.len()];

impl Checker {
    /// Each pair in its field's place; a duplicated or unknown key is an issue.
    fn fields<'a>(&mut self, pairs: &'a [(String, Value)]) -> Fields<'a> {
        let mut fields: Fields<'a> = [None; FIELDS.len()];
        for (key, value) in pairs {
            match FIELDS.iter().position(|f| f == key) {
                Some(i) if fields[i].is_some() => self.issues.push(issue(
                    &["body", key],
                    "duplicate_field",
                    format!("Field {key:?} appears more than once"),
                )),
                Some(i) => fields[i] = Some(value),
                None => self.issues.push(issue(
                    &["body", key],
                    "extra_forbidden",
                    format!(
                        "Extra inputs are not permitted: {key:?} is not a field (fields: {})",
                        FIELDS.join(", ")
                    ),
                )),
            }
        }
        fields
    }

    /// A version-2 field while ingest writes only version 1: given (not
    /// absent, `null`, `""` or `[]`, which all mean "not given"), it is
    /// refused and then treated as absent, so its own rules add nothing.
    fn not_yet(&mut self, field: &str, value: &mut Option<&Value>) {
        let given = match value {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if given {
            self.issues.push(issue(
                &["body", field],
                "extra_forbidden",
                format!(
                    "{field} is not accepted by this ingest yet (INGEST_MAX_EVENT_VERSION=1: \
                     it writes only version-1 events until its consumers are upgraded); \
                     resend without {field}"
                ),
            ));
            *value = None;
        }
    }

    /// Where it was deployed: the two required fields.
    fn target(
        &mut self,
        environment: Option<&Value>,
        repository: Option<&Value>,
    ) -> (Option<EnvironmentName>, Option<RepoFullName>) {
        let environment = self.string("environment", environment, true);
        let environment = self.parsed("environment", environment, EnvironmentName::parse);
        let repository = self.string("repository", repository, true);
        let repository = self.parsed("repository", repository, RepoFullName::parse);
        (environment, repository)
    }

    /// What was deployed.
    fn revision(
        &mut self,
        branch: Option<&Value>,
        commit_sha: Option<&Value>,
    ) -> (Option<BranchName>, Option<CommitSha>) {
        let branch = self.string("branch", branch, false);
        let branch = self.parsed("branch", branch, BranchName::parse);
        let commit_sha = self.string("commit_sha", commit_sha, false);
        let commit_sha = self.parsed("commit_sha", commit_sha, CommitSha::parse);
        (branch, commit_sha)
    }

    /// How it went, who says so, and the sender's own id for it.
    fn outcome(
        &mut self,
        status: Option<&Value>,
        source: Option<&Value>,
        external_id: Option<&Value>,
    ) -> (
        Option<DeploymentStatus>,
        Option<DeploymentSource>,
        Option<ExternalId>,
    ) {
        let status = self.string("status", status, false);
        let status = self.parsed("status", status, |s| DeploymentStatus::parse(&s));
        let source = self.string("source", source, false);
        let source = self.parsed("source", source, |s| DeploymentSource::parse_webhook(&s));
        let external_id = self.string("external_id", external_id, false);
        let external_id = self.parsed("external_id", external_id, ExternalId::parse);
        (status, source, external_id)
    }

    /// When it was deployed: a timestamp Postgres can hold, not further
    /// ahead of `now` than the allowed clock skew.
    fn deployed_at(&mut self, value: Option<&Value>, clock: Clock) -> Option<DateTime<Utc>> {
        let deployed_at = self.string("deployed_at", value, false);
        self.parsed("deployed_at", deployed_at, |s| {
            clock.timestamp(&s, "deployed_at")
        })
    }

    /// Free-form data: an object (or nothing), checked by `ExtraData`.
    fn extra_data(&mut self, value: Option<&Value>) -> Option<ExtraData> {
        match value {
            None | Some(Value::Null) => Some(ExtraData::default()),
            Some(Value::Object(map)) => match ExtraData::parse(map.clone()) {
                Ok(data) => Some(data),
                Err(e) => {
                    self.issues.push(field_issue("extra_data", e));
                    None
                }
            },
            Some(other) => {
                self.issues.push(issue(
                    &["body", "extra_data"],
                    "dict_type",
                    format!("extra_data must be a JSON object, got {}", json_type(other)),
                ));
                None
            }
        }
    }
}

/// `["body", "commits", index]` and, when given, a field inside it.
fn commit_loc(index: usize, field: Option<&str>) -> Vec<LocPart> {
    let mut loc = body_loc("commits");
    loc.push(LocPart::Index(index as u64));
    loc.extend(field.map(LocPart::from));
    loc
}

impl Checker {
    /// The version-2 group: `previous_commit_sha` and `commits`.
    fn what_changed(
        &mut self,
        previous_commit_sha: Option<&Value>,
        commits: Option<&Value>,
        commit_duplicates: &[(usize, String)],
    ) -> (Option<CommitSha>, Option<Vec<Commit>>) {
        let previous = self.string("previous_commit_sha", previous_commit_sha, false);
        let previous = self.parsed(
            "previous_commit_sha",
            previous,
            sha_named("previous_commit_sha"),
        );
        (previous, self.commits(commits, commit_duplicates))
    }

    /// The commits the deployment ships: an array of at most
    /// [`MAX_COMMITS`] commit objects, no SHA twice. Absent, `null` and `[]`
    /// all mean "not given".
    /// `duplicates` are the keys each commit object repeats.
    fn commits(
        &mut self,
        value: Option<&Value>,
        duplicates: &[(usize, String)],
    ) -> Option<Vec<Commit>> {
        let items = match self.commit_list(value)? {
            Some(items) => items,
            None => return Some(Vec::new()),
        };
        let before = self.issues.len();
        let commits: Vec<Option<Commit>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                for (_, key) in duplicates.iter().filter(|(at, _)| *at == i) {
                    self.issues.push(issue_at(
                        commit_loc(i, Some(key)),
                        "duplicate_field",
                        format!("Field {key:?} appears more than once in this commit"),
                    ));
                }
                self.commit(i, item)
            })
            .collect();
        self.record_repeated_shas(items);
        let commits: Option<Vec<Commit>> = commits.into_iter().collect();
        commits.filter(|_| self.issues.len() == before)
    }

    /// `commits` as a list of at most [`MAX_COMMITS`] items: `Some(None)`
    /// when not given, `None` (with the issue recorded) when not a list or
    /// too long. Each entry of a list too long is not checked: the count
    /// alone is the answer.
    fn commit_list<'v>(&mut self, value: Option<&'v Value>) -> Option<Option<&'v [Value]>> {
        let (kind, msg) = match value {
            None | Some(Value::Null) => return Some(None),
            Some(Value::Array(items)) if items.len() <= MAX_COMMITS => return Some(Some(items)),
            Some(Value::Array(items)) => (
                "too_long",
                format!(
                    "commits must list at most {MAX_COMMITS} commits (the newest), got {}",
                    items.len()
                ),
            ),
            Some(other) => (
                "list_type",
                format!(
                    "commits must be a JSON array of commits, got {}",
                    json_type(other)
                ),
            ),
        };
        self.issues.push(issue(&["body", "commits"], kind, msg));
        None
    }

    /// Records each SHA listed more than once. Runs over every SHA that
    /// parsed, even in a commit with another problem, so one 422 lists a
    /// repeat along with the rest.
    fn record_repeated_shas(&mut self, items: &[Value]) {
        let shas: Vec<Option<CommitSha>> = items
            .iter()
            .map(|item| {
                let sha = item.get("sha").and_then(Value::as_str)?;
                CommitSha::parse(sha).ok()
            })
            .collect();
        for i in repeated_shas(&shas) {
            let Some(sha) = &shas[i] else { continue };
            self.issues.push(issue_at(
                commit_loc(i, Some("sha")),
                "value_error",
                format!("sha {sha} is listed more than once in commits"),
            ));
        }
    }

    /// One entry of `commits`: an object of [`COMMIT_FIELDS`], `sha` and
    /// `committed_at` required.
    fn commit(&mut self, index: usize, item: &Value) -> Option<Commit> {
        let Value::Object(map) = item else {
            self.issues.push(issue_at(
                commit_loc(index, None),
                "model_attributes_type",
                format!("each commit must be a JSON object, got {}", json_type(item)),
            ));
            return None;
        };
        for key in map.keys().filter(|k| !COMMIT_FIELDS.contains(&k.as_str())) {
            self.issues.push(issue_at(
                commit_loc(index, Some(key)),
                "extra_forbidden",
                format!(
                    "Extra inputs are not permitted: {key:?} is not a field of a commit (fields: {})",
                    COMMIT_FIELDS.join(", ")
                ),
            ));
        }
        let mut field = |name: &str, required: bool| {
            let loc = commit_loc(index, Some(name));
            (self.string_at(loc.clone(), map.get(name), required), loc)
        };
        let (sha, sha_loc) = field("sha", true);
        let (committed_at, committed_loc) = field("committed_at", true);
        let (authored_at, authored_loc) = field("authored_at", false);
        let (author, author_loc) = field("author", false);
        let (subject, subject_loc) = field("subject", false);
        // No future-skew check here: see `parse_commit_timestamp`.
        let time = |what| move |s: String| parse_commit_timestamp(&s, what);
        // Every field is checked before any is given up on, so one 422
        // lists all of a commit's problems.
        let sha = self.parsed_at(sha_loc, sha, sha_named("sha"));
        let committed_at = self.parsed_at(committed_loc, committed_at, time("committed_at"));
        let authored_at = self.parsed_at(authored_loc, authored_at, time("authored_at"));
        let author = self.parsed_at(author_loc, author, CommitAuthor::parse);
        let subject = self.parsed_at(subject_loc, subject, CommitSubject::parse);
        Some(Commit {
            sha: sha?,
            committed_at: committed_at?,
            authored_at,
            author,
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn check(body: Value) -> Result<WebhookRequest, Vec<ValidationIssue>> {
        parse(body.to_string().as_bytes(), now(), Duration::minutes(5), 2)
    }

    fn locs(issues: &[ValidationIssue]) -> Vec<String> {
        issues
            .iter()
            .map(|i| format!("{}:{}", serde_json::to_string(&i.loc).unwrap(), i.kind))
            .collect()
    }

    #[test]
    fn the_minimal_body_gets_the_seed_defaults() {
        let r = check(json!({"environment": "production", "repository": "owner/repo"})).unwrap();
        assert_eq!(r.status, DeploymentStatus::Success);
        assert_eq!(r.source, DeploymentSource::Webhook);
        assert_eq!(r.deployed_at, now());
        assert!(r.extra_data.as_map().is_empty());
        assert_eq!(r.branch, None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let issues = check(json!({
            "repository": 5, "commit_sha": "abc", "status": "done", "source": "circleci",
            "deployed_at": "yesterday", "extra_data": [1], "commitSha": "x"
        }))
        .unwrap_err();
        let got = locs(&issues);
        for want in [
            r#"["body","commitSha"]:extra_forbidden"#,
            r#"["body","environment"]:missing"#,
            r#"["body","repository"]:string_type"#,
            r#"["body","commit_sha"]:string_pattern_mismatch"#,
            r#"["body","status"]:enum"#,
            r#"["body","source"]:enum"#,
            r#"["body","deployed_at"]:datetime_parsing"#,
            r#"["body","extra_data"]:dict_type"#,
        ] {
            assert!(got.contains(&want.to_owned()), "missing {want} in {got:?}");
        }
    }

    #[test]
    fn a_duplicated_key_is_refused_not_silently_overwritten() {
        let body = br#"{"environment":"production","repository":"o/r","environment":"staging"}"#;
        let issues = parse(body, now(), Duration::minutes(5), 2).unwrap_err();
        assert_eq!(locs(&issues), [r#"["body","environment"]:duplicate_field"#]);
    }

    #[test]
    fn malformed_json_and_non_objects_are_refused() {
        let issues = parse(b"{\"environment\": ", now(), Duration::minutes(5), 2).unwrap_err();
        assert_eq!(issues[0].kind, "json_invalid");
        let issues = parse(b"[1,2]", now(), Duration::minutes(5), 2).unwrap_err();
        assert_eq!(issues[0].kind, "model_attributes_type");
        let issues = parse(b"\xff\xfe{}", now(), Duration::minutes(5), 2).unwrap_err();
        assert_eq!(issues[0].kind, "json_invalid");
    }

    #[test]
    fn timestamps_in_any_offset_are_normalised_to_utc() {
        let r = check(json!({"environment": "p", "repository": "o/r", "deployed_at": "2024-01-15T12:00:00+02:00"})).unwrap();
        assert_eq!(
            r.deployed_at,
            DateTime::parse_from_rfc3339("2024-01-15T10:00:00Z").unwrap()
        );
        let r = check(
            json!({"environment": "p", "repository": "o/r", "deployed_at": "2024-01-15T09:00:00"}),
        )
        .unwrap();
        assert_eq!(
            r.deployed_at,
            DateTime::parse_from_rfc3339("2024-01-15T09:00:00Z").unwrap()
        );
    }

    #[test]
    fn timestamps_too_far_in_the_future_or_past_are_refused() {
        let issues = check(
            json!({"environment": "p", "repository": "o/r", "deployed_at": "2024-01-15T10:36:00Z"}),
        )
        .unwrap_err();
        assert_eq!(issues[0].kind, "datetime_future");
        assert!(check(
            json!({"environment": "p", "repository": "o/r", "deployed_at": "2024-01-15T10:34:00Z"})
        )
        .is_ok());
        let issues = check(
            json!({"environment": "p", "repository": "o/r", "deployed_at": "0001-01-01T00:00:00Z"}),
        )
        .unwrap_err();
        assert_eq!(issues[0].kind, "datetime_too_old");
    }

    #[test]
    fn empty_optional_strings_mean_not_given() {
        let r =
            check(json!({"environment": "p", "repository": "o/r", "branch": "", "commit_sha": ""}))
                .unwrap();
        assert_eq!((r.branch, r.commit_sha), (None, None));
        let issues = check(json!({"environment": "", "repository": "o/r"})).unwrap_err();
        assert_eq!(issues[0].kind, "string_too_short");
    }

    #[test]
    fn extra_data_with_nul_is_refused_at_its_location() {
        let issues =
            check(json!({"environment": "p", "repository": "o/r", "extra_data": {"k": "a\u{0}b"}}))
                .unwrap_err();
        assert_eq!(locs(&issues), [r#"["body","extra_data"]:value_error"#]);
        assert!(issues[0].msg.contains("NUL"));
    }

    fn commit(sha: &str) -> Value {
        json!({"sha": sha, "committed_at": "2024-01-15T09:00:00Z"})
    }

    fn sha(i: usize) -> String {
        format!("{i:040x}")
    }

    #[test]
    fn commits_and_the_previous_sha_are_parsed_and_normalised() {
        let r = check(json!({
            "environment": "p", "repository": "o/r",
            "previous_commit_sha": "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
            "commits": [{"sha": sha(1), "committed_at": "2024-01-15T11:00:00+02:00",
                         "authored_at": "2024-01-14T08:00:00", "author": "Ada", "subject": "Fix it"}]
        }))
        .unwrap();
        assert_eq!(
            r.previous_commit_sha.unwrap().as_str(),
            "abcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(r.commits.len(), 1);
        assert_eq!(
            r.commits[0].committed_at,
            DateTime::parse_from_rfc3339("2024-01-15T09:00:00Z").unwrap()
        );
        assert_eq!(r.commits[0].author.as_ref().unwrap().as_str(), "Ada");
    }

    #[test]
    fn empty_commits_and_an_empty_previous_sha_mean_not_given() {
        let r = check(json!({"environment": "p", "repository": "o/r", "commits": [], "previous_commit_sha": ""}))
            .unwrap();
        assert!(r.commits.is_empty());
        assert_eq!(r.previous_commit_sha, None);
        let r = check(json!({"environment": "p", "repository": "o/r", "commits": null})).unwrap();
        assert!(r.commits.is_empty());
    }

    #[test]
    fn every_problem_in_every_commit_is_reported_at_its_index() {
        let issues = check(json!({
            "environment": "p", "repository": "o/r", "previous_commit_sha": "abc",
            "commits": [
                commit(&sha(1)),
                {"sha": "xyz", "committed_at": "1969-12-31T23:59:59Z", "authored_at": "soon",
                 "author": "a\u{202E}b", "subject": "line\nbreak", "message": "full"},
                {"committed_at": 5},
                "4f2c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
                {"sha": sha(2), "committed_at": "2024-01-15T09:00:00Z", "subject": "x".repeat(101),
                 "author": "y".repeat(65)}
            ]
        }))
        .unwrap_err();
        let got = locs(&issues);
        for want in [
            r#"["body","previous_commit_sha"]:string_pattern_mismatch"#,
            r#"["body","commits",1,"message"]:extra_forbidden"#,
            r#"["body","commits",1,"sha"]:string_pattern_mismatch"#,
            r#"["body","commits",1,"committed_at"]:datetime_too_old"#,
            r#"["body","commits",1,"authored_at"]:datetime_parsing"#,
            r#"["body","commits",1,"author"]:string_pattern_mismatch"#,
            r#"["body","commits",1,"subject"]:string_pattern_mismatch"#,
            r#"["body","commits",2,"sha"]:missing"#,
            r#"["body","commits",2,"committed_at"]:string_type"#,
            r#"["body","commits",3]:model_attributes_type"#,
            r#"["body","commits",4,"subject"]:string_too_long"#,
            r#"["body","commits",4,"author"]:string_too_long"#,
        ] {
            assert!(got.contains(&want.to_owned()), "missing {want} in {got:?}");
        }
        assert_eq!(got.len(), 12, "{got:?}");
        let named = |prefix: &str| issues.iter().any(|i| i.msg.starts_with(prefix));
        assert!(
            named("previous_commit_sha must be a full SHA"),
            "{issues:?}"
        );
        assert!(named("sha must be a full SHA"), "{issues:?}");
    }

    #[test]
    fn below_version_2_the_version_2_fields_are_refused_by_name() {
        let body = json!({"environment": "p", "repository": "o/r",
            "previous_commit_sha": sha(1), "commits": [commit(&sha(2))]});
        let issues =
            parse(body.to_string().as_bytes(), now(), Duration::minutes(5), 1).unwrap_err();
        assert_eq!(
            locs(&issues),
            [
                r#"["body","previous_commit_sha"]:extra_forbidden"#,
                r#"["body","commits"]:extra_forbidden"#
            ]
        );
        assert!(
            issues[1].msg.contains("INGEST_MAX_EVENT_VERSION=1"),
            "{}",
            issues[1].msg
        );
        let not_given = json!({"environment": "p", "repository": "o/r",
            "previous_commit_sha": "", "commits": []});
        assert!(parse(
            not_given.to_string().as_bytes(),
            now(),
            Duration::minutes(5),
            1
        )
        .is_ok());
    }

    #[test]
    fn a_commit_dated_in_the_future_is_accepted_and_only_the_range_is_checked() {
        // Developer clocks are wrong and author dates survive rebases: the
        // deployment is not refused for either.
        let r = check(json!({"environment": "p", "repository": "o/r", "commits": [
            {"sha": sha(1), "committed_at": "2024-01-16T10:30:00Z", "authored_at": "2030-01-01T00:00:00Z"}
        ]}))
        .unwrap();
        assert_eq!(r.commits.len(), 1);
        let issues = check(json!({"environment": "p", "repository": "o/r", "commits": [
            {"sha": sha(1), "committed_at": "1969-12-31T23:59:59Z",
             "authored_at": format!("2024-01-15T09:00:00.{}Z", "0".repeat(45))}
        ]}))
        .unwrap_err();
        assert_eq!(
            locs(&issues),
            [
                r#"["body","commits",0,"committed_at"]:datetime_too_old"#,
                r#"["body","commits",0,"authored_at"]:string_too_long"#
            ]
        );
    }

    #[test]
    fn null_in_a_commit_means_not_given_as_it_does_at_the_top_level() {
        let r = check(
            json!({"environment": "p", "repository": "o/r", "branch": null, "commits": [
                {"sha": sha(1), "committed_at": "2024-01-15T09:00:00Z",
                 "authored_at": null, "author": null, "subject": null}
            ]}),
        )
        .unwrap();
        assert_eq!(r.branch, None);
        // The event then omits them: it never holds null there.
        assert_eq!(
            serde_json::to_value(&r.commits[0]).unwrap(),
            json!({"sha": sha(1), "committed_at": "2024-01-15T09:00:00Z"})
        );
    }

    #[test]
    fn a_key_repeated_inside_a_commit_is_refused_not_silently_overwritten() {
        let body = format!(
            r#"{{"environment":"p","repository":"o/r","commits":[
                {{"sha":"{a}","committed_at":"2024-01-15T09:00:00Z"}},
                {{"sha":"{a}","s\u0068a":"{b}","committed_at":"2024-01-15T09:00:00Z","sha":"{b}"}}]}}"#,
            a = sha(1),
            b = sha(2)
        );
        let issues = parse(body.as_bytes(), now(), Duration::minutes(5), 2).unwrap_err();
        assert_eq!(
            locs(&issues),
            [
                r#"["body","commits",1,"sha"]:duplicate_field"#,
                r#"["body","commits",1,"sha"]:duplicate_field"#
            ]
        );
        // Not an array, or items that are not objects: the usual issues only.
        let issues =
            check(json!({"environment": "p", "repository": "o/r", "commits": [1, [2], "x"]}))
                .unwrap_err();
        assert_eq!(issues.len(), 3, "{issues:?}");
    }

    #[test]
    fn a_repeated_sha_is_reported_even_when_another_commit_has_a_problem() {
        let issues = check(json!({"environment": "p", "repository": "o/r", "commits": [
            {"sha": sha(1), "committed_at": "yesterday"}, commit(&sha(2)), commit(&sha(1))
        ]}))
        .unwrap_err();
        assert_eq!(
            locs(&issues),
            [
                r#"["body","commits",0,"committed_at"]:datetime_parsing"#,
                r#"["body","commits",2,"sha"]:value_error"#
            ]
        );
    }

    #[test]
    fn a_sha_listed_twice_is_refused_at_its_second_place() {
        let issues = check(json!({"environment": "p", "repository": "o/r",
            "commits": [commit(&sha(1)), commit(&sha(2)), commit(&sha(1).to_uppercase())]}))
        .unwrap_err();
        assert!(
            issues[0].msg.contains("listed more than once"),
            "{}",
            issues[0].msg
        );
        assert_eq!(locs(&issues), [r#"["body","commits",2,"sha"]:value_error"#]);
    }

    #[test]
    fn at_most_max_commits_are_accepted_and_a_non_array_is_refused() {
        let list = |n: usize| Value::from((0..n).map(|i| commit(&sha(i))).collect::<Vec<_>>());
        let r =
            check(json!({"environment": "p", "repository": "o/r", "commits": list(MAX_COMMITS)}))
                .unwrap();
        assert_eq!(r.commits.len(), MAX_COMMITS);
        let issues = check(
            json!({"environment": "p", "repository": "o/r", "commits": list(MAX_COMMITS + 1)}),
        )
        .unwrap_err();
        assert_eq!(locs(&issues), [r#"["body","commits"]:too_long"#]);
        let issues =
            check(json!({"environment": "p", "repository": "o/r", "commits": commit(&sha(1))}))
                .unwrap_err();
        assert_eq!(locs(&issues), [r#"["body","commits"]:list_type"#]);
    }
}
