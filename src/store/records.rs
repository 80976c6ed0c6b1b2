//! Sealed usage records, upload batches and the rejected log.

/// A record about to be sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {}

/// A stored upload batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {}

/// One entry of the rejected log.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {}
