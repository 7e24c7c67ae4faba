//! Container images without a registry: a busybox-static rootfs as a tar layer, and the
//! same layer wrapped by hand in an OCI image layout that `ctr image import` accepts.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const BUSYBOX: &str = "/bin/busybox";

/// The image every runtime test uses (sandbox "pause" image and workload alike).
pub const IMAGE_REF: &str = "registry.unicni.test/busybox:test";

/// An uncompressed tar of a root filesystem: `/bin/busybox`, one symlink per applet, and
/// the directories a runtime mounts over.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX} (install busybox-static): {e}"));
    let list = crate::runtimes::util::sh(BUSYBOX, &["--list"]);
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for dir in [
        "bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        builder
            .append_data(&mut h, format!("{dir}/"), std::io::empty())
            .expect("tar: directory");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    builder
        .append_data(&mut h, "bin/busybox", busybox.as_slice())
        .expect("tar: busybox");
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        builder
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("tar: applet link");
    }
    // Name resolution files a runtime bind-mounts over; present so the mounts have targets.
    for (file, body) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/resolv.conf", ""),
        ("etc/hostname", "busybox\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        builder
            .append_data(&mut h, file, body.as_bytes())
            .expect("tar: etc file");
    }
    builder.into_inner().expect("tar: finish")
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An OCI image layout (as a tar) holding one image named `name`, whose layer is `layer`
/// and whose default command is `cmd`.
pub fn oci_layout_tar(layer: &[u8], name: &str, cmd: &[&str]) -> Vec<u8> {
    let layer_digest = sha256(layer);
    let config = serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Cmd": cmd,
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let tag = name.rsplit(':').next().unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .unwrap();

    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        builder.append_data(&mut h, path, data).expect("tar: oci");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for (digest, data) in [
        (&layer_digest, layer),
        (&config_digest, config.as_slice()),
        (&manifest_digest, manifest.as_slice()),
    ] {
        add(
            format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            data,
        );
    }
    builder.into_inner().expect("tar: finish")
}

/// Writes both tarballs into `dir`: `rootfs.tar` (for `podman import`) and
/// `image.oci.tar` (for `ctr image import`). Returns their paths.
pub fn write_images(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let layer = busybox_rootfs_tar();
    let oci = oci_layout_tar(&layer, IMAGE_REF, &["/bin/sleep", "infinity"]);
    let rootfs = dir.join("rootfs.tar");
    let image = dir.join("image.oci.tar");
    std::fs::write(&rootfs, &layer).expect("write rootfs.tar");
    std::fs::write(&image, &oci).expect("write image.oci.tar");
    (rootfs, image)
}
