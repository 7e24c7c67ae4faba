//! A private podman: its own containers.conf, storage, run root, tmp dir and CNI config
//! dir, so the host's podman state is never read or written.

use crate::runtimes::guard::{kill_pids_with_arg, unmount_under};
use crate::runtimes::network::Network;
use crate::runtimes::util::{output, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const IMAGE: &str = "localhost/unicni-busybox:test";

pub struct Podman {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub runroot: PathBuf,
    conf: PathBuf,
    storage_conf: PathBuf,
    cni_conf_dir: PathBuf,
}

impl Podman {
    pub fn new(dir: &Path, net: &Network) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let fill = |t: &str| {
            t.replace("@DIR@", &dir.display().to_string())
                .replace("@CNI_BIN_DIR@", &net.bin_dir.display().to_string())
                .replace("@CNI_CONF_DIR@", &net.conf_dir.display().to_string())
                .replace("@NETWORK@", &net.name)
        };
        let conf = dir.join("containers.conf");
        let storage_conf = dir.join("storage.conf");
        std::fs::write(
            &conf,
            fill(include_str!("../../testdata/runtimes/containers.conf")),
        )
        .unwrap();
        std::fs::write(
            &storage_conf,
            fill(include_str!("../../testdata/runtimes/storage.conf")),
        )
        .unwrap();
        Self {
            dir: dir.to_path_buf(),
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            conf,
            storage_conf,
            cni_conf_dir: net.conf_dir.clone(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .arg("--cni-config-dir")
            .arg(&self.cni_conf_dir)
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--events-backend")
            .arg("file");
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }

    pub fn output(&self, args: &[&str]) -> Output {
        output(self.cmd().args(args))
    }

    pub fn import(&self, rootfs_tar: &Path) {
        run(self.cmd().arg("import").arg(rootfs_tar).arg(IMAGE));
    }

    /// The container's address on `network`, from `podman inspect`.
    pub fn ip(&self, container: &str, network: &str) -> String {
        let out = self.run(&["inspect", container]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("podman inspect JSON");
        v[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Removes every container (CNI DEL runs), then kills what a failed podman may leave
    /// (conmon carries our root path in its exit command) and detaches the mounts.
    pub fn cleanup(&self) {
        let out = self.output(&["rm", "--all", "--force", "--time", "0"]);
        if !out.status.success() {
            eprintln!(
                "cleanup: podman rm --all: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        kill_pids_with_arg(&self.root.display().to_string());
        unmount_under(&self.runroot);
        unmount_under(&self.root);
        unmount_under(&self.dir);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cleanup();
    }
}
