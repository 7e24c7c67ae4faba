//! Masquerade and forward rules for the cluster CIDR, in an nftables table of our own.
//!
//! Pod-to-pod traffic keeps its source; traffic from the cluster CIDR to anything outside
//! it (multicast excepted) leaves with the node's address, with fully random source
//! ports. Packets kube-proxy marked with 0x4000 are left to kube-proxy's own masquerade.

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

pub fn script(table: &str, cluster: IpNet) -> String {
    // Declaring then deleting the table first makes the load idempotent and atomic.
    format!(
        "table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & 0x4000 == 0x4000 return\n\
         \t\tip saddr {cluster} ip daddr {cluster} return\n\
         \t\tip saddr {cluster} ip daddr 224.0.0.0/4 return\n\
         \t\tip saddr {cluster} masquerade fully-random\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tip saddr {cluster} accept\n\
         \t\tip daddr {cluster} accept\n\
         \t}}\n\
         }}\n"
    )
}

pub fn install(table: &str, cluster: IpNet) -> unicni_net::Result<()> {
    nft::apply(&script(table, cluster))
}

pub fn remove(table: &str) -> unicni_net::Result<()> {
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
}
