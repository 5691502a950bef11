//! v3 cluster records: a transaction creates the key only while its create revision is 0.

use autocluster_plugin::{Error, ErrorKind, Record, Result};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::EtcdBackend;
use crate::record::record_key;
use crate::NAME;

impl EtcdBackend {
    /// v3: creates the record unless its key exists (create revision 0), else reads it.
    pub(super) async fn create_record_v3(&self, name: &str, value: &[u8]) -> Result<Record> {
        let key = record_key(self.layout(), "create_record", name)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self
            .core()
            .call("create_record", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|e| e.with_key(key.clone()))?;
        if resp.succeeded() {
            return Ok(Record::new(value.to_vec(), true));
        }
        let existing = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        };
        // A record deleted between the compare and the read: as if it never existed; the
        // caller asks again.
        existing.map(|v| Record::new(v, false)).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "the record was deleted while it was being created",
            )
            .with_backend(NAME)
            .with_operation("create_record")
            .with_key(key)
        })
    }

    /// v3: reads the record.
    pub(super) async fn read_record_v3(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let key = record_key(self.layout(), "read_record", name)?;
        let resp = self
            .core()
            .call("read_record", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await
            .map_err(|e| e.with_key(key.clone()))?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }
}
