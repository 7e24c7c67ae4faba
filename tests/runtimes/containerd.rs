//! A private containerd: own root, state, socket and CNI dirs, stopped by PID, with its
//! shims, container processes and mounts cleaned up even when the test fails.

use crate::runtimes::cri::Cri;
use crate::runtimes::guard::{kill_pids_with_arg, unmount_under, Daemon};
use crate::runtimes::image::IMAGE_REF;
use crate::runtimes::network::Network;
use crate::runtimes::util::{output, run, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const CRI_NAMESPACE: &str = "k8s.io";

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    daemon: Daemon,
}

impl Containerd {
    /// Starts containerd under `dir` with its CRI plugin on `net`, and imports the test
    /// image into `k8s.io` (where CRI looks for it).
    pub fn start(dir: &Path, net: &Network, oci_image: &Path) -> Self {
        let config = Self::write_cri_config(dir, &net.bin_dir, &net.conf_dir);
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config);
        let me = Self::spawn(dir, cmd);
        me.import(CRI_NAMESPACE, oci_image);
        me
    }

    /// Writes `dir/containerd.toml`: root, state and socket under `dir`, the CRI plugin on
    /// the given CNI directories. Returns its path.
    pub fn write_cri_config(dir: &Path, cni_bin_dir: &Path, cni_conf_dir: &Path) -> PathBuf {
        let config = dir.join("containerd.toml");
        std::fs::create_dir_all(dir).unwrap();
        let body = include_str!("../../testdata/runtimes/containerd.toml")
            .replace("@ROOT@", &dir.join("root").display().to_string())
            .replace("@STATE@", &dir.join("state").display().to_string())
            .replace(
                "@SOCKET@",
                &dir.join("containerd.sock").display().to_string(),
            )
            .replace("@SANDBOX_IMAGE@", IMAGE_REF)
            .replace("@CNI_BIN_DIR@", &cni_bin_dir.display().to_string())
            .replace("@CNI_CONF_DIR@", &cni_conf_dir.display().to_string());
        std::fs::write(&config, body).unwrap();
        config
    }

    /// Runs `cmd` (containerd with a config whose root, state and socket are
    /// `dir/{root,state,containerd.sock}`, directly or behind a launcher that execs it)
    /// with its output in `dir/containerd.log`, and waits until it answers on its socket.
    pub fn spawn(dir: &Path, mut cmd: Command) -> Self {
        let (root, state) = (dir.join("root"), dir.join("state"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let log = dir.join("containerd.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("spawn containerd (install the containerd package)");
        let mut me = Self {
            dir: dir.to_path_buf(),
            socket: dir.join("containerd.sock"),
            root,
            state,
            log,
            daemon: Daemon::new("containerd", child),
        };
        wait_for(
            "containerd to answer on its socket",
            Duration::from_secs(30),
            || {
                if !me.daemon.alive() {
                    panic!("containerd exited at startup:\n{}", me.log_tail(40));
                }
                let out = output(me.ctr(CRI_NAMESPACE).arg("version"));
                out.status.success().then_some(())
            },
        );
        me
    }

    pub fn ctr(&self, namespace: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .arg("-n")
            .arg(namespace);
        c
    }

    pub fn import(&self, namespace: &str, oci_image: &Path) {
        run(self.ctr(namespace).args(["image", "import"]).arg(oci_image));
        let listed = run(self.ctr(namespace).args(["image", "ls", "-q"]));
        assert!(
            listed.lines().any(|l| l.trim() == IMAGE_REF),
            "ctr image import of {} did not create {IMAGE_REF}; images: {listed}",
            oci_image.display()
        );
    }

    /// A CRI client, once the CRI plugin serves and has loaded the CNI config.
    pub fn cri(&self) -> Cri {
        let mut cri = Cri::connect(&self.socket);
        wait_for(
            "CRI to report NetworkReady",
            Duration::from_secs(30),
            || cri.network_ready().then_some(()),
        );
        wait_for(
            "CRI to see the imported image",
            Duration::from_secs(30),
            || cri.image_present(IMAGE_REF).then_some(()),
        );
        cri
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills what survives a containerd: its shims (they carry our socket path in their
    /// arguments) with the containers they supervise; then detaches the mounts.
    pub fn stop(&mut self) {
        self.daemon.stop();
        kill_pids_with_arg(&self.socket.display().to_string());
        // Shims exit asynchronously after SIGKILL; give the kernel a moment to release.
        std::thread::sleep(Duration::from_millis(100));
        unmount_under(&self.state);
        unmount_under(&self.root);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- containerd log ({}), last lines ---\n{}",
                self.log.display(),
                self.log_tail(30)
            );
        }
        self.stop();
    }
}
