//! What a key may do: [`Scope`] and the set of them a key holds, [`Scopes`].
//!
//! `ingest` sends reports (the webhook), `read` reads the history (the read
//! API, viewing the dashboard), `admin` manages the workspace (keys and
//! environments in the dashboard). Scopes do not imply one another: a key
//! that may only `admin` cannot send a webhook. In Postgres a key's scopes
//! are a `text[]` of the names below (`api_keys.scopes`).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// One thing a key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Ingest => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }

    /// What the scope allows, in a sentence fragment (for `--help` and pages).
    pub fn grants(self) -> &'static str {
        match self {
            Scope::Ingest => "send deployment reports to the webhook",
            Scope::Read => "read the history: the read API and the dashboard",
            Scope::Admin => "manage keys and environments in the dashboard",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Scope::ALL`], or an empty set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope {0:?}; the scopes are ingest, read and admin")]
    Unknown(String),
    #[error("a key needs at least one scope (ingest, read or admin)")]
    Empty,
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ScopeError::Unknown(s.to_owned()))
    }
}

/// A non-empty set of scopes, always listed in the order of [`Scope::ALL`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// What a new key gets unless its creator asks for more: a CI secret.
    pub const DEFAULT_FOR_NEW_KEYS: Scopes = Scopes(1);
    /// What every key made before scopes existed keeps.
    pub const LEGACY: Scopes = Scopes(1 | 2);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The names, for binding to `api_keys.scopes`.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Parses a comma-separated list such as `ingest,read` (as `--scope`
    /// takes it); spaces around names are allowed, repeats are not an error.
    pub fn parse_list(list: &str) -> Result<Self, ScopeError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .collect::<Option<Scopes>>()
            .ok_or(ScopeError::Empty)
    }
}

impl FromIterator<Scope> for Option<Scopes> {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let bits = iter.into_iter().fold(0, |bits, s| bits | s.bit());
        (bits != 0).then_some(Scopes(bits))
    }
}

impl TryFrom<Vec<String>> for Scopes {
    type Error = ScopeError;
    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        names
            .iter()
            .map(|n| n.parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .collect::<Option<Scopes>>()
            .ok_or(ScopeError::Empty)
    }
}

impl fmt::Display for Scopes {
    /// `ingest,read`: the form `--scope` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl Serialize for Scopes {
    /// A JSON list of names: `["ingest","read"]`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Scope::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_parses_in_any_order_and_prints_in_one() {
        let scopes = Scopes::parse_list(" admin, ingest ,admin").unwrap();
        assert_eq!(scopes.to_string(), "ingest,admin");
        assert!(scopes.contains(Scope::Admin) && !scopes.contains(Scope::Read));
        assert_eq!(
            serde_json::to_string(&scopes).unwrap(),
            r#"["ingest","admin"]"#
        );
    }

    #[test]
    fn unknown_and_empty_lists_are_refused_with_the_names_that_exist() {
        let unknown = Scopes::parse_list("ingest,write").unwrap_err();
        assert_eq!(unknown, ScopeError::Unknown("write".into()));
        assert!(unknown.to_string().contains("ingest, read and admin"));
        assert_eq!(Scopes::parse_list(" , ").unwrap_err(), ScopeError::Empty);
        assert_eq!(Scopes::try_from(vec![]).unwrap_err(), ScopeError::Empty);
        assert!(Scopes::try_from(vec!["Read".to_owned()]).is_err());
    }

    #[test]
    fn new_keys_may_only_ingest_and_old_keys_keep_ingest_and_read() {
        assert_eq!(Scopes::DEFAULT_FOR_NEW_KEYS.to_string(), "ingest");
        assert_eq!(Scopes::LEGACY.to_string(), "ingest,read");
    }
}
