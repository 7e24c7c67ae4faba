//! A node condition the agent owns, with the Events an operator sees beside it.
//!
//! The agent writes one condition type of its own Node through the `/status`
//! subresource (a strategic merge patch: conditions merge by `type`, so the kubelet's
//! `Ready` and the others stay as they are) and records core v1 Events about the Node the
//! way the kubelet does (namespace `default`, `involvedObject.uid` = the node's name), so
//! `kubectl describe node` and `kubectl get events` show them.
//!
//! Writes happen only when something changed: the condition when its status, reason or
//! message changes; an Event when the status turns, or the reason changes while it is
//! false. A condition that stays false repeats its Event at most every
//! [`NodeCondition::repeat`] by raising the Event's `count` (one object, not a stream of
//! them), so a long shortage costs the API server one patch per interval.

use k8s_openapi::api::core::v1::{Event, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Namespace of node Events (the kubelet's choice: a Node has no namespace).
pub const EVENT_NAMESPACE: &str = "default";

/// What the agent reports for its condition now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    /// True: the condition holds (status "True").
    pub ok: bool,
    /// CamelCase, e.g. `InsufficientIP`.
    pub reason: String,
    /// For humans: what happened, on what, and what to do.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConditionError {
    #[error("kubernetes: {what} for node {node}: {source}; the agent needs RBAC 'get' and 'patch' on nodes/status and 'create','patch' on events")]
    Api {
        what: &'static str,
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// The last Event sent while the condition was false.
struct Sent {
    name: String,
    count: i32,
    at: Instant,
}

/// One condition type on one Node (see the module docs).
pub struct NodeCondition {
    nodes: Api<Node>,
    events: Api<Event>,
    node: String,
    type_: String,
    component: String,
    /// How often an Event repeats (its count goes up) while the condition stays false.
    pub repeat: Duration,
    /// What the Node carries now, as far as this reporter knows; `None` before the first
    /// report.
    last: Option<ConditionState>,
    sent: Option<Sent>,
}

/// Now, as the API writes timestamps (RFC 3339, whole seconds).
fn now_rfc3339() -> String {
    let t = Time(k8s_openapi::jiff::Timestamp::now());
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

impl NodeCondition {
    /// `type_` is the condition type (e.g. `SufficientIP`); `component` names the
    /// reporter in Events (`source.component`, `reportingComponent`).
    pub fn new(client: Client, node: &str, type_: &str, component: &str) -> NodeCondition {
        NodeCondition {
            nodes: Api::all(client.clone()),
            events: Api::namespaced(client, EVENT_NAMESPACE),
            node: node.into(),
            type_: type_.into(),
            component: component.into(),
            repeat: Duration::from_secs(600),
            last: None,
            sent: None,
        }
    }

    fn api(&self, what: &'static str) -> impl FnOnce(kube::Error) -> ConditionError + '_ {
        move |source| ConditionError::Api {
            what,
            node: self.node.clone(),
            source,
        }
    }

    /// Brings the Node's condition and the Events in line with `now`; writes nothing
    /// when nothing changed. On an error nothing is remembered, so the next call retries.
    pub async fn report(&mut self, now: &ConditionState) -> Result<(), ConditionError> {
        if self.last.is_none() {
            self.last = self.on_node().await?;
            // A condition left false by an earlier run: its shortage is not news unless
            // it changed, but a still-false condition repeats from now on.
            if let Some(l) = &self.last {
                if !l.ok && l == now {
                    self.sent = None;
                }
            }
        }
        let before = self.last.clone();
        if before.as_ref() != Some(now) {
            let turned = before.as_ref().is_none_or(|b| b.ok != now.ok);
            self.patch_condition(now, turned).await?;
        }
        let news = match &before {
            // First sight: only a shortage is worth an Event.
            None => !now.ok,
            Some(b) => b.ok != now.ok || (!now.ok && b.reason != now.reason),
        };
        if news {
            self.sent = None;
            self.create_event(now).await?;
        } else if !now.ok {
            match &self.sent {
                Some(s) if s.at.elapsed() >= self.repeat => self.repeat_event(now).await?,
                // Started false (an earlier run's condition): the first repeat is due
                // after one interval.
                None => {
                    self.sent = Some(Sent {
                        name: String::new(),
                        count: 0,
                        at: Instant::now(),
                    })
                }
                _ => {}
            }
        }
        self.last = Some(now.clone());
        Ok(())
    }

    /// The condition as the Node carries it now, if at all.
    async fn on_node(&self) -> Result<Option<ConditionState>, ConditionError> {
        // Through the status subresource: the agent's RBAC covers nodes/status only.
        let node = match self.nodes.get_status(&self.node).await {
            Ok(n) => Some(n),
            Err(kube::Error::Api(e)) if e.code == 404 => None,
            Err(e) => return Err(self.api("get the node's status")(e)),
        };
        Ok(node
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == self.type_))
            .map(|c| ConditionState {
                ok: c.status == "True",
                reason: c.reason.unwrap_or_default(),
                message: c.message.unwrap_or_default(),
            }))
    }

    async fn patch_condition(
        &self,
        now: &ConditionState,
        turned: bool,
    ) -> Result<(), ConditionError> {
        let ts = now_rfc3339();
        let mut cond = json!({
            "type": self.type_,
            "status": if now.ok { "True" } else { "False" },
            "reason": now.reason,
            "message": now.message,
            "lastHeartbeatTime": ts,
        });
        // The transition time says when the status turned, not when the text changed.
        if turned {
            cond["lastTransitionTime"] = ts.into();
        }
        let patch = json!({"status": {"conditions": [cond]}});
        self.nodes
            .patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .map_err(self.api("patch the node's status (condition)"))?;
        tracing::info!(
            node = %self.node,
            condition = %self.type_,
            status = now.ok,
            reason = %now.reason,
            "{}",
            now.message
        );
        Ok(())
    }

    fn event_name(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}.{nanos:x}", self.node)
    }

    async fn create_event(&mut self, now: &ConditionState) -> Result<(), ConditionError> {
        let ts = now_rfc3339();
        let name = self.event_name();
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": EVENT_NAMESPACE},
            // The kubelet's reference to its node: `kubectl describe node` finds Events
            // by this uid as well as by the object's.
            "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": self.node, "uid": self.node},
            "reason": now.reason,
            "message": now.message,
            "type": if now.ok { "Normal" } else { "Warning" },
            "count": 1,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "source": {"component": self.component, "host": self.node},
            "reportingComponent": self.component,
            "reportingInstance": self.node,
        }))
        .expect("a well-formed Event");
        self.events
            .create(&PostParams::default(), &ev)
            .await
            .map_err(self.api("create an Event"))?;
        self.sent = (!now.ok).then(|| Sent {
            name,
            count: 1,
            at: Instant::now(),
        });
        Ok(())
    }

    /// The same shortage again: the Event's count goes up (a new Event when the old one
    /// is gone, e.g. expired by the API server's event TTL).
    async fn repeat_event(&mut self, now: &ConditionState) -> Result<(), ConditionError> {
        let Some(s) = self.sent.as_mut() else {
            return Ok(());
        };
        if s.name.is_empty() {
            return self.create_event(now).await;
        }
        let count = s.count + 1;
        let patch = json!({"count": count, "lastTimestamp": now_rfc3339(), "message": now.message});
        match self
            .events
            .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                s.count = count;
                s.at = Instant::now();
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => self.create_event(now).await,
            Err(e) => Err(self.api("patch an Event (repeat count)")(e)),
        }
    }
}
