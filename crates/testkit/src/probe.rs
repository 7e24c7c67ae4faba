//! Short forms for the `ip` command lines that build test topologies and probe them: one
//! line a step instead of one array element a word.

use crate::cmd::{must, run};
use std::process::Output;

/// `ip -n <ns> <words…>` (white-space separated); returns its stdout, panics with its
/// stderr when it fails.
pub fn ip_n(ns: &str, words: &str) -> String {
    let mut args = vec!["ip", "-n", ns];
    args.extend(words.split_whitespace());
    must(&args)
}

/// `ip netns exec <ns> <words…>`; returns its stdout, panics with its stderr when it fails.
pub fn ns_must(ns: &str, words: &str) -> String {
    must(&exec_args(ns, words))
}

/// `ip netns exec <ns> <words…>`, whatever its exit status.
pub fn ns_run(ns: &str, words: &str) -> Output {
    run(&exec_args(ns, words))
}

fn exec_args<'a>(ns: &'a str, words: &'a str) -> Vec<&'a str> {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend(words.split_whitespace());
    args
}

/// `/sys/class/net/<dev>/<attr>` as seen inside `ns`, trimmed (`address`, `ifindex`…).
pub fn sysfs_net(ns: &str, dev: &str, attr: &str) -> String {
    ns_must(ns, &format!("cat /sys/class/net/{dev}/{attr}"))
        .trim()
        .to_string()
}

/// The interface index of `dev` inside `ns`.
pub fn ifindex(ns: &str, dev: &str) -> u32 {
    let s = sysfs_net(ns, dev, "ifindex");
    s.parse()
        .unwrap_or_else(|e| panic!("ifindex of {dev} in {ns}: {s:?}: {e}"))
}

/// `count` pings from `ns` to `target`, 0.2 s apart, each answered within a second: true
/// when every one was answered.
pub fn ping(ns: &str, target: &str, count: u32) -> bool {
    ns_run(ns, &format!("ping -c {count} -i 0.2 -W 1 -q {target}"))
        .status
        .success()
}

/// A permanent neighbour entry for `ip` at `mac` on `dev` inside `ns` (IPv4 or IPv6).
pub fn static_neigh(ns: &str, ip_addr: &str, mac: &str, dev: &str) {
    let family = if ip_addr.contains(':') { "-6 " } else { "" };
    ip_n(
        ns,
        &format!("{family}neigh replace {ip_addr} lladdr {mac} dev {dev} nud permanent"),
    );
}
