//! The instance metadata service, one view per instance.
//!
//! Which instance a request sees: the path prefix `/instances/<id>` when present (the
//! lab points each node's `metadata_endpoint` at `http://SIM/instances/<id>`); else the
//! instance whose `metadata_addresses` or primary IP is the requester's source address;
//! else the only instance, when there is exactly one.

use crate::state::{Instance, State};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use unicni_cloud::metadata::{TOKEN_HEADER, TOKEN_TTL_HEADER};

pub struct Reply {
    pub status: u16,
    pub body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        body: body.into(),
    }
}

#[derive(Debug, Default)]
pub struct Tokens(Mutex<HashMap<String, Instant>>);

impl Tokens {
    fn issue(&self, ttl: Duration) -> String {
        let tok = format!("{:032x}", fastrand::u128(..));
        let mut g = self.0.lock().expect("token lock");
        let now = Instant::now();
        g.retain(|_, exp| *exp > now);
        g.insert(tok.clone(), now + ttl);
        tok
    }

    fn valid(&self, tok: &str) -> bool {
        self.0
            .lock()
            .expect("token lock")
            .get(tok)
            .is_some_and(|exp| *exp > Instant::now())
    }
}

/// Splits `/instances/<id>/latest/...` into the instance and the rest.
pub fn split_path(path: &str) -> Option<(Option<&str>, &str)> {
    if let Some(rest) = path.strip_prefix("/instances/") {
        let (id, tail) = rest.split_once('/')?;
        return tail.strip_prefix("latest/").map(|t| (Some(id), t));
    }
    path.strip_prefix("/latest/").map(|t| (None, t))
}

fn select<'a>(
    state: &'a State,
    by_path: Option<&str>,
    source: IpAddr,
) -> Result<&'a Instance, String> {
    if let Some(id) = by_path {
        return state
            .instances
            .get(id)
            .ok_or_else(|| format!("no instance {id} in the emulator"));
    }
    let found = state.instances.values().find(|i| {
        i.metadata_addresses.contains(&source)
            || state
                .enis
                .get(&i.primary_eni_id)
                .is_some_and(|e| IpAddr::V4(e.primary_ip) == source)
    });
    if let Some(i) = found {
        return Ok(i);
    }
    if state.instances.len() == 1 {
        return Ok(state.instances.values().next().expect("one"));
    }
    Err(format!(
        "no instance has source address {source}: list it in the instance's metadata_addresses or use /instances/<id>/latest/..."
    ))
}

pub fn handle(
    state: &State,
    tokens: &Tokens,
    method: &str,
    path: &str,
    header: impl Fn(&str) -> Option<String>,
    source: IpAddr,
) -> Reply {
    let Some((by_path, rest)) = split_path(path) else {
        return reply(404, "not found");
    };
    if rest == "api/token" {
        if method != "PUT" {
            return reply(405, "use PUT to obtain a token");
        }
        let ttl = header(TOKEN_TTL_HEADER).and_then(|v| v.parse::<u64>().ok());
        return match ttl {
            Some(t @ 1..=21600) => reply(200, tokens.issue(Duration::from_secs(t))),
            _ => reply(400, format!("{TOKEN_TTL_HEADER} must be 1..=21600")),
        };
    }
    if method != "GET" {
        return reply(405, "method not allowed");
    }
    if !header(TOKEN_HEADER).is_some_and(|t| tokens.valid(&t)) {
        return reply(401, "missing or expired token: PUT /latest/api/token first");
    }
    let inst = match select(state, by_path, source) {
        Ok(i) => i,
        Err(e) => return reply(404, e),
    };
    match lookup(state, inst, rest.trim_end_matches('/'), rest.ends_with('/')) {
        Some(body) => reply(200, body),
        None => reply(404, "not found"),
    }
}

fn lookup(state: &State, inst: &Instance, path: &str, dir: bool) -> Option<String> {
    let primary = state.enis.get(&inst.primary_eni_id)?;
    let p = path.strip_prefix("meta-data/")?;
    let simple = match p {
        "instance-id" => Some(inst.id.clone()),
        "region-id" => Some(state.region.clone()),
        "zone-id" => Some(inst.zone.clone()),
        "vpc-id" => Some(state.vpc.id.clone()),
        "vpc-cidr-block" => Some(state.vpc.cidr.to_string()),
        "vswitch-id" => Some(inst.vswitch_id.clone()),
        "instance/instance-type" => Some(inst.instance_type.clone()),
        "mac" => Some(primary.mac.clone()),
        "private-ipv4" => Some(primary.primary_ip.to_string()),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    if p == "network/interfaces/macs" && dir {
        let macs: Vec<String> = state
            .enis
            .values()
            .filter(|e| e.instance_id.as_deref() == Some(inst.id.as_str()) && e.status == "InUse")
            .map(|e| format!("{}/", e.mac))
            .collect();
        return Some(macs.join("\n"));
    }
    if let Some(rest) = p.strip_prefix("network/interfaces/macs/") {
        let (mac, field) = rest.split_once('/')?;
        let eni = state.enis.values().find(|e| {
            e.mac == mac
                && e.instance_id.as_deref() == Some(inst.id.as_str())
                && e.status == "InUse"
        })?;
        let vsw = state.vswitches.get(&eni.vswitch_id)?;
        let quoted = |v: Vec<String>| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        return match field {
            "network-interface-id" => Some(eni.id.clone()),
            "primary-ip-address" => Some(eni.primary_ip.to_string()),
            "gateway" => Some(vsw.gateway().to_string()),
            "netmask" => Some(vsw.cidr.netmask().to_string()),
            "vswitch-cidr-block" => Some(vsw.cidr.to_string()),
            "vswitch-id" => Some(vsw.id.clone()),
            "vpc-id" => Some(eni.vpc_id.clone()),
            "private-ipv4s" => Some(quoted(
                std::iter::once(eni.primary_ip)
                    .chain(eni.secondary_ips.iter().copied())
                    .map(|ip| ip.to_string())
                    .collect(),
            )),
            // The vendor lists IPv6 addresses unquoted, and has no such path without any.
            "ipv6s" if !eni.ipv6s.is_empty() => Some(format!(
                "[{}]",
                eni.ipv6s
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            // Prefix delegation: the ENI's /28s (and /80s), quoted like private-ipv4s; the
            // path is absent without any (docs/cloud.md: the emulator's assumption).
            "ipv4-prefixes" if !eni.ipv4_prefixes.is_empty() => Some(quoted(
                eni.ipv4_prefixes.iter().map(|n| n.to_string()).collect(),
            )),
            "ipv6-prefixes" if !eni.ipv6_prefixes.is_empty() => Some(quoted(
                eni.ipv6_prefixes.iter().map(|n| n.to_string()).collect(),
            )),
            "ipv6-gateway" => vsw.gateway_v6().map(|g| g.to_string()),
            "vswitch-ipv6-cidr-block" => vsw.ipv6_cidr.map(|n| n.to_string()),
            _ => None,
        };
    }
    if p == "ram/security-credentials" && dir {
        return inst.ram_role.clone();
    }
    if let Some(role) = p.strip_prefix("ram/security-credentials/") {
        if inst.ram_role.as_deref() != Some(role) {
            return None;
        }
        let sts = inst.sts.as_ref()?;
        let exp = std::time::SystemTime::now() + Duration::from_secs(3600);
        return Some(
            serde_json::json!({
                "AccessKeyId": sts.access_key_id,
                "AccessKeySecret": sts.access_key_secret,
                "SecurityToken": sts.security_token,
                "Expiration": humantime::format_rfc3339_seconds(exp).to_string(),
                "LastUpdated": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                "Code": "Success",
            })
            .to_string(),
        );
    }
    None
}
