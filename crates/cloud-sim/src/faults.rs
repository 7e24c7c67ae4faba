//! Fault injection: per-action (or default) probabilities of throttling and of server
//! failure, added latency, and a queue of exact errors for deterministic tests.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Probability (0..=1) a request is refused with `Throttling.User`.
    pub throttle_rate: f64,
    /// Probability a request fails with `ServiceUnavailable` (HTTP 503).
    pub failure_rate: f64,
    /// Added to every request, before it is answered.
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Applies to actions without their own entry.
    pub default: FaultSpec,
    /// By action name, e.g. `[faults.actions.CreateNetworkInterface]`.
    pub actions: BTreeMap<String, FaultSpec>,
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, s: &FaultSpec| {
            for (field, v) in [
                ("throttle_rate", s.throttle_rate),
                ("failure_rate", s.failure_rate),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "faults.{name}.{field} = {v}: must be between 0 and 1"
                    ));
                }
            }
            Ok(())
        };
        check("default", &self.default)?;
        for (a, s) in &self.actions {
            check(&format!("actions.{a}"), s)?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    queued: Mutex<HashMap<String, VecDeque<ApiError>>>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config: Mutex::new(config),
            queued: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: FaultConfig) {
        *self.config.lock().expect("faults lock") = config;
    }

    /// The next `count` calls of `action` fail with `err` (before any other check).
    pub fn inject(&self, action: &str, err: ApiError, count: usize) {
        let mut q = self.queued.lock().expect("faults lock");
        let e = q.entry(action.to_string()).or_default();
        for _ in 0..count {
            e.push_back(err.clone());
        }
    }

    /// Decides the fate of one request: latency to add, and an error to answer instead.
    pub fn decide(&self, action: &str) -> (Duration, Option<ApiError>) {
        if let Some(e) = self
            .queued
            .lock()
            .expect("faults lock")
            .get_mut(action)
            .and_then(VecDeque::pop_front)
        {
            return (Duration::ZERO, Some(e));
        }
        let cfg = self.config.lock().expect("faults lock");
        let spec = cfg.actions.get(action).unwrap_or(&cfg.default);
        let latency = Duration::from_millis(spec.latency_ms);
        if spec.throttle_rate > 0.0 && fastrand::f64() < spec.throttle_rate {
            return (latency, Some(throttled()));
        }
        if spec.failure_rate > 0.0 && fastrand::f64() < spec.failure_rate {
            return (
                latency,
                Some(ApiError::new(
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )),
            );
        }
        (latency, None)
    }
}

pub fn throttled() -> ApiError {
    ApiError::new(
        400,
        "Throttling.User",
        "Request was denied due to user flow control.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_queue() {
        let mut cfg = FaultConfig::default();
        cfg.actions.insert(
            "A".into(),
            FaultSpec {
                throttle_rate: 1.0,
                latency_ms: 5,
                ..Default::default()
            },
        );
        let f = Faults::new(cfg);
        let (lat, e) = f.decide("A");
        assert_eq!(lat, Duration::from_millis(5));
        assert_eq!(e.unwrap().code, "Throttling.User");
        assert_eq!(f.decide("B"), (Duration::ZERO, None));
        f.inject("B", ApiError::new(400, "TaskConflict", "x"), 1);
        assert_eq!(f.decide("B").1.unwrap().code, "TaskConflict");
        assert_eq!(f.decide("B").1, None);
        let bad = FaultConfig {
            default: FaultSpec {
                failure_rate: 1.5,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("faults.default.failure_rate"));
    }
}
