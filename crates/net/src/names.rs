//! The naming scheme of the links a backend creates on the node: a short prefix of the
//! backend's own plus a hash of what identifies the attachment. DEL and GC recompute the
//! name from the attachment, so a half-done ADD is cleanable without saved state, and a
//! backend recognises its links (and only its) by their shape.

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// Hex digits of the hash in a [`LinkNames`] name.
const HASH_DIGITS: usize = 11;

/// One backend's link names: `prefix` + 11 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkNames {
    prefix: &'static str,
}

impl LinkNames {
    /// `prefix` must be lowercase ASCII letters and short enough for the name to fit in
    /// [`IFNAME_MAX`] (checked at compile time when used in a `const`).
    pub const fn new(prefix: &'static str) -> LinkNames {
        assert!(
            !prefix.is_empty() && prefix.len() + HASH_DIGITS <= IFNAME_MAX,
            "link name prefix must be 1 to 4 characters"
        );
        let b = prefix.as_bytes();
        let mut i = 0;
        while i < b.len() {
            assert!(
                b[i].is_ascii_lowercase(),
                "link name prefix must be lowercase letters"
            );
            i += 1;
        }
        LinkNames { prefix }
    }

    pub const fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// The name for the attachment identified by `parts` (in order; each part counts
    /// whole, so `["ab", "c"]` and `["a", "bc"]` differ).
    pub fn name(&self, parts: &[&str]) -> String {
        format!(
            "{}{:0width$x}",
            self.prefix,
            fnv1a64(parts) & 0xfff_ffff_ffff,
            width = HASH_DIGITS
        )
    }

    /// Whether `name` has the shape of this backend's names (the prefix, then exactly 11
    /// lowercase hex digits).
    pub fn matches(&self, name: &str) -> bool {
        name.len() == self.prefix.len() + HASH_DIGITS
            && name.starts_with(self.prefix)
            && name[self.prefix.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// A locally administered unicast MAC derived from `name`: stable across re-creations, so
/// neighbours' caches stay right.
pub fn mac_for_name(name: &str) -> [u8; 6] {
    let h = fnv1a64(&[name]).to_be_bytes();
    [(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

/// FNV-1a over the parts, each followed by a NUL so that part boundaries count.
fn fnv1a64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const UC: LinkNames = LinkNames::new("uc");
    const LONGEST: LinkNames = LinkNames::new("abcd");

    #[test]
    fn names_fit_are_lowercase_hex_after_the_prefix_and_stable() {
        let long = "x".repeat(300);
        for names in [UC, LONGEST] {
            for parts in [&["net", "c1", "eth0"][..], &[""], &[], &[long.as_str()]] {
                let n = names.name(parts);
                assert!(n.len() <= IFNAME_MAX, "{n}");
                assert_eq!(n.len(), names.prefix().len() + HASH_DIGITS, "{n}");
                let hash = n.strip_prefix(names.prefix()).expect("prefix");
                assert!(
                    hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "{n}"
                );
                assert!(names.matches(&n), "{n}");
                assert_eq!(n, names.name(parts));
            }
        }
    }

    #[test]
    fn parts_and_their_boundaries_change_the_name() {
        let a = UC.name(&["net", "c1", "eth0"]);
        assert_ne!(a, UC.name(&["net", "c1", "eth1"]));
        assert_ne!(a, UC.name(&["other", "c1", "eth0"]));
        assert_ne!(UC.name(&["ab", "c"]), UC.name(&["a", "bc"]));
        // The prefix is not part of the hash: two backends differ only there.
        let tw = LinkNames::new("tw").name(&["net", "c1", "eth0"]);
        assert_eq!(a[2..], tw[2..]);
    }

    #[test]
    fn only_names_of_the_exact_shape_match() {
        let good = UC.name(&["c1"]);
        for other in [
            "uc",
            "ucXYZ0000000000",
            "ucABCDEF01234",
            "uc0123456789",
            "uc0123456789ab",
            "cni0",
            "flannel.1",
            "tw0123456789a",
        ] {
            assert!(!UC.matches(other), "{other}");
        }
        assert!(!LinkNames::new("tw").matches(&good));
    }

    #[test]
    fn macs_are_locally_administered_unicast_and_distinct() {
        let (a, b) = (mac_for_name("x"), mac_for_name("y"));
        assert_ne!(a, b);
        for m in [a, b] {
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        }
    }
}
