//! Outcomes: what the operators produce for one message. Invariant: every package of a
//! decodable manifest yields exactly one `PackageOutcome`, accepted or rejected; a message that
//! cannot be read as a manifest yields exactly one message-level rejection.

use crate::duty::Duty;
use crate::error::Issue;
use crate::model::{Header, Package};
use crate::risk::Risk;

/// The outcome of one package.
#[derive(Debug, Clone)]
pub struct PackageOutcome<'a> {
    pub package: Package<'a>,
    /// Set for accepted packages.
    pub duty: Option<Duty<'a>>,
    /// Set for accepted packages.
    pub risk: Option<Risk>,
}

impl PackageOutcome<'_> {
    pub fn accepted(&self) -> bool {
        self.package.errors.is_empty()
    }
    /// The primary error (the first), for dead-letter headers and metrics.
    pub fn primary_error(&self) -> Option<&Issue> {
        self.package.errors.first()
    }
}

/// The outcome of a decodable manifest: its header and one outcome per package, in order.
#[derive(Debug, Clone)]
pub struct ManifestOutcome<'a> {
    /// Byte offset of the `packages` array in the message (for dead-letter records).
    pub packages_at: u32,
    pub header: Header<'a>,
    pub packages: Vec<PackageOutcome<'a>>,
}

/// The outcome of one message.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// Not a readable manifest: one exception for the whole message.
    Message(Issue),
    Manifest(ManifestOutcome<'a>),
}

impl Outcome<'_> {
    /// Number of outcomes this message yields (packages, or 1 for a message failure).
    pub fn len(&self) -> usize {
        match self {
            Outcome::Message(_) => 1,
            Outcome::Manifest(m) => m.packages.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}
