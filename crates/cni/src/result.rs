//! Rendering a [`NetworkResult`] in the wire shape of the requested spec version, and
//! reading the addresses back out of a `prevResult`.

use crate::version;
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use unicni_core::NetworkResult;

/// The result JSON for `cni_version`: 0.3.x/0.4.0 carry `ips[].version`; 1.1.0 adds the
/// interface `mtu` and route attributes beyond `dst`/`gw`.
pub fn render(result: &NetworkResult, cni_version: &str) -> Value {
    let v11 = version::at_least(cni_version, "1.1.0");
    let old = version::has_ip_version_field(cni_version);
    let interfaces: Vec<Value> = result
        .interfaces
        .iter()
        .map(|i| {
            let mut o = Map::new();
            o.insert("name".into(), json!(i.name));
            o.insert("mac".into(), json!(i.mac));
            if let (true, Some(mtu)) = (v11, i.mtu) {
                o.insert("mtu".into(), json!(mtu));
            }
            if let Some(s) = &i.sandbox {
                o.insert("sandbox".into(), json!(s));
            }
            Value::Object(o)
        })
        .collect();
    let ips: Vec<Value> = result
        .ips
        .iter()
        .map(|ip| {
            let mut o = Map::new();
            if old {
                o.insert(
                    "version".into(),
                    json!(if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    }),
                );
            }
            o.insert("address".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                o.insert("gateway".into(), json!(gw.to_string()));
            }
            if let Some(i) = ip.interface {
                o.insert("interface".into(), json!(i));
            }
            Value::Object(o)
        })
        .collect();
    let routes: Vec<Value> = result
        .routes
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("dst".into(), json!(r.dst.to_string()));
            if let Some(gw) = r.gw {
                o.insert("gw".into(), json!(gw.to_string()));
            }
            if v11 {
                if let Some(m) = r.mtu {
                    o.insert("mtu".into(), json!(m));
                }
                if let Some(p) = r.priority {
                    o.insert("priority".into(), json!(p));
                }
                if let Some(t) = r.table {
                    o.insert("table".into(), json!(t));
                }
                if let Some(s) = r.scope {
                    o.insert("scope".into(), json!(s));
                }
            }
            Value::Object(o)
        })
        .collect();
    let mut dns = Map::new();
    if !result.dns.nameservers.is_empty() {
        dns.insert("nameservers".into(), json!(result.dns.nameservers));
    }
    if let Some(d) = &result.dns.domain {
        dns.insert("domain".into(), json!(d));
    }
    if !result.dns.search.is_empty() {
        dns.insert("search".into(), json!(result.dns.search));
    }
    if !result.dns.options.is_empty() {
        dns.insert("options".into(), json!(result.dns.options));
    }
    json!({
        "cniVersion": cni_version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": Value::Object(dns),
    })
}

/// The addresses listed in a `prevResult`, for CHECK.
pub fn prev_result_addresses(prev: &Value) -> Vec<IpNet> {
    prev.get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicni_core::{InterfaceConfig, IpConfig, RouteConfig};

    fn sample() -> NetworkResult {
        NetworkResult {
            interfaces: vec![InterfaceConfig {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                mtu: Some(1450),
                sandbox: Some("/var/run/netns/p".into()),
            }],
            ips: vec![IpConfig {
                address: "10.244.1.5/24".parse().unwrap(),
                gateway: Some("10.244.1.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![RouteConfig {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.244.1.1".parse().unwrap()),
                mtu: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Default::default(),
        }
    }

    #[test]
    fn v1_shape() {
        let v = render(&sample(), "1.0.0");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["ips"][0]["address"], "10.244.1.5/24");
        assert_eq!(v["ips"][0]["interface"], 0);
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
    }

    #[test]
    fn v11_has_mtu() {
        assert_eq!(render(&sample(), "1.1.0")["interfaces"][0]["mtu"], 1450);
    }

    #[test]
    fn v04_has_ip_version() {
        assert_eq!(render(&sample(), "0.4.0")["ips"][0]["version"], "4");
    }

    #[test]
    fn prev_result_round_trip() {
        let v = render(&sample(), "1.1.0");
        assert_eq!(
            prev_result_addresses(&v),
            vec!["10.244.1.5/24".parse::<IpNet>().unwrap()]
        );
    }
}
