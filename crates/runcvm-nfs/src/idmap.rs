//! Ids as an id-mapped mount shows them. A pod with its own user namespace
//! (`hostUsers: false`) sees its volumes through id-mapped mounts under
//! runc: a file owned by uid 0 on the node is owned by 0 inside the pod.
//! Here the workload's user namespace is in the guest, whose kernel asks
//! and answers in its own ids (the namespace's uid 0 is the guest's
//! `host_id`); so the server answers with the node's ids mapped outward
//! and acts for callers with their ids mapped back, the same mapping an
//! id-mapped mount applies. Ids outside the mapping are nobody, as the
//! kernel shows them.
//!
//! The mapping is per serving thread (a connection's workers), set once
//! when the thread starts, so attribute encoding deep in the procedures can
//! read it.

use std::cell::RefCell;

/// One range: node ids `node .. node + size` are the client's `client ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub node: u32,
    pub client: u32,
    pub size: u32,
}

/// A pod's uid and gid mappings, seen from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

const NOBODY: u32 = 65534;

fn outward(ranges: &[IdRange], node: u32) -> u32 {
    ranges
        .iter()
        .find_map(|r| {
            let offset = node.checked_sub(r.node).filter(|o| *o < r.size)?;
            r.client.checked_add(offset)
        })
        .unwrap_or(NOBODY)
}

fn inward(ranges: &[IdRange], client: u32) -> u32 {
    ranges
        .iter()
        .find_map(|r| {
            let offset = client.checked_sub(r.client).filter(|o| *o < r.size)?;
            r.node.checked_add(offset)
        })
        .unwrap_or(NOBODY)
}

thread_local! {
    static ACTIVE: RefCell<Option<IdMap>> = const { RefCell::new(None) };
}

/// Sets the mapping of the calling serving thread.
pub(crate) fn activate(map: Option<IdMap>) {
    ACTIVE.with(|active| *active.borrow_mut() = map);
}

fn with<T>(f: impl FnOnce(&IdMap) -> T, unmapped: T) -> T {
    ACTIVE.with(|active| active.borrow().as_ref().map_or(unmapped, f))
}

/// A node uid as the client sees it.
pub(crate) fn client_uid(node: u32) -> u32 {
    with(|m| outward(&m.uids, node), node)
}

/// A node gid as the client sees it.
pub(crate) fn client_gid(node: u32) -> u32 {
    with(|m| outward(&m.gids, node), node)
}

/// A client uid as the node knows it.
pub(crate) fn node_uid(client: u32) -> u32 {
    with(|m| inward(&m.uids, client), client)
}

/// A client gid as the node knows it.
pub(crate) fn node_gid(client: u32) -> u32 {
    with(|m| inward(&m.gids, client), client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_within_the_range_and_nobody_outside() {
        let range = IdRange {
            node: 0,
            client: 65536,
            size: 65536,
        };
        let map = IdMap {
            uids: vec![range],
            gids: vec![range],
        };
        assert_eq!(client_uid(0), 0, "no mapping: ids pass as they are");
        activate(Some(map));
        assert_eq!(client_uid(0), 65536);
        assert_eq!(client_gid(1000), 66536);
        assert_eq!(client_uid(70000), NOBODY);
        assert_eq!(node_uid(65536), 0);
        assert_eq!(node_gid(65536 + 50), 50);
        assert_eq!(node_uid(0), NOBODY, "the guest's own root is outside the pod's mapping");
        activate(None);
        assert_eq!(node_uid(0), 0);
    }
}
