//! The v2 view read whole: the nodes directory, recursively, at a quorum read, and the
//! check that turns one of its keys into a member.

use autocluster_plugin::{Member, Result, Revision, Snapshot};
use reqwest::Method;

use super::client::Request;
use super::wire::{Node, KEY_NOT_FOUND, NODE_EXIST, NOT_A_FILE};
use super::Inner;
use crate::NAME;

impl Inner {
    pub(super) async fn snapshot(&self) -> Result<Snapshot> {
        let dir = self.layout.nodes_dir();
        let query = [
            ("recursive", "true".to_string()),
            ("quorum", "true".to_string()),
        ];
        let r = self
            .client
            .call("snapshot", Request::new(Method::GET, dir).query(&query))
            .await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => {
                let mut members = Vec::new();
                if n.dir {
                    members.extend(n.nodes.iter().filter_map(|c| self.member_of(c)));
                } else {
                    self.garbage.skip(
                        NAME,
                        dir.as_bytes(),
                        "a key where the nodes directory belongs",
                    );
                }
                Ok(Snapshot {
                    members,
                    revision: Revision(r.index),
                })
            }
            (_, Some(KEY_NOT_FOUND)) => {
                // No directory yet (EMQX's fix for emqx#1402): create it, then it is empty.
                let form = [("dir", "true".to_string())];
                let c = self
                    .client
                    .call("snapshot", Request::new(Method::PUT, dir).form(&form))
                    .await?;
                match c.code() {
                    None | Some(NODE_EXIST) | Some(NOT_A_FILE) => Ok(Snapshot {
                        members: Vec::new(),
                        revision: Revision(c.index.max(r.index)),
                    }),
                    _ => Err(c.unexpected("snapshot", dir)),
                }
            }
            _ => Err(r.unexpected("snapshot", dir)),
        }
    }

    /// The member a key under the nodes directory stands for; anything else is counted as
    /// garbage and skipped.
    pub(super) fn member_of(&self, n: &Node) -> Option<Member> {
        let key = n.key.as_deref().unwrap_or("");
        if n.dir {
            self.garbage
                .skip(NAME, key.as_bytes(), "a directory, not a node key");
            return None;
        }
        let value = n.value.as_deref().unwrap_or("");
        match self.layout.member(
            key.as_bytes(),
            value.as_bytes(),
            n.created_index,
            n.created_index as i64,
        ) {
            Ok(m) => Some(m),
            Err(why) => {
                self.garbage.skip(NAME, key.as_bytes(), &why);
                None
            }
        }
    }
}
