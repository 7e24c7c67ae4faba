//! The Service load balancer's programs load on this kernel, attach to the root cgroup v2
//! through pinned links, and are gone from it after `remove_all` (root only).

use std::path::PathBuf;
use unicni_bpf::services::{cgroup2_root, cgroup_program_ids, remove_all, ServiceDatapath};
use unicni_testkit::{require_root, unique};

struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = remove_all(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn programs_load_attach_and_go_away() {
    if !require_root() {
        return;
    }
    let pin = PinDir(PathBuf::from(format!("/sys/fs/bpf/{}", unique("ucsvc"))));
    let dp = ServiceDatapath::load_or_adopt(&pin.0).expect("load the Service programs");
    let ids = dp.program_ids().unwrap();
    assert_eq!(ids.len(), 8);
    let cg = cgroup2_root().unwrap();
    let attached = cgroup_program_ids(&cg).unwrap();
    for id in &ids {
        assert!(
            attached.contains(id),
            "program {id} not on {}: {attached:?}",
            cg.display()
        );
    }

    // Adopting again keeps the same programs and attaches nothing twice.
    let again = ServiceDatapath::load_or_adopt(&pin.0).unwrap();
    assert_eq!(again.program_ids().unwrap(), ids);
    let attached2 = cgroup_program_ids(&cg).unwrap();
    assert_eq!(
        attached2.iter().filter(|i| ids.contains(i)).count(),
        ids.len(),
        "each program attached once"
    );

    // An upgrade switches the links to the new code.
    let up =
        ServiceDatapath::load_or_adopt_object(&pin.0, unicni_bpf::testing::SERVICES_V3).unwrap();
    let new_ids = up.program_ids().unwrap();
    assert_ne!(new_ids, ids);
    let attached3 = cgroup_program_ids(&cg).unwrap();
    for id in &new_ids {
        assert!(attached3.contains(id));
    }
    for id in &ids {
        assert!(!attached3.contains(id), "old program {id} still attached");
    }
    drop((dp, again, up));

    remove_all(&pin.0).unwrap();
    assert!(!pin.0.join("services").exists());
    let after = cgroup_program_ids(&cg).unwrap();
    for id in new_ids.iter().chain(&ids) {
        assert!(
            !after.contains(id),
            "program {id} still attached after remove_all"
        );
    }
}
