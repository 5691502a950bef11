//! Cluster records: small values a backend with a store keeps for the whole cluster (etcd:
//! `/<prefix>/<cluster>/<name>`), written once, atomically, by whoever comes first.

/// A cluster record as it is after [`Discovery::create_record`](crate::Discovery::create_record):
/// its value, and whether that call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The value stored (the caller's when it created the record, the earlier one otherwise).
    pub value: Vec<u8>,
    /// Whether this call created the record.
    pub created: bool,
}

impl Record {
    /// A record holding `value`; `created` says whether this call wrote it.
    pub fn new(value: Vec<u8>, created: bool) -> Record {
        Record { value, created }
    }
}
