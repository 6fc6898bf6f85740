//! What changed since the last deployment, read from the CI checkout with the
//! `git` command: the commits from the deployed one (exclusive) to the one
//! being reported, newest first, at most [`MAX_COMMITS`].
//!
//! CI checkouts are often shallow (GitHub's checkout fetches one commit), so
//! the range is trusted only when the deployed commit is an ancestor of the
//! reported one *and* `git log deployed..head` reaches no shallow commit (a
//! merged branch forked long ago may cross the shallow boundary even when the
//! deployed commit is there). Until then the reported commit's history alone
//! is deepened in bounded steps ([`DEEPEN_STEPS`], no tags). Whatever cannot
//! be worked out ends in "only the reported commit" with a note saying why.
//! Every git process is killed after [`GIT_TIMEOUT`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use vibemon_schemas::fields::forbidden_char;

/// The contract's bound on `commits`: more than this and only the newest are sent.
pub const MAX_COMMITS: usize = vibemon_schemas::MAX_COMMITS;
/// The contract's bounds on a commit's `author` and `subject`, in characters.
const MAX_AUTHOR: usize = 64;
const MAX_SUBJECT: usize = 100;
/// `git fetch --deepen` steps tried in turn on a shallow clone, then give
/// up: most deployments are a few commits apart, so the first step usually
/// suffices and a long history is fetched only when needed.
const DEEPEN_STEPS: [u32; 3] = [50, 200, 1000];
/// The longest any one git process (a fetch, mostly) may run before it is killed.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Fields separated by NUL, and with `-z` commits too: NUL cannot occur in
/// commit text, so a subject holding any other byte cannot break parsing.
const LOG_FORMAT: &str = "--format=%H%x00%cI%x00%aI%x00%an%x00%s";
const LOG_FIELDS: usize = 5;

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

    /// Runs git in the work tree, killed after [`GIT_TIMEOUT`]; stdout on
    /// success, else stderr's first line.
    fn git(&self, args: &[&str]) -> Result<String, String> {
        let what = || format!("git {}", args.join(" "));
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(args)
            // A fetch must never wait for a password nobody will type.
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git: {e}"))?;
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        let deadline = Instant::now() + GIT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} was killed after {}s",
                        what(),
                        GIT_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => return Err(format!("{}: {e}", what())),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        Err(format!("{} failed: {first}", what()))
    }

    /// The full sha `rev` names (`HEAD`, a sha), lower case.
    pub fn resolve(&self, rev: &str) -> Result<String, String> {
        let spec = format!("{rev}^{{commit}}");
        let sha = self.git(&["rev-parse", "--verify", "--quiet", &spec])?;
        Ok(sha.trim().to_ascii_lowercase())
    }

    /// Whether the commit is in the local object store.
    fn has_commit(&self, sha: &str) -> bool {
        self.git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .is_ok()
    }

    fn is_shallow(&self) -> Result<bool, String> {
        Ok(self.git(&["rev-parse", "--is-shallow-repository"])?.trim() == "true")
    }

    /// Whether `a` is an ancestor of `b` (as far as the local history shows).
    fn is_ancestor(&self, a: &str, b: &str) -> bool {
        self.git(&["merge-base", "--is-ancestor", a, b]).is_ok()
    }

    /// The commits whose parents a shallow clone lacks.
    fn shallow_commits(&self) -> Result<Vec<String>, String> {
        let path = self.git(&["rev-parse", "--git-path", "shallow"])?;
        let path = self.path.join(path.trim());
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(text.lines().map(|l| l.trim().to_owned()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read the shallow file: {e}")),
        }
    }

    /// Whether `previous..head` (with its boundary) reaches a shallow
    /// commit, i.e. the local history may miss commits of the range.
    fn range_is_cut(&self, previous: &str, head: &str) -> Result<bool, String> {
        let shallow = self.shallow_commits()?;
        if shallow.is_empty() {
            return Ok(false);
        }
        let range = format!("{previous}..{head}");
        let out = self.git(&["log", "--boundary", "--format=%H", &range, "--"])?;
        Ok(out
            .lines()
            .map(|l| l.trim().trim_start_matches('-'))
            .any(|sha| shallow.iter().any(|s| s == sha)))
    }

    /// Deepens the history of `head` alone (no tags) by `step` commits.
    fn deepen(&self, head: &str, step: u32) -> Result<(), String> {
        let deepen = format!("--deepen={step}");
        self.git(&["fetch", "--quiet", "--no-tags", &deepen, "origin", head])
            .map(|_| ())
    }

    /// `git log` of `range`, newest first, at most `max` commits.
    fn log(&self, range: &str, max: usize) -> Result<Vec<Commit>, String> {
        let count = format!("--max-count={max}");
        let out = self.git(&[
            "log",
            "-z",
            "--no-show-signature",
            &count,
            LOG_FORMAT,
            range,
            "--",
        ])?;
        parse_log(&out)
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
        let mut steps = DEEPEN_STEPS.iter();
        loop {
            let shallow = self.is_shallow()?;
            if self.has_commit(previous) {
                if self.is_ancestor(previous, head) {
                    if !shallow || !self.range_is_cut(previous, head)? {
                        return self.complete_range(head, previous);
                    }
                } else if !shallow {
                    if self.is_ancestor(head, previous) {
                        return only_head(Some(format!(
                            "{head} is an ancestor of the deployed commit {previous} (a rollback); sending only {head}"
                        )));
                    }
                    return only_head(Some(format!(
                        "the deployed commit {previous} is not an ancestor of {head} (a force-push or another branch?); sending only {head}"
                    )));
                }
            } else if !shallow {
                return only_head(Some(format!(
                    "the deployed commit {previous} is not in this clone's history (a force-push or another branch?); sending only {head}"
                )));
            }
            let Some(step) = steps.next() else {
                let total: u32 = DEEPEN_STEPS.iter().sum();
                return only_head(Some(format!(
                    "the commits since the deployed commit {previous} are not within {total} commits of this shallow clone (or it is not an ancestor); sending only {head}"
                )));
            };
            if let Err(why) = self.deepen(head, *step) {
                return only_head(Some(format!(
                    "cannot deepen this shallow clone to find the deployed commit {previous} ({why}); sending only {head}"
                )));
            }
        }
    }

    /// `previous..head` once it is known to be complete, at most [`MAX_COMMITS`].
    fn complete_range(&self, head: &str, previous: &str) -> Result<Range, String> {
        let mut commits = self.log(&format!("{previous}..{head}"), MAX_COMMITS + 1)?;
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

/// `git log -z` output of [`LOG_FORMAT`]: [`LOG_FIELDS`] NUL-separated
/// fields per commit, commits separated by NUL too.
fn parse_log(out: &str) -> Result<Vec<Commit>, String> {
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<&str> = out.strip_suffix('\0').unwrap_or(out).split('\0').collect();
    if !fields.len().is_multiple_of(LOG_FIELDS) {
        return Err(format!("unexpected git log output: {out:?}"));
    }
    Ok(fields.chunks(LOG_FIELDS).map(parse_record).collect())
}

fn parse_record(fields: &[&str]) -> Commit {
    let [sha, committed_at, authored_at, author, subject] = fields else {
        unreachable!("chunks of LOG_FIELDS");
    };
    Commit {
        sha: sha.trim().to_ascii_lowercase(),
        committed_at: committed_at.trim().to_owned(),
        authored_at: authored_at.trim().to_owned(),
        author: visible(author, MAX_AUTHOR),
        subject: visible(subject, MAX_SUBJECT),
    }
}

/// `text` without control, formatting or private-use characters (which the
/// webhook refuses), trimmed and cut to `max` characters.
fn visible(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .filter(|c| forbidden_char(*c).is_none())
        .collect();
    kept.trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_record_is_split_on_nul_and_cut_to_the_contract_caps() {
        let long = "é".repeat(600);
        let author = format!("Ada\u{202e} Lovelace{}", "x".repeat(80));
        let out = format!(
            "ABCDEF0123456789abcdef0123456789abcdef01\x002024-01-15T10:30:00+01:00\x002024-01-14T09:00:00Z\x00{author}\x00a\x1eb\x1fc {long}\x00\
             abcdef0123456789abcdef0123456789abcdef02\x002024-01-15T10:30:00Z\x002024-01-14T09:00:00Z\x00\u{e000}\x00Fix\x00"
        );

        let c = parse_log(&out).unwrap();

        assert_eq!(c.len(), 2);
        assert_eq!(c[0].sha, "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(c[0].committed_at, "2024-01-15T10:30:00+01:00");
        assert!(c[0].author.starts_with("Ada Lovelace"));
        assert_eq!(c[0].author.chars().count(), MAX_AUTHOR);
        assert!(c[0].subject.starts_with("abc é"));
        assert_eq!(c[0].subject.chars().count(), MAX_SUBJECT);
        assert_eq!(c[1].author, "");
        assert!(c[1].to_json().get("author").is_none());
        assert!(parse_log("only\x00two\x00").is_err());
        assert!(parse_log("").unwrap().is_empty());
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
