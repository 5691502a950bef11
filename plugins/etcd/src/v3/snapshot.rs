//! The v3 snapshot: the nodes prefix read in pages at one revision, each page sized by what
//! the previous one weighed, so values of any size etcd accepts are read (and those over
//! [`MAX_VALUE`](crate::MAX_VALUE) skipped and counted) without a message too large to
//! decode.

use autocluster_plugin::{Error, Result, Revision, Snapshot};
use etcd_client::{GetOptions, GetResponse};

use super::{prefix_end, Shared};
use crate::error::chain_text;
use crate::NAME;

/// Keys per page at most (and on the first page).
const PAGE: i64 = 1000;
/// What a page should weigh: the next page holds about this many bytes of keys and values.
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// The largest snapshot page decoded. A page over it is asked again with fewer keys.
const MAX_PAGE_MESSAGE: usize = 64 * 1024 * 1024;
/// How much smaller a page is asked again after it was too large.
const SHRINK: i64 = 8;

/// Where a paged read stands.
struct Pages {
    start: Vec<u8>,
    end: Vec<u8>,
    /// The revision every page is read at (0 until the first page set it).
    revision: i64,
    limit: i64,
}

impl Shared {
    pub(super) async fn snapshot(&self) -> Result<Snapshot> {
        let prefix = self.layout.nodes_prefix();
        let mut pages = Pages {
            start: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix),
            revision: 0,
            limit: PAGE,
        };
        let mut members = Vec::new();
        loop {
            let resp = match self.page(&pages, false).await {
                Ok(r) => r,
                Err(e) if too_large(&e) && pages.limit > 1 => {
                    pages.limit = (pages.limit / SHRINK).max(1);
                    continue;
                }
                Err(e) if too_large(&e) => {
                    if !self.skip_oversized(&mut pages).await? {
                        return Err(e.with_key(prefix));
                    }
                    continue;
                }
                Err(e) => return Err(e.with_key(prefix)),
            };
            if pages.revision == 0 {
                pages.revision = resp.header().map_or(0, |h| h.revision());
                self.core.saw(pages.revision);
            }
            for kv in resp.kvs() {
                match self.layout.member(
                    kv.key(),
                    kv.value(),
                    kv.lease() as u64,
                    kv.create_revision(),
                ) {
                    Ok(m) => members.push(m),
                    Err(why) => self.garbage.skip(NAME, kv.key(), &why),
                }
            }
            let bytes: usize = resp
                .kvs()
                .iter()
                .map(|kv| kv.key().len() + kv.value().len())
                .sum();
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    pages.start = last.key().to_vec();
                    pages.start.push(0);
                    let per_key = bytes / resp.kvs().len();
                    pages.limit = (PAGE_BYTES / per_key.max(1)).clamp(1, PAGE as usize) as i64;
                }
                _ => break,
            }
        }
        Ok(Snapshot {
            members,
            revision: Revision(pages.revision.max(0) as u64),
        })
    }

    /// The next page (only its keys with `keys_only`).
    async fn page(&self, pages: &Pages, keys_only: bool) -> Result<GetResponse> {
        let mut opts = GetOptions::new()
            .with_range(pages.end.clone())
            .with_limit(pages.limit);
        if pages.revision > 0 {
            opts = opts.with_revision(pages.revision);
        }
        if keys_only {
            opts = opts.with_keys_only();
        }
        self.core
            .call("snapshot", |c| {
                let (start, opts) = (pages.start.clone(), opts.clone());
                let mut kv = c.kv_client().max_decoding_message_size(MAX_PAGE_MESSAGE);
                async move { kv.get(start, Some(opts)).await }
            })
            .await
    }

    /// A single key's value is too large to decode: count it as invalid and read on after it.
    /// False when there is no such key.
    async fn skip_oversized(&self, pages: &mut Pages) -> Result<bool> {
        let resp = self.page(pages, true).await?;
        if pages.revision == 0 {
            pages.revision = resp.header().map_or(0, |h| h.revision());
        }
        let Some(kv) = resp.kvs().first() else {
            return Ok(false);
        };
        self.garbage.skip(
            NAME,
            kv.key(),
            &format!("the value is over the {MAX_PAGE_MESSAGE} bytes a snapshot page may hold"),
        );
        pages.start = kv.key().to_vec();
        pages.start.push(0);
        // The next page grows from one key by what that one weighs.
        pages.limit = 1;
        Ok(true)
    }
}

/// Whether `e` says an answer was larger than the client decodes.
pub(super) fn too_large(e: &Error) -> bool {
    chain_text(e).contains("message length too large")
}
