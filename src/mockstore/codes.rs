//! The store's answer codes and the HTTP status each comes with (`koogallery-usage-api.md`,
//! "Response"), and [`Rejection`], a refused request with the message the mock sends back.

use serde::Serialize;

/// An `error_code` the mock answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// `MKT.0000`, 200.
    Success,
    /// `MKT.0999`, 500: internal error (transient); also every injected failure.
    Internal,
    /// `MKT.0100`, 500: a value out of range or in a bad format.
    BadValue,
    /// `MKT.0101`, 400: unknown, extra or missing field, illegal value (wrong JSON type).
    InvalidParameter,
    /// `MKT.0102`, 400: signature invalid; the mock also answers it for missing or malformed
    /// auth headers, a `ts` too far from its clock and a reused nonce (see the module docs).
    BadSignature,
    /// `MKT.9001`, 500: instance id not found.
    InstanceNotFound,
    /// `MKT.9002`, 500: invalid usage entries (empty list, begin ≥ end).
    InvalidEntries,
    /// `MKT.9003`, 500: more than 1000 records.
    TooManyRecords,
    /// `MKT.9004`, 500: begin time more than 21 days before now.
    BeginOutOfRange,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "MKT.0000",
            Code::Internal => "MKT.0999",
            Code::BadValue => "MKT.0100",
            Code::InvalidParameter => "MKT.0101",
            Code::BadSignature => "MKT.0102",
            Code::InstanceNotFound => "MKT.9001",
            Code::InvalidEntries => "MKT.9002",
            Code::TooManyRecords => "MKT.9003",
            Code::BeginOutOfRange => "MKT.9004",
        }
    }

    /// The HTTP status the real store sends with this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Success => 200,
            Code::InvalidParameter | Code::BadSignature => 400,
            Code::Internal
            | Code::BadValue
            | Code::InstanceNotFound
            | Code::InvalidEntries
            | Code::TooManyRecords
            | Code::BeginOutOfRange => 500,
        }
    }
}

/// A refused request: the code, and a message naming the record and field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>) -> Rejection {
        Rejection { code, message: message.into() }
    }
}

/// The response body, `{"error_code":"…","error_msg":"…"}`.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    pub error_code: &'a str,
    pub error_msg: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_documented_ones() {
        let table = [
            (Code::Success, "MKT.0000", 200),
            (Code::Internal, "MKT.0999", 500),
            (Code::BadValue, "MKT.0100", 500),
            (Code::InvalidParameter, "MKT.0101", 400),
            (Code::BadSignature, "MKT.0102", 400),
            (Code::InstanceNotFound, "MKT.9001", 500),
            (Code::InvalidEntries, "MKT.9002", 500),
            (Code::TooManyRecords, "MKT.9003", 500),
            (Code::BeginOutOfRange, "MKT.9004", 500),
        ];
        for (code, text, status) in table {
            assert_eq!((code.as_str(), code.http_status()), (text, status));
        }
    }
}
