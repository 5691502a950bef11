//! The agent's admin endpoint: status, members, events, health and metrics over HTTP.
//!
//! | route | answer |
//! |---|---|
//! | `GET /status` | the view and the health as one JSON object |
//! | `GET /members` | the members, a JSON array |
//! | `GET /events` | NDJSON: `{"event":"subscribed",...}` first, then one event per line |
//! | `GET /health/live` | `200 ok` |
//! | `GET /health/ready` | 200 when ready, else 503; the health JSON |
//! | `GET /metrics` | Prometheus text format |
//!
//! The server itself, which bounds connections in number and time, is in [`server`].

pub mod server;
mod stall;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};

use autocluster::{Cluster, StatusReport};

use crate::formation::ForeignFollow;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

/// What the handlers read. The cluster sits in a slot so that the agent can take it out to
/// leave (which consumes it) while connections are still open; from then on the handlers
/// answer 503, with why the agent leaves.
pub struct AdminState {
    cluster: RwLock<Option<Cluster>>,
    cluster_name: String,
    /// What `/status` warns of: how this agent runs that its operator should change.
    warnings: Vec<String>,
    metrics: crate::metrics::AgentMetrics,
    /// Why the agent leaves, once it does.
    leaving: Mutex<Option<String>>,
    stopping: watch::Receiver<bool>,
}

impl AdminState {
    /// State over `cluster`; event streams end when `stopping` turns true.
    pub fn new(
        cluster: Cluster,
        cluster_name: String,
        warnings: Vec<String>,
        metrics: crate::metrics::AgentMetrics,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        AdminState {
            cluster: RwLock::new(Some(cluster)),
            cluster_name,
            warnings,
            metrics,
            leaving: Mutex::new(None),
            stopping,
        }
    }

    /// Takes the cluster out, to leave because of `why`; the endpoint answers 503 from now
    /// on, saying why.
    pub fn take_cluster(&self, why: &str) -> Option<Cluster> {
        *self.leaving.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
        match self.cluster.write() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// Runs `f` on the cluster, or answers 503 when the agent is leaving.
    fn with<R: IntoResponse>(&self, f: impl FnOnce(&Cluster) -> R) -> Response {
        let slot = match self.cluster.read() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        match slot.as_ref() {
            Some(cluster) => f(cluster).into_response(),
            None => {
                let why = self
                    .leaving
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "the agent is leaving the cluster", "reason": why})),
                )
                    .into_response()
            }
        }
    }
}

/// The agent's `/status`: the library's report, and what the agent warns of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The view and the health.
    #[serde(flatten)]
    pub report: StatusReport,
    /// How this agent runs that its operator should change (the public default cookie, an
    /// endpoint beyond loopback); empty when all is well.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The admin routes over `state`.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/members", get(members))
        .route("/formation", get(formation))
        .route("/events", get(events))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn status(State(state): State<Arc<AdminState>>) -> Response {
    state.with(|cluster| {
        Json(AgentStatus {
            report: StatusReport::new(cluster, &state.cluster_name),
            warnings: state.warnings.clone(),
        })
    })
}

/// `/formation`: the decision (null before), why it failed, the members of another cluster.
async fn formation(State(state): State<Arc<AdminState>>) -> Response {
    state.with(|cluster| {
        Json(json!({
            "formation": cluster.formation(),
            "error": cluster.formation_error(),
            "foreign_members": cluster.foreign_members(),
            "foreign_sightings": cluster.foreign_sightings(),
        }))
    })
}

async fn members(State(state): State<Arc<AdminState>>) -> Response {
    state.with(|cluster| {
        let view = cluster.view();
        Json(view.members().cloned().collect::<Vec<_>>())
    })
}

async fn events(State(state): State<Arc<AdminState>>) -> Response {
    let mut subscription = None;
    let response = state.with(|cluster| {
        // The view and exactly the events after it: none in both, none in neither.
        let (view, rx) = cluster.view_and_events();
        let foreign = ForeignFollow::new(cluster.watch_foreign_members());
        subscription = Some((rx, foreign, view.revision.0, view.len()));
    });
    let Some((rx, foreign, revision, members)) = subscription else {
        return response;
    };
    let subscribed = Subscribed {
        event: "subscribed",
        revision,
        members,
    };
    let line = serde_json::to_string(&subscribed).unwrap_or_default() + "\n";
    let first = futures::stream::once(async move { Ok(line) });
    let lines = event_lines(rx, foreign, state.stopping.clone());
    let body = Body::from_stream(first.chain(lines));
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The first line of `/events`: the subscription is in place, every later event follows.
#[derive(Serialize)]
struct Subscribed {
    event: &'static str,
    /// The view's revision just after subscribing.
    revision: u64,
    /// How many members that view has.
    members: usize,
}

/// The events of `rx` as NDJSON lines, until the engine stops or the agent does. A
/// subscriber that fell behind gets `{"event":"lagged","missed":N}` and goes on. A member
/// of this cluster's name seen in another cluster (two clusters formed) is a line
/// `{"event":"foreign_cluster","node":...,"cluster_id":...}`, once each.
fn event_lines(
    rx: broadcast::Receiver<autocluster::Event>,
    foreign: ForeignFollow,
    stopping: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<String, Infallible>> + Send {
    let state = (rx, foreign, stopping);
    futures::stream::unfold(state, |(mut rx, mut foreign, mut stopping)| async move {
        let next = tokio::select! {
            next = rx.recv() => Ok(next),
            m = foreign.next() => Err(m),
            _ = stopping.wait_for(|stop| *stop) => return None,
        };
        let next = match next {
            Ok(next) => next,
            Err(m) => {
                let line =
                    json!({"event": "foreign_cluster", "node": m.node, "cluster_id": m.cluster_id});
                return Some((Ok(line.to_string() + "\n"), (rx, foreign, stopping)));
            }
        };
        let line = match next {
            Ok(event) => serde_json::to_string(&event)
                .unwrap_or_else(|e| json!({"event": "error", "error": e.to_string()}).to_string()),
            Err(RecvError::Lagged(missed)) => {
                json!({"event": "lagged", "missed": missed}).to_string()
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(line + "\n"), (rx, foreign, stopping)))
    })
}

async fn live() -> &'static str {
    "ok"
}

async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    state.with(|cluster| {
        let health = cluster.health();
        let code = if health.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, Json(health))
    })
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    state.with(|cluster| {
        (
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            crate::metrics::render(cluster, &state.metrics),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A `manual` node's admin endpoint on a free loopback port.
    async fn serve() -> (std::net::SocketAddr, watch::Sender<bool>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("node.conf");
        let body = "node.name = emqx1@127.0.0.1\ncluster.discovery = manual\n";
        std::fs::write(&conf, body).unwrap();
        let settings = autocluster::Settings::load(&conf).unwrap();
        let cluster = Cluster::start(&settings).await.unwrap();
        assert!(cluster.ready(Duration::from_secs(10)).await, "never ready");
        let (stop, stopping) = watch::channel(false);
        let warnings = vec!["a warning".to_string()];
        let metrics = crate::metrics::AgentMetrics::default();
        let state = Arc::new(AdminState::new(
            cluster,
            "emqxcl".into(),
            warnings,
            metrics,
            stopping,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = server::Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            write_stall: Duration::from_secs(5),
        };
        let stats = Arc::new(server::ServerStats::default());
        let stop_server = stop.subscribe();
        tokio::spawn(server::serve(
            listener,
            router(state),
            limits,
            stats,
            stop_server,
        ));
        (addr, stop, dir)
    }

    #[tokio::test]
    async fn events_start_with_the_subscribed_line_and_end_when_the_agent_stops() {
        let (addr, stop, _dir) = serve().await;
        let mut events = crate::client::get(addr, "/events").await.unwrap();
        assert_eq!(events.status, 200);
        let first = tokio::time::timeout(Duration::from_secs(10), events.next_line())
            .await
            .expect("a first line at once, before any event")
            .unwrap()
            .expect("a first line");
        let first: serde_json::Value = serde_json::from_str(&first).unwrap();

        let status = crate::client::get(addr, "/status").await.unwrap();
        let status: AgentStatus = serde_json::from_str(&status.text().await.unwrap()).unwrap();
        assert_eq!(status.warnings, ["a warning"]);
        let report = status.report;
        assert_eq!(
            first,
            json!({"event": "subscribed", "revision": report.revision.0, "members": 1})
        );
        assert_eq!(
            report.emqx_status_line(),
            "Cluster status: [{running_nodes,['emqx1@127.0.0.1']}]"
        );
        assert_eq!(
            (report.backend.as_str(), report.cluster.as_str()),
            ("manual", "emqxcl")
        );

        stop.send_replace(true);
        let end = tokio::time::timeout(Duration::from_secs(10), events.next_line()).await;
        assert_eq!(end.expect("the stream ends").unwrap(), None);
    }
}
