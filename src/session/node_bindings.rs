//! Which node instance a session's user is bound to, per service (due's
//! `BindNode`): the stateful routes of a service go to that instance. Most
//! sessions have none, so an empty set costs one pointer.

/// One binding: (service, node id).
type Binding = (Box<str>, Box<str>);

/// Service → node id bindings of one session.
#[allow(clippy::box_collection)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBindings(Option<Box<Vec<Binding>>>);

impl NodeBindings {
    /// No binding.
    pub const EMPTY: NodeBindings = NodeBindings(None);

    /// The node bound for `service`.
    pub fn get(&self, service: &str) -> Option<&str> {
        let v = self.0.as_deref()?;
        v.iter().find(|(s, _)| &**s == service).map(|(_, n)| &**n)
    }

    /// Binds `service` to `node`, replacing an earlier binding; returns it.
    pub fn set(&mut self, service: &str, node: &str) -> Option<Box<str>> {
        let v = self.0.get_or_insert_with(Default::default);
        if let Some(slot) = v.iter_mut().find(|(s, _)| &**s == service) {
            return Some(std::mem::replace(&mut slot.1, node.into()));
        }
        v.push((service.into(), node.into()));
        None
    }

    /// Removes the binding of `service` if it names `node`; true if it did.
    pub fn remove_if(&mut self, service: &str, node: &str) -> bool {
        let Some(v) = self.0.as_deref_mut() else {
            return false;
        };
        let before = v.len();
        v.retain(|(s, n)| !(&**s == service && &**n == node));
        let removed = v.len() != before;
        if v.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Every binding, as (service, node).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|v| v.iter().map(|(s, n)| (&**s, &**n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_remove_compares_the_node() {
        let mut b = NodeBindings::default();
        assert_eq!(b.get("game"), None);
        assert_eq!(b.set("game", "n1"), None);
        assert_eq!(b.set("chat", "c1"), None);
        assert_eq!(b.set("game", "n2").as_deref(), Some("n1"));
        assert_eq!(b.get("game"), Some("n2"));
        assert!(!b.remove_if("game", "n1"), "a stale unbind changes nothing");
        assert_eq!(b.get("game"), Some("n2"));
        assert!(b.remove_if("game", "n2"));
        assert_eq!(b.get("game"), None);
        assert_eq!(b.get("chat"), Some("c1"), "other services keep theirs");
        assert!(b.remove_if("chat", "c1"));
        assert_eq!(b, NodeBindings::default(), "empty again: no allocation");
    }
}
