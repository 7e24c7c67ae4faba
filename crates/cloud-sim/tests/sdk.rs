//! The judge nobody here wrote: the vendor's official Python SDKs (installed by
//! scripts/setup.sh into a virtual environment) drive the emulator, signing V2 (core SDK)
//! and V3 (Tea SDK), and must understand its refusal of a wrong secret.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdks_sign_both_ways_and_parse_the_refusal() {
    let Some(python) = sdk_python() else { return };
    let cfg = SimConfig {
        credentials: vec![AccessKey {
            access_key_id: KEY.into(),
            access_key_secret: SECRET.into(),
        }],
        ..Default::default()
    };
    let sim = CloudSim::new(cfg, None).unwrap();
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/signatures.py");
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
    running.stop().await;
}
