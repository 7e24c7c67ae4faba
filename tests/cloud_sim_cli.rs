//! `unicni cloud-sim --profile` and the lab's `--cloud-profile`, through the binary.

use std::process::{Command, Output};

fn unicni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unicni"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn cloud_sim_profile_is_selectable_and_checked() {
    for p in ["default", "none", "realistic"] {
        let out = unicni(&["cloud-sim", "--profile", p, "--print-config"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("profile = \"{p}\"")), "{text}");
    }
    // Without the flag the config's profile (default) holds.
    let out = unicni(&["cloud-sim", "--print-config"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("profile = \"default\""));
    let out = unicni(&["cloud-sim", "--profile", "fast", "--print-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default, none, realistic"), "{err}");
}

#[test]
fn lab_commands_that_run_the_emulator_take_a_cloud_profile() {
    for cmd in [
        &["lab", "up", "--cloud-profile", "fast"][..],
        &["lab", "run", "--cloud-profile", "fast"][..],
        &["lab", "bench", "--cloud-profile", "fast"][..],
        &["lab", "bench-add", "--cloud-profile", "fast"][..],
    ] {
        // An unknown profile is refused by the parser, before anything is built.
        let out = unicni(cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--cloud-profile") && err.contains("default, none, realistic"),
            "{cmd:?}: {err}"
        );
    }
}
