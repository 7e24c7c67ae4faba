//! Masquerade and forward rules for the cluster CIDR, in an nftables table of our own.
//!
//! Pod-to-pod traffic keeps its source; traffic from the cluster CIDR to anything outside
//! it (multicast excepted) leaves with the node's address, with fully random source
//! ports. Packets kube-proxy marked with 0x4000 are left to kube-proxy's own masquerade.
//! A dual-stack cluster's IPv6 network gets the same rules in an `ip6` table of the same
//! name (`ip` and `ip6` tables live in separate namespaces).

use ipnet::IpNet;
use unicni_net::nft;

/// nftables table name for a CNI network (`-` is not allowed in nft identifiers).
pub fn table_name(network: &str) -> String {
    format!(
        "unicni_{}",
        network
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    )
}

/// The nftables family of a cluster network's rules: `ip` or `ip6`.
pub fn family(cluster: IpNet) -> &'static str {
    match cluster {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

pub fn script(table: &str, cluster: IpNet) -> String {
    let (f, multicast) = match cluster {
        IpNet::V4(_) => ("ip", "224.0.0.0/4"),
        IpNet::V6(_) => ("ip6", "ff00::/8"),
    };
    // Declaring then deleting the table first makes the load idempotent and atomic.
    format!(
        "table {f} {table} {{}}\n\
         delete table {f} {table}\n\
         table {f} {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & 0x4000 == 0x4000 return\n\
         \t\t{f} saddr {cluster} {f} daddr {cluster} return\n\
         \t\t{f} saddr {cluster} {f} daddr {multicast} return\n\
         \t\t{f} saddr {cluster} masquerade fully-random\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\t{f} saddr {cluster} accept\n\
         \t\t{f} daddr {cluster} accept\n\
         \t}}\n\
         }}\n"
    )
}

pub fn install(table: &str, cluster: IpNet) -> unicni_net::Result<()> {
    nft::apply(&script(table, cluster))
}

/// Removes the `ip` table and, where there is one, the `ip6` table of a dual-stack node.
pub fn remove(table: &str) -> unicni_net::Result<()> {
    if nft::table_exists("ip6", table) {
        nft::delete_table("ip6", table)?;
    }
    nft::delete_table("ip", table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("unicni-lab"), "unicni_unicni_lab");
    }

    #[test]
    fn script_respects_kube_proxy_mark_and_skips_pod_to_pod() {
        let s = script("t", "10.244.0.0/16".parse().unwrap());
        let mark = s.find("0x4000").unwrap();
        let masq = s.find("masquerade").unwrap();
        assert!(mark < masq);
        assert!(s.contains("ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return"));
    }

    #[test]
    fn the_ipv6_network_gets_the_same_rules_in_an_ip6_table() {
        let s = script("t", "fd00:10:244::/56".parse().unwrap());
        assert!(s.starts_with("table ip6 t {}\ndelete table ip6 t\n"), "{s}");
        assert!(s.contains("ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244::/56 return"));
        assert!(s.contains("ip6 saddr fd00:10:244::/56 ip6 daddr ff00::/8 return"));
        assert!(s.contains("ip6 saddr fd00:10:244::/56 masquerade fully-random"));
        assert!(!s.contains("ip saddr"), "{s}");
    }
}
