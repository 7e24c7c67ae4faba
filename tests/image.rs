//! scripts/image.sh builds the image offline (deploy/Containerfile on `scratch`), and the
//! image runs: under podman, and under containerd after `ctr images import` of the OCI
//! archive the script exports (the kubelet's runtime sees what ctr imports into k8s.io).
//!
//! Needs root, podman, containerd, runc and nft.

mod runtimes;

use runtimes::containerd::{Containerd, CRI_NAMESPACE};
use runtimes::util::run;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_unicni");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// podman as this VM needs it (DESIGN.md: cgroupfs, file events, runc, ulimits), without
/// touching the system's configuration.
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args([
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
        "--runtime",
        "runc",
    ]);
    c
}

fn podman_run(image: &str, entrypoint: Option<&str>, args: &[&str]) -> String {
    let mut c = podman();
    c.args(["run", "--rm", "--network", "none"]).args([
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
    ]);
    if let Some(e) = entrypoint {
        c.args(["--entrypoint", e]);
    }
    run(c.arg(image).args(args))
}

/// The podman image and its archive go away whatever the test's outcome.
struct Built {
    image: String,
}

impl Drop for Built {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rmi", "--force", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A private containerd without its CRI plugin: ctr's import and run only.
fn start_containerd(dir: &Path) -> Containerd {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\noom_score = 0\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = \"{}.ttrpc\"\n\
             [metrics]\n  address = \"\"\n",
            dir.join("root"),
            dir.join("state"),
            dir.join("containerd.sock"),
            dir.join("containerd.sock").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&config);
    Containerd::spawn(dir, cmd)
}

#[test]
fn image_builds_offline_and_runs_under_podman_and_containerd() {
    if !unicni_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = format!("localhost/{}:test", unicni_testkit::unique("unicni-img"));
    let archive = dir.path().join("unicni.tar");
    let _built = Built {
        image: image.clone(),
    };
    // The binary under test, so that the test does not start a release build.
    let out = Command::new(Path::new(ROOT).join("scripts/image.sh"))
        .env("UNICNI_IMAGE_BINARY", BIN)
        .env("UNICNI_IMAGE", &image)
        .env("UNICNI_IMAGE_ARCHIVE", &archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        image,
        "image.sh prints the reference"
    );
    assert!(archive.exists(), "no archive at {}", archive.display());

    // An empty base: nothing but the binaries, their libraries and two small files.
    let history = run(podman().args([
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &image,
    ]));
    assert_eq!(history.trim(), "1", "one layer on scratch");

    let version = podman_run(&image, None, &["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "podman run {image} --version: {version}"
    );
    // nft and its libraries are complete: it starts and parses a ruleset offline.
    let nft = podman_run(&image, Some("/usr/sbin/nft"), &["--version"]);
    assert!(nft.starts_with("nftables"), "nft in the image: {nft}");
    // The subcommands the DaemonSet runs are there.
    let help = podman_run(&image, None, &["install", "--help"]);
    assert!(help.contains("--with-agent"), "{help}");

    let cd = start_containerd(&dir.path().join("containerd"));
    run(cd
        .ctr(CRI_NAMESPACE)
        .args(["images", "import"])
        .arg(&archive));
    let listed = run(cd.ctr(CRI_NAMESPACE).args(["images", "ls", "-q"]));
    assert!(
        listed.lines().any(|l| l.trim() == image),
        "ctr import of {} did not create {image}: {listed}",
        archive.display()
    );
    let id = unicni_testkit::unique("img");
    let ran = run(cd
        .ctr(CRI_NAMESPACE)
        .args(["run", "--rm", "--net-host", &image, &id])
        .args(["/usr/local/bin/unicni", "--version"]));
    assert!(
        ran.contains(env!("CARGO_PKG_VERSION")),
        "ctr run {image}: {ran}"
    );
}
