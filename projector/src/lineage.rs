//! The lineage of one environment and repository, computed from its
//! successful deployments in order: each one's predecessor, whether it is a
//! rollback, and which rollback undid it (docs/dora.md). Pure, so the rules
//! are tested here on their own; [`crate::what_changed`] fetches the rows and
//! writes the result.
//!
//! - The order is (`deployed_at`, deployment id).
//! - A success is a **rollback** when its commit is known, an earlier success
//!   deployed the same commit (the latest one is its *anchor*), and the
//!   latest earlier success of known commit is not that anchor: something
//!   else was running, and this went back. A success whose commit is unknown
//!   neither differs from nor matches anything.
//! - A success is **rolled back** by the first later rollback whose anchor
//!   comes before it.
//!
//! One pass forward finds predecessors and anchors; one pass backward finds
//! who rolled back what, with a heap of the rollbacks seen so far. Both are
//! linear in the rows (times log n), whatever the history.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a success sits in its key's order.
pub type Position = (DateTime<Utc>, Uuid);

/// One successful deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    pub id: Uuid,
    pub deployed_at: DateTime<Utc>,
    pub commit_sha: Option<String>,
}

impl Success {
    pub fn position(&self) -> Position {
        (self.deployed_at, self.id)
    }
}

/// What came before the span being computed.
#[derive(Debug, Clone, Default)]
pub struct Before {
    /// The success just before the span.
    pub predecessor: Option<Success>,
    /// The latest success of known commit before the span.
    pub known: Option<Success>,
    /// Per commit of the span, its latest success before the span.
    pub anchors: HashMap<String, Success>,
}

/// The facts of one success of the span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub id: Uuid,
    pub predecessor_id: Option<Uuid>,
    pub predecessor_commit_sha: Option<String>,
    pub rollback_to: Option<Uuid>,
    pub rolled_back_by: Option<Uuid>,
}

/// The facts of every success of `span` (in order), given what came
/// before it.
pub fn facts(before: &Before, span: &[Success]) -> Vec<Facts> {
    let mut predecessor = before.predecessor.as_ref();
    let mut known = before.known.as_ref();
    let mut latest: HashMap<&str, &Success> = before
        .anchors
        .iter()
        .map(|(sha, s)| (sha.as_str(), s))
        .collect();
    // Per success: its facts so far and, for a rollback, its anchor.
    let mut out: Vec<(Facts, Option<Position>)> = Vec::with_capacity(span.len());
    for s in span {
        let anchor = s.commit_sha.as_deref().and_then(|c| latest.get(c).copied());
        let rollback = anchor.filter(|a| Some(a.id) != known.map(|k| k.id));
        out.push((
            Facts {
                id: s.id,
                predecessor_id: predecessor.map(|p| p.id),
                predecessor_commit_sha: predecessor.and_then(|p| p.commit_sha.clone()),
                rollback_to: rollback.map(|a| a.id),
                rolled_back_by: None,
            },
            rollback.map(Success::position),
        ));
        predecessor = Some(s);
        if let Some(c) = s.commit_sha.as_deref() {
            known = Some(s);
            latest.insert(c, s);
        }
    }
    // Backward: the rollbacks after the current success, earliest on top.
    // One whose anchor is not before the current success is not before any
    // earlier one either, so it leaves the heap for good.
    let mut after: BinaryHeap<Reverse<(usize, Position)>> = BinaryHeap::new();
    for i in (0..span.len()).rev() {
        let here = span[i].position();
        while after
            .peek()
            .is_some_and(|Reverse((_, anchor))| *anchor >= here)
        {
            after.pop();
        }
        out[i].0.rolled_back_by = after.peek().map(|Reverse((r, _))| span[*r].id);
        if let Some(anchor) = out[i].1 {
            after.push(Reverse((i, anchor)));
        }
    }
    out.into_iter().map(|(f, _)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Successes one minute apart with the given commits ("" for unknown).
    fn history(commits: &[&str]) -> Vec<Success> {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        commits
            .iter()
            .enumerate()
            .map(|(i, c)| Success {
                id: Uuid::from_u128(i as u128 + 1),
                deployed_at: t0 + chrono::Duration::minutes(i as i64),
                commit_sha: (!c.is_empty()).then(|| c.to_string()),
            })
            .collect()
    }

    /// (rollback_to, rolled_back_by) of each success, as indexes.
    fn marks(commits: &[&str]) -> Vec<(Option<usize>, Option<usize>)> {
        let span = history(commits);
        let index = |id: Option<Uuid>| id.map(|id| span.iter().position(|s| s.id == id).unwrap());
        facts(&Before::default(), &span)
            .into_iter()
            .map(|f| (index(f.rollback_to), index(f.rolled_back_by)))
            .collect()
    }

    #[test]
    fn going_back_to_an_earlier_commit_is_a_rollback_that_undoes_what_came_between() {
        assert_eq!(
            marks(&["a", "b", "c", "a"]),
            [
                (None, None),
                (None, Some(3)),
                (None, Some(3)),
                (Some(0), None)
            ]
        );
    }

    #[test]
    fn redeploying_what_runs_is_not_a_rollback_even_after_an_unknown_commit() {
        assert_eq!(marks(&["a", "a"]), [(None, None), (None, None)]);
        assert_eq!(
            marks(&["a", "", "a"]),
            [(None, None), (None, None), (None, None)]
        );
        // An unknown commit between does not hide what was replaced.
        assert_eq!(
            marks(&["a", "b", "", "a"]),
            [
                (None, None),
                (None, Some(3)),
                (None, Some(3)),
                (Some(0), None)
            ]
        );
    }

    #[test]
    fn the_first_rollback_whose_anchor_precedes_a_deployment_is_the_one_that_undid_it() {
        // b is undone by the first a; c by the later b (back to b at 1).
        assert_eq!(
            marks(&["a", "b", "c", "b", "a"]),
            [
                (None, None),
                (None, Some(4)),
                (None, Some(3)),
                (Some(1), Some(4)),
                (Some(0), None)
            ]
        );
    }

    #[test]
    fn what_came_before_the_span_counts_as_history() {
        let all = history(&["a", "b", "c", "a"]);
        let before = Before {
            predecessor: Some(all[1].clone()),
            known: Some(all[1].clone()),
            anchors: HashMap::from([("a".to_owned(), all[0].clone())]),
        };
        let f = facts(&before, &all[2..]);
        assert_eq!(f[0].predecessor_id, Some(all[1].id));
        assert_eq!(f[0].predecessor_commit_sha.as_deref(), Some("b"));
        assert_eq!(f[0].rolled_back_by, Some(all[3].id));
        assert_eq!(f[1].rollback_to, Some(all[0].id));
    }
}
