//! Locator events on the wire: due's JSON (`locate.Event`) plus our session
//! and epoch for gate events.
//!
//! ```text
//! {"uid":10001,"type":1,"insID":"g1","insKind":"gate","insName":"","sid":42,"epoch":7}
//! {"uid":10001,"type":2,"insID":"n1","insKind":"node","insName":"game"}
//!   type: 1 BindGate, 2 BindNode, 3 UnbindGate, 4 UnbindNode
//!   gate events: insID = gate id, insName = "", sid/epoch = the binding's
//!   node events: insID = node id, insName = the service (due's node name)
//! ```
//! The purge script writes the UnbindGate form by hand, in the same field
//! order; a test decodes it.

use serde::{Deserialize, Serialize};

use crate::fleet::locator::{Binding, LocateEvent, Uid};

const BIND_GATE: u8 = 1;
const BIND_NODE: u8 = 2;
const UNBIND_GATE: u8 = 3;
const UNBIND_NODE: u8 = 4;

/// due's `locate.Event`, field for field, plus `sid` and `epoch`.
#[derive(Serialize, Deserialize, Debug)]
struct WireEvent {
    uid: Uid,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(rename = "insID")]
    ins_id: String,
    #[serde(rename = "insKind")]
    ins_kind: String,
    #[serde(rename = "insName", default)]
    ins_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
}

/// The JSON published for `ev`.
pub(super) fn encode(ev: &LocateEvent) -> String {
    let gate = |kind, uid: &Uid, b: &Binding| WireEvent {
        uid: *uid,
        kind,
        ins_id: b.gate.clone(),
        ins_kind: "gate".into(),
        ins_name: String::new(),
        sid: Some(b.session),
        epoch: Some(b.epoch),
    };
    let node = |kind, uid: &Uid, service: &str, node: &str| WireEvent {
        uid: *uid,
        kind,
        ins_id: node.to_owned(),
        ins_kind: "node".into(),
        ins_name: service.to_owned(),
        sid: None,
        epoch: None,
    };
    let w = match ev {
        LocateEvent::BindGate { uid, binding } => gate(BIND_GATE, uid, binding),
        LocateEvent::UnbindGate { uid, binding } => gate(UNBIND_GATE, uid, binding),
        LocateEvent::BindNode {
            uid,
            service,
            node: n,
        } => node(BIND_NODE, uid, service, n),
        LocateEvent::UnbindNode {
            uid,
            service,
            node: n,
        } => node(UNBIND_NODE, uid, service, n),
    };
    serde_json::to_string(&w).expect("plain struct serializes")
}

/// Parses a published event; the error says why it is not one of ours
/// (for instance a due gate's event, which has no `sid`/`epoch`).
pub(super) fn decode(payload: &[u8]) -> Result<LocateEvent, String> {
    let w: WireEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let binding = || match (w.sid, w.epoch) {
        (Some(session), Some(epoch)) => Ok(Binding {
            gate: w.ins_id.clone(),
            session,
            epoch,
        }),
        _ => Err("gate event without sid and epoch".to_owned()),
    };
    let (uid, service, node) = (w.uid, w.ins_name.clone(), w.ins_id.clone());
    let ev = match (w.kind, w.ins_kind.as_str()) {
        (BIND_GATE, "gate") => LocateEvent::BindGate {
            uid,
            binding: binding()?,
        },
        (UNBIND_GATE, "gate") => LocateEvent::UnbindGate {
            uid,
            binding: binding()?,
        },
        (BIND_NODE, "node") => LocateEvent::BindNode { uid, service, node },
        (UNBIND_NODE, "node") => LocateEvent::UnbindNode { uid, service, node },
        (kind, ins) => return Err(format!("type {kind} with insKind {ins:?}")),
    };
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_events_have_dues_fields_in_dues_order() {
        let ev = LocateEvent::BindGate {
            uid: -3,
            binding: Binding {
                gate: "g\"1".into(),
                session: u64::MAX,
                epoch: 7,
            },
        };
        let json = encode(&ev);
        assert_eq!(
            json,
            r#"{"uid":-3,"type":1,"insID":"g\"1","insKind":"gate","insName":"","sid":18446744073709551615,"epoch":7}"#
        );
        assert_eq!(decode(json.as_bytes()), Ok(ev));
    }

    #[test]
    fn node_events_round_trip_without_sid() {
        let ev = LocateEvent::UnbindNode {
            uid: 10001,
            service: "game".into(),
            node: "n-1".into(),
        };
        let json = encode(&ev);
        assert_eq!(
            json,
            r#"{"uid":10001,"type":4,"insID":"n-1","insKind":"node","insName":"game"}"#
        );
        assert_eq!(decode(json.as_bytes()), Ok(ev));
    }

    #[test]
    fn foreign_events_are_refused() {
        // due's own BindGate: no sid/epoch, so no binding to report.
        let due = br#"{"uid":1,"type":1,"insID":"g","insKind":"gate","insName":""}"#;
        assert!(decode(due).is_err());
        assert!(decode(br#"{"uid":1,"type":2,"insID":"n","insKind":"gate"}"#).is_err());
        assert!(decode(b"not json").is_err());
    }
}
