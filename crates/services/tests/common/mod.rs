//! Test topology for the Service load balancer: a private "node" network namespace with a
//! bridge, and "pods" (each its own namespace) on veths into it, IPv4 and IPv6. Servers
//! run on threads inside backend pods; clients run on threads inside client pods. Every
//! name is unique; the pin directory is removed (programs detached) on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;
use unicni_services::{Backend, BackendState, Frontend, Lb, Protocol, ServiceEntry};
use unicni_testkit::{in_netns, probe::ip_n, unique, Netns};

pub use unicni_testkit::require_root;

pub struct Pod {
    pub ns: Netns,
    pub v4: IpAddr,
    pub v6: IpAddr,
}

pub struct Topo {
    pub pin_dir: PathBuf,
    pub pods: Vec<Pod>,
    node: Netns,
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Lb::unload(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

impl Topo {
    /// `n` pods on 10.78.0.(i+2) and fd78::(i+2).
    pub fn new(tag: &str, n: usize) -> Topo {
        let node = Netns::with_lo_up(&format!("ucsvc-{tag}-n"));
        let nn = node.name.clone();
        ip_n(&nn, "link add br0 type bridge");
        ip_n(&nn, "addr add 10.78.0.1/24 dev br0");
        ip_n(&nn, "addr add fd78::1/64 dev br0 nodad");
        ip_n(&nn, "link set br0 up");
        let mut pods = Vec::new();
        for i in 0..n {
            let ns = Netns::with_lo_up(&format!("ucsvc-{tag}-{i}"));
            let host = format!("h{i}");
            ip_n(
                &nn,
                &format!("link add {host} type veth peer name eth0 netns {}", ns.name),
            );
            ip_n(&nn, &format!("link set {host} master br0 up"));
            let v4: IpAddr = format!("10.78.0.{}", i + 2).parse().unwrap();
            let v6: IpAddr = format!("fd78::{}", i + 2).parse().unwrap();
            ip_n(&ns.name, &format!("addr add {v4}/24 dev eth0"));
            ip_n(&ns.name, &format!("addr add {v6}/64 dev eth0 nodad"));
            ip_n(&ns.name, "link set eth0 up");
            pods.push(Pod { ns, v4, v6 });
        }
        Topo {
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}", unique("ucsvct"))),
            pods,
            node,
        }
    }

    pub fn lb(&self) -> Lb {
        Lb::load(&self.pin_dir).expect("load the Service load balancer")
    }

    /// The node namespace's name.
    pub fn node_name(&self) -> String {
        self.node.name.clone()
    }

    pub fn pod(&self, i: usize) -> &Pod {
        &self.pods[i]
    }
}

pub fn frontend(ip: &str, port: u16, protocol: Protocol) -> Frontend {
    Frontend {
        ip: ip.parse().unwrap(),
        port,
        protocol,
    }
}

pub fn entry(backends: &[(IpAddr, u16, BackendState)]) -> ServiceEntry {
    ServiceEntry {
        service: "test/svc".into(),
        port_name: String::new(),
        backends: backends
            .iter()
            .map(|&(ip, port, state)| Backend { ip, port, state })
            .collect(),
        affinity_timeout: None,
    }
}

/// A TCP server in `pod` on `port` (both families): for each connection it first writes
/// "<name> <peer address>\n", then answers every line "x" with "<name> x\n".
pub fn tcp_server(pod: &Pod, port: u16, name: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = pod.ns.name.clone();
    let name = name.to_string();
    std::thread::spawn(move || {
        unicni_testkit::enter_netns(&ns);
        let l = TcpListener::bind(("::", port)).expect("bind the test server");
        tx.send(()).unwrap();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let peer = c.peer_addr().unwrap();
                let peer_ip = canonical(peer.ip());
                // One write per answer: with Nagle and delayed ACKs a split answer costs
                // 40 ms.
                if c.write_all(format!("{name} {peer_ip}\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if c.write_all(format!("{name} {line}").as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
}

/// A UDP server in `pod` on `port` (both families) answering each datagram with
/// "<name> <peer address>".
pub fn udp_server(pod: &Pod, port: u16, name: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = pod.ns.name.clone();
    let name = name.to_string();
    std::thread::spawn(move || {
        unicni_testkit::enter_netns(&ns);
        let s = UdpSocket::bind(("::", port)).expect("bind the UDP test server");
        tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(format!("{name} {}", canonical(from.ip())).as_bytes(), from);
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
}

pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What a TCP client in a pod saw: the server's greeting (name, client address as the
/// server saw it) and getpeername() of its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSeen {
    pub server: String,
    pub client_seen: IpAddr,
    pub peer: SocketAddr,
}

pub fn tcp_connect_in(ns: &str, to: SocketAddr) -> std::io::Result<TcpSeen> {
    in_netns(ns, move || {
        let c = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        let peer = c.peer_addr()?;
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line)?;
        let mut w = line.split_whitespace();
        let server = w.next().unwrap_or("").to_string();
        let client_seen = w
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(TcpSeen {
            server,
            client_seen,
            peer,
        })
    })
}

/// Sends `msg` from one unconnected UDP socket in `ns` to each of `to` in turn (one
/// datagram each, waiting for the answer) and returns, per datagram, (answer text,
/// source address of the answer).
pub fn udp_unconnected_in(
    ns: &str,
    to: Vec<SocketAddr>,
) -> std::io::Result<Vec<(String, SocketAddr)>> {
    in_netns(ns, move || {
        let bind = if to[0].is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        for dst in to {
            s.send_to(b"hello", dst)?;
            let (n, from) = s.recv_from(&mut buf)?;
            out.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
        Ok(out)
    })
}

/// One connected UDP socket in `ns`: (answer, getpeername, source address recvmsg shows).
pub fn udp_connected_in(
    ns: &str,
    to: SocketAddr,
) -> std::io::Result<(String, SocketAddr, SocketAddr)> {
    in_netns(ns, move || {
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.connect(to)?;
        s.send(b"hello")?;
        let mut buf = [0u8; 1500];
        let (n, from) = s.recv_from(&mut buf)?;
        Ok((
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            s.peer_addr()?,
            from,
        ))
    })
}

/// A TCP connection held open on a thread inside a pod: send a line, get the reply.
pub struct HeldConn {
    tx: std::sync::mpsc::Sender<String>,
    rx: std::sync::mpsc::Receiver<std::io::Result<String>>,
    pub greeting: String,
}

impl HeldConn {
    pub fn open(ns: &str, to: SocketAddr) -> HeldConn {
        let (tx, req) = std::sync::mpsc::channel::<String>();
        let (resp, rx) = std::sync::mpsc::channel::<std::io::Result<String>>();
        let ns = ns.to_string();
        std::thread::spawn(move || {
            unicni_testkit::enter_netns(&ns);
            let c = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                Ok(c) => c,
                Err(e) => {
                    let _ = resp.send(Err(e));
                    return;
                }
            };
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut w = c;
            let mut line = String::new();
            let _ = resp.send(r.read_line(&mut line).map(|_| line.trim().to_string()));
            for msg in req {
                line.clear();
                let res = writeln!(w, "{msg}")
                    .and_then(|_| r.read_line(&mut line))
                    .map(|_| line.trim().to_string());
                let _ = resp.send(res);
            }
        });
        let greeting = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("connection thread answers")
            .expect("connect");
        HeldConn { tx, rx, greeting }
    }

    pub fn ask(&self, msg: &str) -> std::io::Result<String> {
        self.tx.send(msg.to_string()).unwrap();
        self.rx
            .recv_timeout(Duration::from_secs(5))
            .expect("connection thread answers")
    }
}
