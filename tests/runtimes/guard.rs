//! Cleanup that runs even when a test panics: daemons killed by PID, mounts detached,
//! links, namespaces, files and directories removed, in reverse order of creation.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

type Action = Box<dyn FnOnce() + Send>;

/// A stack of cleanup actions run last-in first-out on drop. Failures are printed, never
/// panicked on: a panic in drop during unwinding would abort and hide the real failure.
#[derive(Default)]
pub struct Defer {
    actions: Vec<(String, Action)>,
}

impl Defer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, what: impl Into<String>, action: impl FnOnce() + Send + 'static) {
        self.actions.push((what.into(), Box::new(action)));
    }

    /// Removes a link from the host if it still exists.
    pub fn link(&mut self, name: &str) {
        let name = name.to_string();
        self.push(format!("delete link {name}"), move || {
            if link_exists(&name) {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &name])
                    .status();
            }
        });
    }

    /// A new directory `/tmp/<prefix>…`, kept past its handle and removed (mounts below it
    /// first) when the deferred actions run.
    pub fn temp_dir(&mut self, prefix: &str) -> PathBuf {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("a temporary directory {prefix}… in /tmp: {e}"))
            .keep();
        self.remove_path(&dir);
        dir
    }

    pub fn remove_path(&mut self, path: &Path) {
        let path = path.to_path_buf();
        self.push(format!("remove {}", path.display()), move || {
            if path.is_dir() {
                unmount_under(&path);
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        });
    }

    /// Removes a cgroupfs directory (and its empty children) from every v1 hierarchy and
    /// the unified one. Only `rmdir`: a cgroup that still holds processes stays, loudly.
    pub fn cgroup(&mut self, name: &str) {
        let name = name.trim_start_matches('/').to_string();
        self.push(format!("remove cgroup /{name}"), move || {
            let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
                return;
            };
            for h in hierarchies.flatten() {
                let dir = h.path().join(&name);
                if dir.is_dir() {
                    rmdir_cgroup(&dir);
                }
            }
            if Path::new("/sys/fs/cgroup").join(&name).is_dir() {
                rmdir_cgroup(&Path::new("/sys/fs/cgroup").join(&name));
            }
        });
    }

    /// Removes `path` at the end if it does not exist now: for the few host paths a runtime
    /// creates whatever it is told (podman's blob-info cache under /var/lib/containers).
    pub fn restore_absent(&mut self, path: &Path) {
        if path.exists() {
            return;
        }
        let path = path.to_path_buf();
        self.push(
            format!("remove {} (absent before)", path.display()),
            move || {
                let _ = std::fs::remove_dir_all(&path);
            },
        );
    }

    /// Writes `contents` to a host path for the duration of the test; afterwards the old
    /// file is put back, or the file removed when there was none. Directories created on
    /// the way are removed again when empty.
    pub fn place_file(&mut self, path: &Path, contents: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let mut created_dirs = Vec::new();
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d.exists() {
                break;
            }
            created_dirs.push(d.to_path_buf());
            dir = d.parent();
        }
        let old = std::fs::read(path).ok();
        let old_mode = std::fs::metadata(path).map(|m| m.permissions().mode()).ok();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = path.to_path_buf();
        self.push(format!("restore {}", path.display()), move || {
            match (old, old_mode) {
                (Some(body), Some(mode)) => {
                    let _ = std::fs::write(&path, body);
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            // created_dirs is innermost first.
            for d in created_dirs {
                let _ = std::fs::remove_dir(d);
            }
        });
    }

    pub fn run_now(&mut self) {
        while let Some((what, action)) = self.actions.pop() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
            if outcome.is_err() {
                eprintln!("cleanup: `{what}` panicked; continuing with the rest");
            }
        }
    }
}

impl Drop for Defer {
    fn drop(&mut self) {
        self.run_now();
    }
}

/// A daemon this test started: SIGTERM, then SIGKILL after a grace period, then reaped.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            name: name.into(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Still running? (Reaps it if it exited, so a dead daemon is noticed early.)
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "cleanup: {} (pid {pid}) ignored SIGTERM, killing",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rmdir_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                rmdir_cgroup(&e.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("cleanup: rmdir {}: {e}", dir.display());
    }
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape_mountinfo(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount below `dir` (overlay rootfs, shm, netns bind mounts left by a
/// runtime that was killed), so the directory can be removed.
pub fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// PIDs whose command line contains `needle` as one argument (a unique socket or root
/// path of this test), excluding this process.
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .any(|arg| String::from_utf8_lossy(arg).contains(needle))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Kills the processes that carry this test's unique path in their arguments (containerd
/// shims, conmon) and whatever they still supervise.
pub fn kill_pids_with_arg(needle: &str) {
    for pid in pids_with_arg(needle) {
        for child in children_of(pid) {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}
