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

    // The capacities user space checks a table against are the maps' own.
    let maps = unicni_bpf::services::services_dir(&pin.0).join("maps");
    for (name, max) in [
        ("svc_pods", unicni_bpf::services::MAX_PODS),
        ("svc_frontends", unicni_bpf::services::MAX_FRONTENDS),
        ("svc_slots", unicni_bpf::services::MAX_SLOTS),
        ("svc_backends", unicni_bpf::services::MAX_BACKENDS),
    ] {
        let info = aya::maps::MapData::from_pin(maps.join(name))
            .and_then(|m| m.info())
            .unwrap_or_else(|e| panic!("pinned map {name}: {e}"));
        assert_eq!(info.max_entries() as usize, max, "max_entries of {name}");
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

/// `services.cgroup_root`: an explicit mount of the cgroup v2 hierarchy is used (here a
/// second mount of the host's, as the DaemonSet's hostPath gives the agent), and a path
/// that is no cgroup2 mount is refused before anything is attached.
#[test]
fn an_explicit_cgroup_root_is_used_and_a_wrong_one_refused() {
    if !require_root() {
        return;
    }
    let pin = PinDir(PathBuf::from(format!("/sys/fs/bpf/{}", unique("ucsvr"))));
    let not_cg = tempfile::tempdir().unwrap();
    let err = match ServiceDatapath::load_or_adopt_at(&pin.0, Some(not_cg.path())) {
        Ok(_) => panic!("a temp directory accepted as the cgroup v2 root"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a cgroup2 filesystem"), "{err}");
    assert!(
        !unicni_bpf::services::services_dir(&pin.0)
            .join("links")
            .exists()
            || std::fs::read_dir(unicni_bpf::services::services_dir(&pin.0).join("links"))
                .unwrap()
                .next()
                .is_none()
    );

    // A second mount of the same hierarchy: its root directory is the same root cgroup.
    let mnt = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some("none"),
        mnt.path(),
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount cgroup2");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _u = Unmount(mnt.path().to_path_buf());
    let dp = ServiceDatapath::load_or_adopt_at(&pin.0, Some(mnt.path())).expect("load at");
    let ids = dp.program_ids().unwrap();
    let attached = cgroup_program_ids(&cgroup2_root().unwrap()).unwrap();
    for id in &ids {
        assert!(attached.contains(id), "program {id} not on the root cgroup");
    }
}
