//! Who a delivery is for, and whether it really comes from the code host:
//! the receiver by the id in the path, and its secret checked against the
//! delivery's signature (GitHub) or token (GitLab) in constant time.
//!
//! An unknown id costs the same work as a real one (a secret derived from a
//! dummy receiver, the same HMAC over the body), so the answer's timing does
//! not tell which receivers exist.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;
use vibemon_store::integrations::{self, Integration, Provider, SecretKey};

use crate::error::ApiError;

/// GitHub's signature of the body: `sha256=` and the hex HMAC-SHA256.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitLab's secret token, sent as is.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

/// The salt of the receiver that does not exist, whose secret an unknown id
/// is checked against.
const DUMMY_SALT: [u8; 16] = [0; 16];

/// The receiver of `provider` with the id in the path; `None` when the id is
/// not a UUID, unknown, or another provider's.
pub async fn find(
    pool: &PgPool,
    provider: Provider,
    id: &str,
) -> Result<Option<Integration>, ApiError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let found = integrations::find(pool, id)
        .await
        .map_err(|e| ApiError::ReferenceUnavailable(e.to_string()))?;
    Ok(found.filter(|r| r.provider == provider))
}

/// The receiver, once the delivery proved it holds its secret: 404 for none
/// (after the same work), 401 for a bad signature or token, then 401 for a
/// revoked receiver.
pub fn authenticate(
    key: &SecretKey,
    provider: Provider,
    receiver: Option<Integration>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Integration, ApiError> {
    let secret = match &receiver {
        Some(r) => key.secret_for(r.id, &r.secret_salt),
        None => key.secret_for(Uuid::nil(), &DUMMY_SALT),
    };
    let (matches, header) = match provider {
        Provider::Github => (
            signature_matches(&secret, headers, body),
            "X-Hub-Signature-256",
        ),
        Provider::Gitlab => (token_matches(&secret, headers), "X-Gitlab-Token"),
    };
    let receiver = receiver.ok_or(ApiError::UnknownReceiver)?;
    if !matches {
        return Err(ApiError::BadSignature(header));
    }
    if receiver.revoked_at.is_some() {
        return Err(ApiError::ReceiverRevoked);
    }
    Ok(receiver)
}

/// Whether `X-Hub-Signature-256` is the HMAC of `body` with `secret`. The
/// HMAC is computed whatever the header holds, and compared by `hmac`'s
/// constant-time `verify_slice`.
fn signature_matches(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let presented = headers
        .get(GITHUB_SIGNATURE)
        .and_then(|v| v.as_bytes().strip_prefix(b"sha256="))
        .and_then(decode_hex);
    match presented {
        Some(tag) => mac.verify_slice(&tag).is_ok(),
        None => false,
    }
}

/// Whether `X-Gitlab-Token` is `secret`, compared in constant time: both
/// are MACed under one key and the tags compared with `verify_slice`, so
/// neither the content nor the length of a wrong token shows in the timing.
fn token_matches(secret: &str, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(GITLAB_TOKEN)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let tag = |bytes: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"vibemon-gitlab-token").expect("any key");
        mac.update(bytes);
        mac
    };
    let expected = tag(secret.as_bytes()).finalize().into_bytes();
    tag(presented).verify_slice(&expected).is_ok() && !presented.is_empty()
}

/// 64 hex digits as 32 bytes; `None` for anything else.
fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).expect("checked above") as u8;
    Some(
        hex.chunks(2)
            .map(|p| digit(p[0]) << 4 | digit(p[1]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_decoded_only_when_it_is_64_hex_digits() {
        let hex = "00ff10".repeat(10) + "abcd";
        let bytes = decode_hex(hex.as_bytes()).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..3], &[0x00, 0xff, 0x10]);
        assert_eq!(decode_hex(b"+f"), None);
        assert_eq!(decode_hex(&[b'g'; 64]), None);
        assert_eq!(decode_hex(&[b'a'; 63]), None);
    }
}
