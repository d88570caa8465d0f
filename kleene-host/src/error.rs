//! Errors a front end must tell apart: an HTTP API answers "not found" with 404 and other
//! refusals otherwise; the CLI prints them all the same way.

use std::fmt;

/// The named object does not exist. The message is Kleene's (`network not found`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound(pub String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// Whether `e` (or anything it wraps) says that something was not found.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<NotFound>())
}
