//! The terway node agent in the agent runtime, against the cloud emulator: an instance
//! type that cannot host the mode keeps the node not ready, `/readyz` says why, and
//! `/metrics` serves the pool's families with the runtime's in one OpenMetrics exposition.
//! No root needed: the agent stops before it touches the node.

mod common;

use common::BIN;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Status line and headers, and body, of `GET path`; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

#[test]
fn terway_not_ready_says_why_and_metrics_are_one_openmetrics_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = common::sim::start_zone(d, None, &[("i-small", "ecs.g6.large")]);
    let port = common::free_port();
    let config = common::agent::write_config(
        d,
        format!(
            "[backend]\nkind = \"terway\"\n[terway]\nmode = \"shared-eni\"\n\
             vswitches = [\"vsw-pod\"]\npod_info_dir = \"{d}/pods\"\n\
             [store]\nkind = \"file\"\npath = \"{d}/store\"\n\
             [node]\nname = \"n1\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\
             [agent]\nlisten = \"127.0.0.1:{port}\"\n\
             [cloud]\nregion = \"cn-hangzhou\"\nendpoint = \"{e}\"\n\
             metadata_endpoint = \"{e}/instances/i-small\"\n\
             access_key_id = \"unicni-sim\"\naccess_key_secret = \"unicni-sim-secret\"\n",
            d = d.display(),
            e = sim.endpoint,
        ),
    );
    let log = d.join("agent.log");
    let _agent = common::KillOnDrop(
        Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // The pool never starts: the reason replaces "the ENI pool is starting".
    let until = Instant::now() + Duration::from_secs(20);
    let (head, body) = loop {
        if let Some((head, body)) = get(port, "/readyz") {
            if body.contains("ecs.g6.large") {
                break (head, body);
            }
        }
        assert!(
            Instant::now() < until,
            "no reason on /readyz; agent log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        body.starts_with("not ready: ") && body.contains("more than 11"),
        "{body}"
    );

    let (head, body) = get(port, "/metrics").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    for line in [
        "unicni_agent_ready 0",
        // Known from the instance type even when it cannot host the mode: (3 - 1) x 3.
        "unicni_agent_pod_capacity 6",
        "# TYPE unicni_agent_enis gauge",
        "unicni_agent_pool_idle 0",
        "unicni_agent_pool_in_use 0",
        "unicni_agent_fixed_ip_holds 0",
        "unicni_agent_pool_maintain_errors 0",
        "# TYPE unicni_agent_pool_vswitches_exhausted gauge",
        "unicni_agent_pool_vswitches_exhausted 0",
        "unicni_agent_pool_eni_quota_exhausted 0",
        "unicni_agent_fast_path 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
    }
    assert!(!body.contains("unicni_policy_"), "policy is off:\n{body}");
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (head, body) = get(port, "/healthz").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && body == "ok\n",
        "{head}\n{body}"
    );
}
