//! A throwaway certificate authority for TLS tests: a CA and a server
//! certificate for 127.0.0.1 it signed, made with openssl. Used by the
//! SASL_SSL broker and the TLS Postgres.

use std::path::Path;
use std::process::{Command, Stdio};

/// A test CA (`dir/ca.crt`, `ca.key`) and a server certificate it signed for
/// 127.0.0.1 (`server.crt`, `server.key`).
pub(crate) fn make_test_ca_and_server_cert(dir: &Path) {
    openssl(dir, CA);
    openssl(dir, SERVER_REQUEST);
    std::fs::write(dir.join("san.ext"), SERVER_EXTENSIONS).unwrap();
    openssl(dir, SIGN_SERVER);
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success(), "openssl {args:?} failed");
}

/// A self-signed CA, valid two days.
#[rustfmt::skip]
const CA: &[&str] = &[
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", "/CN=vibemon test CA", "-keyout", "ca.key", "-out", "ca.crt",
];

/// The server's key and its signing request.
#[rustfmt::skip]
const SERVER_REQUEST: &[&str] = &[
    "req", "-newkey", "rsa:2048", "-nodes",
    "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr",
];

/// The CA signs the request, with [`SERVER_EXTENSIONS`].
#[rustfmt::skip]
const SIGN_SERVER: &[&str] = &[
    "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
    "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
];

/// What the server certificate may be used for, and for which address.
const SERVER_EXTENSIONS: &str = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
