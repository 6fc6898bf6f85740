//! The dashboard's configuration: every knob is a flag and an environment
//! variable, with a default and a line saying what it is for.

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;

const EXAMPLES: &str = "\
Examples:
  # Against the local stack (deploy/local/services up; eval \"$(deploy/local/services env)\"):
  dashboard
  # then open http://127.0.0.1:8082 and sign in with a key made with
  #   vibemon key create --workspace \"$WS\" --name \"SRE team\" --scope read,admin

  # Several replicas behind one load balancer share the session key:
  DASHBOARD_SESSION_KEY=$(openssl rand -base64 64) dashboard --addr 0.0.0.0:8082
";

/// The dashboard: what runs in each environment, timelines of deployments
/// and what each one changed, for anyone with a `read` key; API keys and
/// environments for `admin` keys. Reads and writes Postgres only.
#[derive(Debug, Clone, Parser)]
#[command(name = "dashboard", version, after_help = EXAMPLES)]
pub struct Config {
    /// Postgres holding the read model, keys and environments.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Address to listen on.
    #[arg(
        long = "addr",
        env = "DASHBOARD_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub addr: SocketAddr,

    /// The key that signs session cookies and CSRF tokens: at least 64
    /// bytes, base64 (`openssl rand -base64 64`; line breaks are ignored).
    /// Replicas must share it. When unset or empty, one is made at start,
    /// so sessions end when the process does.
    #[arg(long, env = "DASHBOARD_SESSION_KEY", value_parser = parse_session_key, hide_env_values = true)]
    pub session_key: Option<SessionKey>,

    /// How long a sign-in lasts, in minutes, whatever is done meanwhile.
    #[arg(long, env = "DASHBOARD_SESSION_MINUTES", default_value_t = 60)]
    pub session_minutes: u32,

    /// Mark the session cookie `Secure` (sent over HTTPS only). Browsers
    /// treat http://127.0.0.1 and http://localhost as secure, so this stays
    /// on for local use too; turn it off only behind a plain-HTTP proxy on
    /// another host, for a test.
    #[arg(long, env = "DASHBOARD_SECURE_COOKIE", default_value_t = true, action = clap::ArgAction::Set)]
    pub secure_cookie: bool,

    /// Postgres connections.
    #[arg(long, env = "DASHBOARD_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// The origin people reach the dashboard at, e.g.
    /// `https://dash.example.com`: form posts must come from it. Unset, a
    /// post's `Origin` must match its `Host` header, which holds unless a
    /// proxy rewrites `Host` (nginx's default does: set this then).
    #[arg(long, env = "DASHBOARD_PUBLIC_ORIGIN", value_parser = parse_origin)]
    pub public_origin: Option<String>,

    /// Sign-in attempts allowed per client IP per minute (each costs an
    /// argon2 verification); past it, 429. Behind a proxy every client has
    /// the proxy's address, so raise it there.
    #[arg(long, env = "DASHBOARD_SIGN_INS_PER_MINUTE", default_value_t = 20)]
    pub sign_ins_per_minute: u32,
}

fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an origin such as https://dash.example.com"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "{s:?} is not an origin (scheme://host[:port], no path), such as https://dash.example.com"
        ));
    }
    Ok(s.to_owned())
}

/// The session-signing key's bytes (at least 64; none when given empty).
#[derive(Clone)]
pub struct SessionKey(pub Vec<u8>);

impl Config {
    /// The configured session key, if one was given and is not empty.
    pub fn session_key_bytes(&self) -> Option<&[u8]> {
        self.session_key
            .as_ref()
            .map(|k| k.0.as_slice())
            .filter(|k| !k.is_empty())
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// `openssl rand -base64 64` prints two lines: whitespace anywhere is
/// dropped before decoding.
fn parse_session_key(s: &str) -> Result<SessionKey, String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        // Empty is unset (a compose file passes the variable through either way).
        return Ok(SessionKey(Vec::new()));
    }
    let bytes = STANDARD
        .decode(compact)
        .map_err(|e| format!("not base64: {e}; make one with `openssl rand -base64 64`"))?;
    if bytes.len() < 64 {
        return Err(format!(
            "{} bytes is too short: at least 64 are needed; make one with `openssl rand -base64 64`",
            bytes.len()
        ));
    }
    Ok(SessionKey(bytes))
}

impl Config {
    /// The defaults, for a database: what tests and embedders start from.
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            addr: "127.0.0.1:0".parse().expect("a valid address"),
            session_key: None,
            session_minutes: 60,
            secure_cookie: true,
            db_pool_size: 8,
            public_origin: None,
            sign_ins_per_minute: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_is_base64_of_64_bytes_line_breaks_allowed_and_empty_means_none() {
        let two_lines = format!("{}\n{}\n", "A".repeat(76), "A".repeat(12));
        assert_eq!(parse_session_key(&two_lines).unwrap().0.len(), 66);
        assert!(parse_session_key(" \n").unwrap().0.is_empty());
        assert!(parse_session_key("AAAA").unwrap_err().contains("too short"));
        assert!(parse_session_key("not base64!")
            .unwrap_err()
            .contains("not base64"));
        let mut config = Config::new("postgres://x");
        config.session_key = Some(SessionKey(Vec::new()));
        assert!(config.session_key_bytes().is_none());
    }

    #[test]
    fn a_public_origin_is_a_scheme_and_host_only() {
        assert_eq!(
            parse_origin("https://dash.example.com/").unwrap(),
            "https://dash.example.com"
        );
        assert!(parse_origin("dash.example.com").is_err());
        assert!(parse_origin("https://dash.example.com/path").is_err());
    }
}
