//! The pool's exhaustion as the operator sees it in Kubernetes: the Node condition
//! `SufficientIP` and Events about the Node (see [`unicni_store::node_condition`]).
//!
//! Only with `store.kind = "kubernetes"`: the file and etcd stores have no Node object to
//! write; there the metrics, `/readyz` and the ADD's error say it.

use crate::agent::AgentReport;
use crate::pool::{Exhausted, PoolStats};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use unicni_store::node_condition::{ConditionState, NodeCondition};

/// The condition type (the anchor's name).
pub const CONDITION: &str = "SufficientIP";
/// Reason while every vSwitch pods may use is out of addresses.
pub const REASON_VSWITCH: &str = "InsufficientIP";
/// Reason while the instance type's ENIs are all attached and full.
pub const REASON_ENI_QUOTA: &str = "ENIQuotaExceeded";
/// Reason while new pods can get addresses.
pub const REASON_OK: &str = "SufficientIP";
/// Events' `source.component`.
pub const COMPONENT: &str = "unicni-agent";

/// The condition for `stats`. Short of addresses while the pool's last attempt to grow
/// ran out and it has no idle address left: once pods free addresses, or the pool grows
/// again (a vSwitch got room, one was added), new pods get addresses and it turns back.
/// The message never carries counts, so the Node is written only when the state changes.
pub fn state_of(stats: &PoolStats) -> ConditionState {
    let short = stats.exhausted.filter(|_| stats.idle == 0);
    let why = stats.exhausted_reason.clone().unwrap_or_default();
    match short {
        None => ConditionState {
            ok: true,
            reason: REASON_OK.into(),
            message: "the ENI pool can take addresses for new pods".into(),
        },
        Some(Exhausted::Vswitch) => ConditionState {
            ok: false,
            reason: REASON_VSWITCH.into(),
            message: format!("new pods on this node cannot get an IP address: {why}"),
        },
        Some(Exhausted::EniQuota) => ConditionState {
            ok: false,
            reason: REASON_ENI_QUOTA.into(),
            message: format!("new pods on this node cannot get an IP address: {why}"),
        },
    }
}

/// Keeps `condition` in line with the agent's report (refreshed by the pool's
/// maintenance) until `shutdown`, from the moment the pool is ready.
pub async fn watch(
    report: Arc<Mutex<AgentReport>>,
    mut condition: NodeCondition,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
) {
    let mut failing: Option<String> = None;
    loop {
        let now = {
            let r = report.lock().unwrap_or_else(|e| e.into_inner());
            r.ready.then(|| state_of(&r.stats))
        };
        if let Some(now) = now {
            match condition.report(&now).await {
                Ok(()) => failing = None,
                Err(e) => {
                    // Once per distinct error: an API server outage must not flood the log.
                    let msg = e.to_string();
                    if failing.as_ref() != Some(&msg) {
                        tracing::warn!("node condition {CONDITION}: {msg}");
                        failing = Some(msg);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_only_while_exhausted_and_nothing_idle() {
        let mut s = PoolStats {
            exhausted: Some(Exhausted::Vswitch),
            exhausted_reason: Some("every vSwitch of [\"vsw-a\"] is out of IP addresses".into()),
            ..Default::default()
        };
        let c = state_of(&s);
        assert!(!c.ok);
        assert_eq!(c.reason, "InsufficientIP");
        assert!(c.message.contains("vsw-a"), "{c:?}");
        s.idle = 1;
        assert!(state_of(&s).ok, "a freed address serves the next pod");
        s.idle = 0;
        s.exhausted = Some(Exhausted::EniQuota);
        assert_eq!(state_of(&s).reason, "ENIQuotaExceeded");
        s.exhausted = None;
        let ok = state_of(&s);
        assert!(ok.ok);
        s.idle = 7;
        assert_eq!(state_of(&s), ok, "counts never change the message");
    }
}
