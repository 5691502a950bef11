//! A program on the library, seen by a real agent: it starts with the builder's labels,
//! endpoint and version, changes a label twice at run time, and leaves.

use serde_json::{json, Value};

use super::{Events, WAIT};

/// What the agent saw: the join, then one `updated` per change.
pub struct Seen {
    pub joined: Value,
    pub updates: Vec<Value>,
}

/// Starts `settings` (zone `eu-1` set there) with the label `role = api`, the endpoint
/// `grpc` at `grpc` and the version `myapp 2.1.0`; checks that `events` (an agent's) sees the
/// join with them; sets the label `state` to `draining`, then `idle`, checking that each is
/// exactly one `updated` of the node, carrying the new value and the previous one; refuses a
/// label too large; leaves, and checks that the next event is the leave (no second `updated`).
#[track_caller]
pub fn join_update_twice_and_leave(
    rt: &tokio::runtime::Runtime,
    settings: &autocluster::Settings,
    grpc: &str,
    events: &mut Events,
    diag: &dyn Fn() -> String,
) -> Seen {
    let node = settings.node.to_string();
    let lib = rt
        .block_on(
            autocluster::Cluster::builder(settings)
                .label("role", "api")
                .endpoint("grpc", grpc)
                .version("myapp 2.1.0")
                .start(),
        )
        .unwrap();
    let joined = events.expect("joined", &node, diag);
    let meta = &joined["member"]["meta"];
    assert_eq!(
        meta["labels"],
        json!({"zone": "eu-1", "role": "api"}),
        "{joined}"
    );
    assert_eq!(meta["endpoints"], json!({"grpc": grpc}));
    assert_eq!(meta["version"], "myapp 2.1.0");

    let mut updates = Vec::new();
    let mut previous = Value::Null;
    for state in ["draining", "idle"] {
        let changed = lib.update_metadata(|m| {
            m.labels.insert("state".into(), state.to_string());
        });
        assert!(changed.unwrap());
        let updated = events.next(WAIT, "the update", diag);
        assert_eq!(
            (updated["event"].as_str(), updated["node"].as_str()),
            (Some("updated"), Some(node.as_str())),
            "{updated}"
        );
        assert_eq!(updated["member"]["meta"]["labels"]["state"], state);
        assert_eq!(updated["previous"]["meta"]["labels"]["state"], previous);
        previous = json!(state);
        updates.push(updated);
    }
    let too_big = lib.update_metadata(|m| {
        m.labels.insert("blob".into(), "x".repeat(300));
    });
    assert!(too_big.unwrap_err().to_string().contains("label blob"));

    rt.block_on(lib.leave()).unwrap();
    let left = events.next(WAIT, "the leave", diag);
    assert_eq!(
        (left["event"].as_str(), left["node"].as_str()),
        (Some("left"), Some(node.as_str())),
        "{left}"
    );
    Seen { joined, updates }
}
