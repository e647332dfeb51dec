//! Nodes marked for the next flush, taken in index order.

use super::NodeId;

/// A set of nodes marked since it was last taken, kept as a list so that
/// taking it costs what was marked, not the size of the network.
#[derive(Debug, Default)]
pub(super) struct Marks {
    marked: Vec<bool>,
    list: Vec<NodeId>,
}

impl Marks {
    /// Room for one more node, unmarked.
    pub(super) fn grow(&mut self) {
        self.marked.push(false);
    }

    pub(super) fn mark(&mut self, i: NodeId) {
        if !self.marked[i] {
            self.marked[i] = true;
            self.list.push(i);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The marked nodes in index order; none is marked afterwards.
    pub(super) fn take(&mut self) -> Vec<NodeId> {
        let mut list = std::mem::take(&mut self.list);
        for &i in &list {
            self.marked[i] = false;
        }
        list.sort_unstable();
        list
    }
}
