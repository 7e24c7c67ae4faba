//! Unique names for links, namespaces, directories and networks.

use std::sync::atomic::{AtomicU32, Ordering};

/// The longest Linux interface name (`IFNAMSIZ` less the terminating NUL).
pub const IFNAME_MAX: usize = 15;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `prefix` followed by six or more hex digits: four from the process id (so concurrent
/// test processes differ) and a per-process counter (so this process's tests differ).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{:04x}{n:02x}", std::process::id() & 0xffff)
}

/// [`unique`], checked to fit a Linux interface name: panics with the name when the prefix
/// is too long (nine characters leave room for 256 names a process).
pub fn unique_ifname(prefix: &str) -> String {
    let name = unique(prefix);
    assert!(
        name.len() <= IFNAME_MAX,
        "generated name {name:?} is longer than a Linux interface name ({IFNAME_MAX}): use a shorter prefix than {prefix:?}"
    );
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_distinct_and_keep_the_prefix() {
        let names: HashSet<String> = (0..300).map(|_| unique_ifname("ut")).collect();
        assert_eq!(names.len(), 300);
        assert!(names
            .iter()
            .all(|n| n.starts_with("ut") && n.len() <= IFNAME_MAX));
    }

    #[test]
    #[should_panic(expected = "longer than a Linux interface name")]
    fn a_long_prefix_is_refused_for_links() {
        unique_ifname("much-too-long-prefix");
    }

    #[test]
    fn long_prefixes_are_fine_for_other_names() {
        assert!(unique("unicni-test-bpffs-").starts_with("unicni-test-bpffs-"));
    }
}
