//! What changed since the last deployment, read from the CI checkout with the
//! `git` command: the commits from the deployed one (exclusive) to the one
//! being reported, newest first, at most [`MAX_COMMITS`].
//!
//! CI checkouts are often shallow (GitHub's checkout fetches one commit), so
//! when the deployed commit is missing from a shallow clone the clone is
//! deepened a few times before giving up. Whatever cannot be worked out ends
//! in "only the reported commit" with a note saying why; `report.rs` decides
//! whether a git error fails the step (`--strict`) or not.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};
use vibemon_schemas::fields::forbidden_char;

/// The contract's bound on `commits`: more than this and only the newest are sent.
pub const MAX_COMMITS: usize = 250;
/// The contract's bounds on a commit's `author` and `subject`, in characters.
const MAX_AUTHOR: usize = 255;
const MAX_SUBJECT: usize = 500;
/// `git fetch --deepen` steps tried in turn on a shallow clone, then
/// `--unshallow`: most deployments are a few commits apart, so the first
/// step usually suffices and a long history is fetched only when needed.
const DEEPEN_STEPS: [u32; 3] = [50, 200, 1000];

/// One field per `%x1f`, one commit per `%x1e`: neither can occur in a name,
/// a subject or a date, so splitting is unambiguous.
const LOG_FORMAT: &str = "--format=%H%x1f%cI%x1f%aI%x1f%an%x1f%s%x1e";

/// One commit as the webhook's `commits` items describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub sha: String,
    pub committed_at: String,
    pub authored_at: String,
    pub author: String,
    pub subject: String,
}

impl Commit {
    /// The body item: `author` and `subject` are left out when nothing
    /// visible remains of them.
    pub fn to_json(&self) -> Value {
        let mut item = Map::new();
        item.insert("sha".into(), Value::from(self.sha.clone()));
        item.insert(
            "committed_at".into(),
            Value::from(self.committed_at.clone()),
        );
        item.insert("authored_at".into(), Value::from(self.authored_at.clone()));
        for (name, value) in [("author", &self.author), ("subject", &self.subject)] {
            if !value.is_empty() {
                item.insert(name.into(), Value::from(value.clone()));
            }
        }
        Value::Object(item)
    }
}

/// The commits to send, and what the user should be told about them.
#[derive(Debug)]
pub struct Range {
    /// Newest first; empty only when nothing could be said.
    pub commits: Vec<Commit>,
    /// Why the list is shorter than the real range, for stderr.
    pub note: Option<String>,
}

/// A git work tree, driven through the `git` command.
pub struct Repo {
    path: PathBuf,
}

impl Repo {
    /// The work tree at `path`, or why it is not one.
    pub fn open(path: &Path) -> Result<Self, String> {
        let repo = Self {
            path: path.to_owned(),
        };
        match repo.git(&["rev-parse", "--is-inside-work-tree"]) {
            Ok(out) if out.trim() == "true" => Ok(repo),
            Ok(_) => Err(format!("{} is not inside a git work tree", path.display())),
            Err(e) => Err(e),
        }
    }

    /// Runs git in the work tree; stdout on success, else stderr's first line.
    fn git(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(args)
            // A fetch must never wait for a password nobody will type.
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        Err(format!("git {} failed: {first}", args.join(" ")))
    }

    /// The full sha `rev` names (`HEAD`, a sha), lower case.
    pub fn resolve(&self, rev: &str) -> Result<String, String> {
        let spec = format!("{rev}^{{commit}}");
        let sha = self.git(&["rev-parse", "--verify", "--quiet", &spec])?;
        Ok(sha.trim().to_ascii_lowercase())
    }

    /// Whether the commit is in the local object store.
    pub fn has_commit(&self, sha: &str) -> bool {
        self.git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .is_ok()
    }

    fn is_shallow(&self) -> Result<bool, String> {
        Ok(self.git(&["rev-parse", "--is-shallow-repository"])?.trim() == "true")
    }

    /// Deepens a shallow clone step by step until `sha` is there. `Ok(false)`
    /// when the clone is complete (or became so) and `sha` is still missing.
    fn deepen_until(&self, sha: &str) -> Result<bool, String> {
        if self.has_commit(sha) {
            return Ok(true);
        }
        for step in DEEPEN_STEPS {
            if !self.is_shallow()? {
                return Ok(false);
            }
            self.git(&["fetch", "--quiet", &format!("--deepen={step}")])?;
            if self.has_commit(sha) {
                return Ok(true);
            }
        }
        if self.is_shallow()? {
            self.git(&["fetch", "--quiet", "--unshallow"])?;
        }
        Ok(self.has_commit(sha))
    }

    /// `git log` of `range`, newest first, at most `max` commits.
    fn log(&self, range: &str, max: usize) -> Result<Vec<Commit>, String> {
        let count = format!("--max-count={max}");
        let out = self.git(&["log", &count, LOG_FORMAT, range, "--"])?;
        out.split('\x1e')
            .map(|r| r.trim_start_matches('\n'))
            .filter(|r| !r.is_empty())
            .map(parse_record)
            .collect()
    }

    /// The commits from `previous` (exclusive) to `head`: see the module
    /// doc. `previous` is what the read API says is deployed now, if anything.
    pub fn range(&self, head: &str, previous: Option<&str>) -> Result<Range, String> {
        let only_head = |note: Option<String>| -> Result<Range, String> {
            Ok(Range {
                commits: self.log(head, 1)?,
                note,
            })
        };
        let Some(previous) = previous else {
            return only_head(Some(format!(
                "nothing is deployed there yet; sending only {head}"
            )));
        };
        if previous.eq_ignore_ascii_case(head) {
            return only_head(None);
        }
        if !self.deepen_until(previous)? {
            return only_head(Some(format!(
                "the deployed commit {previous} is not in this clone's history (a force-push or another branch?); sending only {head}"
            )));
        }
        let mut commits = self.log(&format!("{previous}..{head}"), MAX_COMMITS + 1)?;
        if commits.is_empty() {
            return only_head(Some(format!(
                "{head} is an ancestor of the deployed commit {previous} (a rollback?); sending only {head}"
            )));
        }
        let mut note = None;
        if commits.len() > MAX_COMMITS {
            commits.truncate(MAX_COMMITS);
            note = Some(format!(
                "more than {MAX_COMMITS} commits since {previous}; sending the newest {MAX_COMMITS}"
            ));
        }
        Ok(Range { commits, note })
    }
}

/// One `%x1f`-separated record of [`LOG_FORMAT`].
fn parse_record(record: &str) -> Result<Commit, String> {
    let fields: Vec<&str> = record.split('\x1f').collect();
    let [sha, committed_at, authored_at, author, subject] = fields[..] else {
        return Err(format!("unexpected git log output: {record:?}"));
    };
    Ok(Commit {
        sha: sha.trim().to_ascii_lowercase(),
        committed_at: committed_at.to_owned(),
        authored_at: authored_at.to_owned(),
        author: visible(author, MAX_AUTHOR),
        subject: visible(subject, MAX_SUBJECT),
    })
}

/// `text` without control, formatting or private-use characters (which the
/// webhook refuses), trimmed and cut to `max` characters.
fn visible(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .filter(|c| forbidden_char(*c).is_none())
        .collect();
    kept.trim().chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_record_is_split_on_its_separators_and_cleaned() {
        let long = "s".repeat(600);
        let record = format!(
            "ABCDEF0123456789abcdef0123456789abcdef01\x1f2024-01-15T10:30:00+01:00\x1f2024-01-14T09:00:00Z\x1fAda\u{202e} Lovelace\x1f{long}"
        );

        let c = parse_record(&record).unwrap();

        assert_eq!(c.sha, "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(c.committed_at, "2024-01-15T10:30:00+01:00");
        assert_eq!(c.author, "Ada Lovelace");
        assert_eq!(c.subject.chars().count(), MAX_SUBJECT);
        assert!(parse_record("only\x1ftwo").is_err());
    }

    #[test]
    fn an_empty_author_or_subject_is_left_out_of_the_body_item() {
        let c = Commit {
            sha: "a".repeat(40),
            committed_at: "2024-01-15T10:30:00Z".into(),
            authored_at: "2024-01-15T10:30:00Z".into(),
            author: String::new(),
            subject: "Fix".into(),
        };

        let item = c.to_json();

        assert!(item.get("author").is_none());
        assert_eq!(item["subject"], "Fix");
    }
}
