//! The v2 view read whole: the nodes directory, recursively, at a quorum read, and the
//! check that turns one of its keys into a member (of the life [`super::lives`] says).

use std::collections::HashSet;

use autocluster_plugin::{Incarnation, Member, Result, Revision, Snapshot};
use reqwest::Method;

use super::client::Request;
use super::lives::Write;
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
                    members.extend(
                        n.nodes
                            .iter()
                            .filter_map(|c| self.member_of(c, Seen::Listed)),
                    );
                } else {
                    self.garbage.skip(
                        NAME,
                        dir.as_bytes(),
                        "a key where the nodes directory belongs",
                    );
                }
                let listed: HashSet<_> = members.iter().map(|m| m.node.clone()).collect();
                self.lives.keep_only(&listed);
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
                    None | Some(NODE_EXIST) | Some(NOT_A_FILE) => {
                        self.lives.keep_only(&HashSet::new());
                        Ok(Snapshot {
                            members: Vec::new(),
                            revision: Revision(c.index.max(r.index)),
                        })
                    }
                    _ => Err(c.unexpected("snapshot", dir)),
                }
            }
            _ => Err(r.unexpected("snapshot", dir)),
        }
    }

    /// The member a key under the nodes directory stands for, in the life it continues or
    /// begins; anything else is counted as garbage and skipped.
    pub(super) fn member_of(&self, n: &Node, seen: Seen<'_>) -> Option<Member> {
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
            Ok(mut m) => {
                let w = Write::of(n);
                let life = match seen {
                    Seen::Listed => self.lives.listed(&m.node, w),
                    Seen::Written { prev } => self.lives.written(&m.node, w, prev.map(Write::of)),
                };
                // A life is as old as its first write: the oldest member stays the oldest.
                m.incarnation = Incarnation(life);
                m.created = Revision(life);
                Some(m)
            }
            Err(why) => {
                self.garbage.skip(NAME, key.as_bytes(), &why);
                None
            }
        }
    }
}

/// How a key came to be read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seen<'a> {
    /// Listed by a snapshot.
    Listed,
    /// Written, as the watch tells; `prev` is the key it replaced, if one lived.
    Written {
        /// etcd's `prevNode`.
        prev: Option<&'a Node>,
    },
}
