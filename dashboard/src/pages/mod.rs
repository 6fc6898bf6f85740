//! The pages, one module each, rendered with `maud`: every value from a
//! webhook (branch, repository, extra_data, key names) goes through maud's
//! escaping, and no page has an inline script or style, so the strict
//! Content-Security-Policy in `app.rs` holds.

pub mod deployment;
pub mod environments;
pub mod keys;
pub mod layout;
pub mod settings_environments;
pub mod sign_in;
pub mod timeline;
