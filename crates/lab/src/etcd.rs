//! The lab's etcd: the real etcd server, inside the VPC namespace (reachable by every
//! node over the underlay), with its data under the lab root; stopped by PID.

use super::topology::{Lab, ETCD_PORT};
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Lab {
    pub fn start_etcd(&self) -> Result<u32> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context(
                "--store etcd needs the etcd server (Debian package etcd-server) at /usr/bin/etcd",
            )?;
        let data = self.root.join("etcd");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(self.root.join("etcd.log"))?;
        let url = format!("http://{}:{ETCD_PORT}", self.outside_ip());
        let child = Command::new("ip")
            .args(["netns", "exec", &self.vpc_ns(), bin])
            .arg("--name")
            .arg(format!("{}-etcd", self.prefix))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args([
                "--initial-cluster",
                &format!("{}-etcd=http://127.0.0.1:2380", self.prefix),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start etcd")?;
        let pid = child.id();
        let ns = unicni_net::NetNs::open(std::path::Path::new(&format!(
            "/var/run/netns/{}",
            self.vpc_ns()
        )))?;
        let addr: std::net::SocketAddr = format!("{}:{ETCD_PORT}", self.outside_ip()).parse()?;
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            let up = ns.run(|| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(pid);
            }
            if !super::nodes::alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        super::nodes::terminate(pid, Duration::from_secs(2));
        bail!(
            "etcd did not come up on {addr}; see {}",
            self.root.join("etcd.log").display()
        )
    }
}
