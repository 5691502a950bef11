//! v2 cluster records: `PUT ?prevExist=false` creates the key only if absent.

use autocluster_plugin::{Error, ErrorKind, Record, Result};
use reqwest::Method;

use super::client::Request;
use super::wire::{KEY_NOT_FOUND, NODE_EXIST};
use super::Inner;
use crate::record::record_key;
use crate::NAME;

impl Inner {
    /// v2: `PUT ?prevExist=false`; on "node exists", reads the record.
    pub(super) async fn create_record_v2(&self, name: &str, value: &[u8]) -> Result<Record> {
        let key = record_key(&self.layout, "create_record", name)?;
        let text = String::from_utf8(value.to_vec()).map_err(|_| {
            Error::new(ErrorKind::Config, "a v2 record must be UTF-8 text")
                .with_backend(NAME)
                .with_operation("create_record")
        })?;
        let form = [("value", text), ("prevExist", "false".to_string())];
        let put = Request::new(Method::PUT, &key).form(&form);
        let r = self.client.call("create_record", put).await?;
        match r.code() {
            None => Ok(Record::new(value.to_vec(), true)),
            Some(NODE_EXIST) => match self.read_record_v2(name).await? {
                Some(v) => Ok(Record::new(v, false)),
                None => Err(Error::new(
                    ErrorKind::Unavailable,
                    "the record was deleted while it was being created",
                )
                .with_backend(NAME)
                .with_operation("create_record")
                .with_key(key)),
            },
            Some(_) => Err(r.unexpected("create_record", &key)),
        }
    }

    /// v2: reads the record.
    pub(super) async fn read_record_v2(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let key = record_key(&self.layout, "read_record", name)?;
        let r = self
            .client
            .call("read_record", Request::new(Method::GET, &key))
            .await?;
        match (r.code(), &r.body.node) {
            (Some(KEY_NOT_FOUND), _) => Ok(None),
            (None, Some(n)) => Ok(Some(n.value.clone().unwrap_or_default().into_bytes())),
            _ => Err(r.unexpected("read_record", &key)),
        }
    }
}
