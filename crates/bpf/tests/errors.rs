//! The typed errors that let the agent fall back when eBPF cannot be used.

mod common;

use common::{in_netns, require_root, Netns};
use std::path::PathBuf;
use unicni_bpf::{BpfError, FastPath};

#[test]
fn pin_dir_off_bpffs_is_a_typed_unavailable_error_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let pin = d.path().join("unicni");
    let err = FastPath::load_or_adopt(&pin).unwrap_err();
    assert!(matches!(err, BpfError::NoBpffs { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(
        err.to_string().contains(&pin.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("mount -t bpf"), "{err}");
    assert!(!pin.exists());
    // An existing directory off bpffs: open says the same.
    let err = FastPath::open(d.path()).unwrap_err();
    assert!(matches!(err, BpfError::NoBpffs { .. }), "{err:?}");
}

#[test]
fn open_before_the_agent_loaded_it_is_not_loaded() {
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/unicni-test-none-{}",
        std::process::id()
    ));
    let err = FastPath::open(&pin).unwrap_err();
    assert!(matches!(err, BpfError::NotLoaded { .. }), "{err:?}");
    assert!(!err.is_unavailable());
}

#[test]
fn verifier_refusal_is_a_typed_error_with_the_log() {
    if !require_root() {
        return;
    }
    let maps = PathBuf::from(format!(
        "/sys/fs/bpf/unicni-test-verifier-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&maps).unwrap();
    let err = unicni_bpf::testing::load_object(unicni_bpf::testing::REJECT, &["uc_reject"], &maps)
        .map(|_| ())
        .unwrap_err();
    match &err {
        BpfError::Verifier { program, log, .. } => {
            assert_eq!(program, "uc_reject");
            assert!(log.contains("invalid access to packet"), "{log}");
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
    assert!(err.is_unavailable());
    // The real program passes the same verifier.
    let ok = unicni_bpf::testing::load_object(
        unicni_bpf::testing::FASTPATH,
        &[unicni_bpf::FASTPATH_PROGRAM],
        &maps,
    )
    .map(|_| ());
    std::fs::remove_dir_all(&maps).unwrap();
    ok.unwrap();
}

#[test]
fn attach_to_a_missing_interface_names_it() {
    if !require_root() {
        return;
    }
    let netns = Netns::with_prefix("ucbpf-miss-");
    let ns = netns.name.clone();
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/unicni-test-miss-{}",
        std::process::id()
    ));
    let p = pin.clone();
    let res = in_netns(&ns, move || {
        let mut fp = FastPath::load_or_adopt(&p).unwrap();
        let err = fp.attach(999_999).unwrap_err();
        let detach = fp.detach(999_999);
        drop(fp);
        let removed = unicni_bpf::remove_all(&p);
        (err, detach, removed)
    });
    drop(netns);
    assert!(
        matches!(res.0, BpfError::NoSuchInterface { ifindex: 999_999 }),
        "{:?}",
        res.0
    );
    assert!(res.0.to_string().contains("999999"));
    res.1
        .expect("detaching from a vanished interface is not an error");
    res.2.unwrap();
    assert!(!pin.exists());
}

/// Runs one `#[ignore]`d test of this binary in a child process through `wrapper`.
fn child(wrapper: &[&str], test: &str, env: &[(&str, String)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(wrapper[0]);
    cmd.args(&wrapper[1..]).arg(exe).args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn without_capabilities_loading_is_permission_denied() {
    if !require_root() {
        return;
    }
    // uid 0 but an empty bounding set: no capability survives the exec.
    let out = child(
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
        "nocap_child",
        &[("UNICNI_BPF_NOCAP", "1".into())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("permission denied as expected"), "{text}");
}

#[test]
#[ignore = "run by without_capabilities_loading_is_permission_denied"]
fn nocap_child() {
    if std::env::var_os("UNICNI_BPF_NOCAP").is_none() {
        return;
    }
    // Fails at map creation, before anything could be pinned there.
    let maps = format!("/sys/fs/bpf/unicni-test-nocap-{}", std::process::id());
    let err = unicni_bpf::testing::load_object(
        unicni_bpf::testing::FASTPATH,
        &[unicni_bpf::FASTPATH_PROGRAM],
        std::path::Path::new(&maps),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(err, BpfError::PermissionDenied { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("CAP_BPF"), "{err}");
    println!("permission denied as expected: {err}");
}

#[test]
fn missing_bpffs_under_sys_fs_bpf_is_mounted() {
    if !require_root() {
        return;
    }
    // A private mount namespace without bpffs at /sys/fs/bpf (the host's mount is untouched).
    let out = child(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "umount /sys/fs/bpf 2>/dev/null; exec \"$@\"",
            "sh",
        ],
        "mount_child",
        &[("UNICNI_BPF_MOUNT", "1".into())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mounted and loaded"), "{text}");
}

#[test]
#[ignore = "run by missing_bpffs_under_sys_fs_bpf_is_mounted"]
fn mount_child() {
    if std::env::var_os("UNICNI_BPF_MOUNT").is_none() {
        return;
    }
    let root = std::path::Path::new(unicni_bpf::BPFFS_ROOT);
    assert!(!unicni_bpf::is_bpffs(root), "the wrapper unmounted it");
    let pin = root.join(format!("unicni-test-mount-{}", std::process::id()));
    let fp = FastPath::load_or_adopt(&pin).unwrap();
    assert!(unicni_bpf::is_bpffs(root));
    drop(fp);
    unicni_bpf::remove_all(&pin).unwrap();
    assert!(!pin.exists());
    println!("mounted and loaded");
}
