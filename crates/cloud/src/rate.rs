//! Client-side rate limits, one token bucket per API action, so one busy loop (say a
//! burst of pod starts) cannot exhaust the account's API quota for every other caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests per second for actions not listed in `per_action`.
    pub default_qps: f64,
    pub per_action: HashMap<String, f64>,
    /// Requests allowed back to back before the rate applies.
    pub burst: u32,
}

impl Default for RateLimits {
    /// Conservative defaults below the vendor's published per-account limits; the mutating
    /// ENI calls are the ones that are throttled first in practice.
    fn default() -> Self {
        let per_action = [
            ("CreateNetworkInterface", 5.0),
            ("AttachNetworkInterface", 5.0),
            ("DetachNetworkInterface", 5.0),
            ("DeleteNetworkInterface", 5.0),
            ("AssignPrivateIpAddresses", 10.0),
            ("UnassignPrivateIpAddresses", 10.0),
            ("AssignIpv6Addresses", 10.0),
            ("UnassignIpv6Addresses", 10.0),
            ("CreateRouteEntry", 5.0),
            ("DeleteRouteEntry", 5.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            default_qps: 20.0,
            per_action,
            burst: 10,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn qps(&self, action: &str) -> f64 {
        self.limits
            .per_action
            .get(action)
            .copied()
            .unwrap_or(self.limits.default_qps)
    }

    /// Waits until a request for `action` may be sent.
    pub async fn acquire(&self, action: &str) {
        let qps = self.qps(action);
        if qps <= 0.0 || !qps.is_finite() {
            return;
        }
        let burst = f64::from(self.limits.burst.max(1));
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().expect("rate limiter lock");
                let now = Instant::now();
                let b = buckets.entry(action.to_string()).or_insert(Bucket {
                    tokens: burst,
                    last: now,
                });
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * qps).min(burst);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_limits_rate_after_burst() {
        let mut limits = RateLimits {
            default_qps: 10.0,
            burst: 2,
            ..Default::default()
        };
        limits.per_action.insert("Slow".into(), 1.0);
        let rl = RateLimiter::new(limits);
        let start = Instant::now();
        for _ in 0..4 {
            rl.acquire("Slow").await;
        }
        // 2 free, then one per second.
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_millis(2100));
        let start = Instant::now();
        rl.acquire("Other").await;
        rl.acquire("Other").await;
        assert!(
            start.elapsed() < Duration::from_millis(10),
            "buckets are per action"
        );
    }
}
