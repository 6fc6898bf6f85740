//! Free TCP ports on 127.0.0.1 for the private brokers and servers a test
//! starts, so parallel tests never collide.

use std::net::TcpListener;

/// A port nothing listens on now (the OS picks it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port `p` between 20000 and 39999 such that every `p + offset` is free:
/// a cluster's scripts number its ports from one base.
pub(crate) fn free_block(offsets: &[u16]) -> u16 {
    loop {
        let p: u16 = 20_000 + (random_u16() % 20_000);
        let free = offsets
            .iter()
            .all(|o| TcpListener::bind(("127.0.0.1", p + o)).is_ok());
        if free {
            return p;
        }
    }
}

fn random_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() % 65_536) as u16
}
