//! The judge nobody here wrote: the vendor's official Python SDKs (installed by
//! scripts/setup.sh into a virtual environment) drive the emulator, signing V2 (core SDK)
//! and V3 (Tea SDK): they must understand its refusal of a wrong secret
//! (tests/sdk/signatures.py), and every error code, both paging styles, the ENI lifecycle
//! through Deleting and the route entries (tests/sdk/contract.py).

use std::path::{Path, PathBuf};
use std::process::Command;
use unicni_cloud_sim::*;

const KEY: &str = "sdk-key";
const SECRET: &str = "sdk-secret-value";

/// The venv's python: `UNICNI_SDK_VENV` or the setup script's default. Absent, the test
/// skips, except under CI where the setup script must have made it.
fn sdk_python() -> Option<PathBuf> {
    let venv = std::env::var_os("UNICNI_SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/unicni-sdk-venv"));
    let py = venv.join("bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the vendor SDK virtual environment {} is missing in CI: run scripts/setup.sh",
        venv.display()
    );
    eprintln!(
        "skipping: no vendor SDK virtual environment at {} (run scripts/setup.sh or set UNICNI_SDK_VENV)",
        venv.display()
    );
    None
}

/// Runs `tests/sdk/<script>` against `sim` and asserts it passed every check.
async fn run_script(python: PathBuf, sim: CloudSim, script: &str) {
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let port = running.addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .args(["127.0.0.1", &port, KEY, SECRET])
            .output()
            .expect("run the SDK script")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "the vendor's SDKs disagree with the emulator:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    running.stop().await;
}

fn keys() -> Vec<AccessKey> {
    vec![AccessKey {
        access_key_id: KEY.into(),
        access_key_secret: SECRET.into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdks_sign_both_ways_and_parse_the_refusal() {
    let Some(python) = sdk_python() else { return };
    let cfg = SimConfig {
        credentials: keys(),
        ..Default::default()
    };
    run_script(python, CloudSim::new(cfg, None).unwrap(), "signatures.py").await;
}

fn vswitch(id: &str, cidr: &str, ipv6: Option<&str>) -> VSwitchSpec {
    VSwitchSpec {
        id: id.into(),
        zone: "cn-hangzhou-a".into(),
        cidr: cidr.into(),
        ipv6_cidr: ipv6.map(String::from),
    }
}

fn instance(id: &str) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        instance_type: "ecs.g7.large".into(),
        vswitch_id: "vsw-a".into(),
        primary_ip: None,
        metadata_addresses: vec![],
        ram_role: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdks_drive_errors_paging_lifecycle_and_routes() {
    let Some(python) = sdk_python() else { return };
    let cfg = SimConfig {
        credentials: keys(),
        vswitches: vec![
            vswitch("vsw-a", "192.168.0.0/24", Some("2408:4000:1:100::/64")),
            vswitch("vsw-tiny-core", "192.168.9.0/29", None),
            vswitch("vsw-tiny-tea", "192.168.9.8/29", None),
            vswitch("vsw-seed", "192.168.64.0/22", None),
        ],
        instances: vec![instance("i-core"), instance("i-tea")],
        attach_delay_ms: 200,
        detach_delay_ms: 200,
        delete_delay_ms: 500,
        route_pending_ms: 300,
        ..Default::default()
    };
    let sim = CloudSim::new(cfg, None).unwrap();
    // More than two pages of 10 for the paging walks.
    sim.with_state(false, |st| {
        for _ in 0..23 {
            st.create_eni_record(
                "vsw-seed",
                None,
                0,
                0,
                vec!["sg-sim".into()],
                vec![],
                "Secondary",
            )
            .unwrap();
        }
    });
    run_script(python, sim, "contract.py").await;
}
