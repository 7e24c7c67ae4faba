//! Per-action latency profiles: how long each API call takes before it is answered, and
//! how long the asynchronous states last (Attaching, Detaching, Deleting, Pending).
//!
//! A figure is a median with bounded jitter: each draw is uniform in
//! `[median - jitter, median + jitter]` (so the median is the median), from one RNG
//! seeded by `latency_seed`, so a run that makes the same calls in the same order waits
//! the same times. docs/cloud.md cites where the `realistic` figures come from.

use crate::config::SimConfig;
use crate::state::Deferred;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Which latencies the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// No added call latency; the state durations are the config's `*_delay_ms` and
    /// `route_pending_ms` (what the emulator always did).
    #[default]
    Default,
    /// Nothing waits: calls are answered at once and asynchronous states settle within
    /// the call that starts them (fast tests).
    None,
    /// Figures from the vendor's documentation and published measurements.
    Realistic,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Default, Profile::None, Profile::Realistic];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::None => "none",
            Profile::Realistic => "realistic",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown latency profile {s:?}: use one of {}",
                    Profile::ALL.map(Profile::as_str).join(", ")
                )
            })
    }
}

/// A latency: a median and the most a draw may differ from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub median_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
}

impl Figure {
    pub const ZERO: Figure = Figure::fixed(0);

    pub const fn new(median_ms: u64, jitter_ms: u64) -> Self {
        Self {
            median_ms,
            jitter_ms,
        }
    }

    pub const fn fixed(ms: u64) -> Self {
        Self::new(ms, 0)
    }

    pub fn median(&self) -> Duration {
        Duration::from_millis(self.median_ms)
    }
}

/// Every figure a profile gives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyTable {
    /// Time to answer, by action.
    pub actions: BTreeMap<&'static str, Figure>,
    /// Time to answer any `Describe*` action without an entry of its own.
    pub describe: Figure,
    /// Attaching → InUse.
    pub attach: Figure,
    /// Detaching → Available.
    pub detach: Figure,
    /// Deleting → gone.
    pub delete: Figure,
    /// Route entry Pending → Available (and Deleting → gone).
    pub route_pending: Figure,
}

/// The `realistic` call latencies (action, median ms, jitter ms); see docs/cloud.md,
/// "Latency profiles", for each figure's source or assumption.
const REALISTIC_ACTIONS: &[(&str, u64, u64)] = &[
    ("CreateNetworkInterface", 1000, 300),
    ("AttachNetworkInterface", 300, 100),
    ("DetachNetworkInterface", 300, 100),
    ("DeleteNetworkInterface", 300, 100),
    ("AssignPrivateIpAddresses", 500, 100),
    ("UnassignPrivateIpAddresses", 500, 100),
    ("AssignIpv6Addresses", 500, 100),
    ("UnassignIpv6Addresses", 500, 100),
    ("CreateRouteEntry", 300, 100),
    ("DeleteRouteEntry", 300, 100),
];

impl LatencyTable {
    pub fn for_profile(profile: Profile, c: &SimConfig) -> Self {
        match profile {
            Profile::Default => Self {
                attach: Figure::fixed(c.attach_delay_ms),
                detach: Figure::fixed(c.detach_delay_ms),
                delete: Figure::fixed(c.delete_delay_ms),
                route_pending: Figure::fixed(c.route_pending_ms),
                ..Self::default()
            },
            Profile::None => Self::default(),
            Profile::Realistic => Self {
                actions: REALISTIC_ACTIONS
                    .iter()
                    .map(|&(a, m, j)| (a, Figure::new(m, j)))
                    .collect(),
                describe: Figure::new(100, 50),
                attach: Figure::new(3000, 1000),
                detach: Figure::new(3000, 1000),
                delete: Figure::new(1000, 500),
                route_pending: Figure::new(2000, 1000),
            },
        }
    }

    /// The figure for answering `action`.
    pub fn action(&self, action: &str) -> Figure {
        match self.actions.get(action) {
            Some(f) => *f,
            None if action.starts_with("Describe") => self.describe,
            None => Figure::ZERO,
        }
    }

    /// The figure for settling `d`.
    pub fn settle(&self, d: &Deferred) -> Figure {
        match d {
            Deferred::EniAttached { .. } => self.attach,
            Deferred::EniDetached { .. } => self.detach,
            Deferred::EniDeleted { .. } => self.delete,
            Deferred::RouteAvailable { .. } | Deferred::RouteDeleted { .. } => self.route_pending,
        }
    }
}

/// The effective table and the seeded RNG that draws from it.
#[derive(Debug)]
pub struct Latencies {
    pub profile: Profile,
    pub table: LatencyTable,
    rng: Mutex<fastrand::Rng>,
}

impl Latencies {
    pub fn new(c: &SimConfig) -> Self {
        Self {
            profile: c.profile,
            table: LatencyTable::for_profile(c.profile, c),
            rng: Mutex::new(fastrand::Rng::with_seed(c.latency_seed)),
        }
    }

    /// One draw of `f`: uniform within its jitter, never negative.
    pub fn draw(&self, f: Figure) -> Duration {
        if f.jitter_ms == 0 {
            return f.median();
        }
        let lo = f.median_ms.saturating_sub(f.jitter_ms);
        let hi = f.median_ms + f.jitter_ms;
        let ms = self.rng.lock().expect("latency rng lock").u64(lo..=hi);
        Duration::from_millis(ms)
    }

    pub fn action(&self, action: &str) -> Duration {
        self.draw(self.table.action(action))
    }

    pub fn settle(&self, d: &Deferred) -> Duration {
        self.draw(self.table.settle(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_default_keeps_the_config_delays() {
        for p in Profile::ALL {
            assert_eq!(p.as_str().parse::<Profile>().unwrap(), p);
        }
        assert!("fast"
            .parse::<Profile>()
            .unwrap_err()
            .contains("default, none, realistic"));
        let c = SimConfig::default();
        let t = LatencyTable::for_profile(Profile::Default, &c);
        assert_eq!(t.attach, Figure::fixed(c.attach_delay_ms));
        assert_eq!(t.route_pending, Figure::fixed(c.route_pending_ms));
        assert_eq!(t.action("AssignPrivateIpAddresses"), Figure::ZERO);
        let none = LatencyTable::for_profile(Profile::None, &c);
        assert_eq!(none.attach, Figure::ZERO);
        let r = LatencyTable::for_profile(Profile::Realistic, &c);
        assert_eq!(r.action("CreateNetworkInterface").median_ms, 1000);
        assert_eq!(r.action("DescribeVSwitches"), r.describe);
        assert_eq!(r.action("NoSuchAction"), Figure::ZERO);
    }

    #[test]
    fn draws_stay_within_the_jitter_and_repeat_with_the_seed() {
        let c = SimConfig {
            profile: Profile::Realistic,
            latency_seed: 42,
            ..SimConfig::default()
        };
        let (a, b) = (Latencies::new(&c), Latencies::new(&c));
        let f = Figure::new(500, 100);
        let xs: Vec<Duration> = (0..200).map(|_| a.draw(f)).collect();
        let ys: Vec<Duration> = (0..200).map(|_| b.draw(f)).collect();
        assert_eq!(xs, ys, "the same seed gives the same draws");
        assert!(xs
            .iter()
            .all(|d| (400..=600).contains(&(d.as_millis() as u64))));
        assert!(xs.iter().any(|d| *d != xs[0]), "jitter varies the draws");
        assert!(a.draw(Figure::new(50, 80)) <= Duration::from_millis(130));
    }
}
