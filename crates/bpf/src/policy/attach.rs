//! Attaching the policy programs to a pod's host veth (both hooks), in front of anything
//! else there: tcx links placed first in the chain (pinned under `<pin>/policy/links/`),
//! or cls_bpf filters on the clsact qdisc at a priority below the fast path's. The host
//! veth side is a program set of one role (`progset.rs`); interfaces inside pods use the
//! same primitives (`tc.rs`) with their own pins and no record.

use super::{PolicyDatapath, HOOKS};
use crate::error::{BpfError, Result};
use crate::fastpath::{AttachMode, Attachment};
use crate::iface::index_of;
use crate::layout::Layout;
use crate::progset::Family;
use crate::tc;
use aya::programs::{SchedClassifier, TcAttachType};
use std::path::Path;

/// The one role of the host veths: both programs.
const ROLE: u32 = 0;

/// Pins `<pin>/policy/links/tcx_{ingress,egress}_<ifindex>` and `policy_links` values 1
/// (tcx) and 2 (clsact) predate the program sets; the prefix and role 0 keep them what
/// they are. First in the tcx chain, and a clsact priority below the fast path's 0x2000:
/// a packet the policy drops never reaches a redirect.
pub(crate) static FAMILY: Family = Family {
    programs: &HOOKS,
    roles: &[(ROLE, &[0, 1])],
    links_map: super::maps::LINKS,
    link_prefix: "tcx",
    nl_priority: 0x1000,
    nl_handle: 0x7563_0002,
    tcx_first: true,
};

impl PolicyDatapath {
    /// Attaches both programs to `ifindex` (a pod's host veth, in this thread's network
    /// namespace). Idempotent.
    pub fn attach(&mut self, ifindex: u32) -> Result<Attachment> {
        // Into the pod first, then out of it (the set attaches in reverse): a reply is
        // never judged before its request.
        self.set.attach(ifindex, ROLE)
    }

    /// Whether both programs are in the tcx chains of `ifindex`, and first there.
    pub fn tcx_attached_first(&self, ifindex: u32) -> Result<bool> {
        let name = crate::iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        tc::tcx_first(&name, HOOKS)
    }

    /// Removes both programs from `ifindex`; not an error when they are not there.
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        self.set.detach(ifindex)
    }

    /// Interfaces carrying the programs, as recorded in `policy_links`.
    pub fn attachments(&self) -> Result<Vec<(u32, Attachment)>> {
        self.set.interfaces()
    }

    /// Forgets attachments of interfaces that no longer exist, records tcx pins that
    /// lost their record, and removes the pins of pod interfaces whose pod's host veth is
    /// gone. Returns (kept, removed).
    pub fn reconcile(&mut self) -> Result<(usize, usize)> {
        let pods = self.prune_pod_interfaces()?;
        let r = self.set.reconcile_links()?;
        Ok((r.kept_attachments, r.removed_attachments + pods))
    }
}

/// Prefix of the tcx link pins of interfaces inside pods' namespaces:
/// `pod_<key>_{ingress,egress}`.
const POD_PIN_PREFIX: &str = "pod_";

/// The programs on an interface inside a pod's namespace, each with its hook: there tc
/// ingress is what is delivered to the pod and tc egress what the pod sends (the reverse
/// of a host veth). `enforce` does not care, the names only say which way the packet goes.
const POD_HOOKS: [(usize, TcAttachType); 2] =
    [(1, TcAttachType::Ingress), (0, TcAttachType::Egress)];

fn pod_pin(layout: &Layout, key: &str, hook: TcAttachType) -> std::path::PathBuf {
    let dir = crate::layout::hook_dir(hook);
    layout.links().join(format!("{POD_PIN_PREFIX}{key}_{dir}"))
}

/// The key and hook of a pod-interface pin, from its file name.
fn pod_pin_key(file_name: &str) -> Option<(&str, TcAttachType)> {
    let rest = file_name.strip_prefix(POD_PIN_PREFIX)?;
    if let Some(key) = rest.strip_suffix("_ingress") {
        Some((key, TcAttachType::Ingress))
    } else {
        rest.strip_suffix("_egress")
            .map(|key| (key, TcAttachType::Egress))
    }
}

/// A key must name one pin file, nothing else.
fn valid_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(BpfError::Kernel {
            op: "name a pod interface's policy attachment".into(),
            detail: format!("{key:?} is not a valid key (letters, digits, '-', '.')"),
        });
    }
    Ok(())
}

/// The two policy programs, opened from their pins and nothing else: what attaching them
/// to interfaces inside pods needs (the exclusive-ENI datapath's ADD, the agent's pass over
/// running pods).
pub struct PodPrograms {
    layout: Layout,
    progs: Vec<SchedClassifier>,
    mode: AttachMode,
}

impl PodPrograms {
    /// Opens the programs the agent pinned under `pin_dir` (its pin directory).
    pub fn open(pin_dir: &Path) -> Result<PodPrograms> {
        Self::open_with(pin_dir, AttachMode::Auto)
    }

    pub fn open_with(pin_dir: &Path, mode: AttachMode) -> Result<PodPrograms> {
        let layout = Layout::new(&super::policy_dir(pin_dir));
        let progs = crate::progset::open_programs(&layout, &FAMILY)?;
        Ok(PodPrograms {
            layout,
            progs,
            mode,
        })
    }

    /// Attaches both programs to `ifname` in the calling thread's network namespace: an
    /// interface inside a pod's namespace that carries the pod's traffic past every host
    /// link (an exclusive-ENI pod's ENI). tc ingress gets `uc_pol_to_pod`, tc egress
    /// `uc_pol_from_pod`, first in the chain (tcx) or at the policy's clsact priority.
    /// tcx links are pinned as `<pin>/policy/links/pod_<key>_{ingress,egress}`; nothing
    /// goes into `policy_links` (an index of another namespace means nothing here). `key`
    /// names the pod's attachment on the node (the exclusive-ENI datapath uses the pod's
    /// host veth name, so [`PolicyDatapath::reconcile`] removes the pins of pods whose
    /// veth is gone). Idempotent. Call it on a thread inside the pod's namespace: tcx and
    /// netlink resolve the interface in the caller's namespace.
    pub fn attach(&mut self, key: &str, ifname: &str) -> Result<Attachment> {
        valid_key(key)?;
        index_of(ifname).ok_or_else(|| BpfError::Kernel {
            op: format!("attach the policy programs to {ifname}"),
            detail: "no such interface in this network namespace".into(),
        })?;
        tc::attach_with_fallback(
            self,
            self.mode,
            ifname,
            FAMILY.links_map,
            |s| s.attach_tcx(key, ifname),
            |s| {
                for (_, hook) in POD_HOOKS {
                    let pin = pod_pin(&s.layout, key, hook);
                    if pin.exists() {
                        let _ = tc::unpin_tcx_link(&pin);
                    }
                }
                s.attach_netlink(ifname)
            },
        )
    }

    fn attach_tcx(&mut self, key: &str, ifname: &str) -> Result<()> {
        for (i, hook) in POD_HOOKS {
            let pin = pod_pin(&self.layout, key, hook);
            tc::attach_tcx(&mut self.progs[i], HOOKS[i].0, ifname, hook, true, &pin)?;
        }
        Ok(())
    }

    fn attach_netlink(&mut self, ifname: &str) -> Result<()> {
        tc::add_clsact(ifname)?;
        for (i, hook) in POD_HOOKS {
            let (prio, handle) = (FAMILY.nl_priority, FAMILY.nl_handle);
            tc::attach_netlink(&mut self.progs[i], HOOKS[i].0, ifname, hook, prio, handle)?;
        }
        Ok(())
    }
}

/// Whether the pod interface `key` carries the programs by tcx (both its link pins exist
/// under `pin_dir`, the agent's pin directory). A look at two files, nothing more.
pub fn pod_interface_pinned(pin_dir: &Path, key: &str) -> bool {
    if valid_key(key).is_err() {
        return false;
    }
    let layout = Layout::new(&super::policy_dir(pin_dir));
    POD_HOOKS
        .iter()
        .all(|&(_, hook)| pod_pin(&layout, key, hook).exists())
}

impl PolicyDatapath {
    /// Keys of the pod interfaces carrying the programs by tcx (their pins).
    pub fn pod_interfaces(&self) -> Vec<String> {
        pod_interface_keys(self.set.layout.root())
    }

    /// Whether both programs are first in the tcx chains of `ifname` (calling thread's
    /// namespace), each on its pod-side hook.
    pub fn pod_interface_tcx_first(ifname: &str) -> Result<bool> {
        tc::tcx_first(ifname, POD_HOOKS.map(|(i, hook)| (HOOKS[i].0, hook)))
    }

    /// Removes the pins (tcx links) of pod interfaces whose key is not an interface of the
    /// calling thread's namespace (the node's): their pod is gone. Returns how many.
    fn prune_pod_interfaces(&self) -> Result<usize> {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(self.set.layout.links()) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, _)) = pod_pin_key(&name) else {
                continue;
            };
            if index_of(key).is_none() {
                tc::unpin_tcx_link(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// After an upgrade: the pod interfaces' tcx links to the new programs, in place.
    /// (clsact filters inside pods cannot be reached from here; they keep the old build
    /// until their pod is re-created.)
    pub(super) fn switch_pod_interfaces(&mut self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(self.set.layout.links()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, hook)) = pod_pin_key(&name) else {
                continue;
            };
            let i = if hook == TcAttachType::Ingress { 1 } else { 0 };
            let Some(link) = tc::pinned_tcx_link(&entry.path())? else {
                continue;
            };
            tc::switch_link(&mut self.set.progs[i], link, &name, Attachment::Tcx)?;
        }
        Ok(())
    }
}

fn pod_interface_keys(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(Layout::new(root).links())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            pod_pin_key(&name).map(|(k, _)| k.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Removes the programs from a pod interface attached with
/// [`PolicyDatapath::attach_pod_interface`]: its tcx link pins (detached before this
/// returns), and, when `ifname` is given, the clsact filters on that interface in the
/// calling thread's namespace. Nothing there (or no policy pinned at all) is not an error.
pub fn detach_pod_interface(pin_dir: &Path, key: &str, ifname: Option<&str>) -> Result<()> {
    valid_key(key)?;
    let layout = Layout::new(&super::policy_dir(pin_dir));
    for (i, hook) in POD_HOOKS {
        let pin = pod_pin(&layout, key, hook);
        if pin.exists() {
            tc::unpin_tcx_link(&pin)?;
        }
        let Some(ifname) = ifname else { continue };
        if index_of(ifname).is_none() {
            continue;
        }
        // An error here means no filter of ours, or no clsact qdisc at all.
        let _ = tc::detach_netlink(ifname, hook, HOOKS[i].0);
    }
    Ok(())
}

/// Removes the policy under `pin_dir` (the agent's pin directory): its clsact filters,
/// its tcx links and every pin of `<pin_dir>/policy`. Nothing there is not an error.
pub fn remove_all(pin_dir: &Path) -> Result<()> {
    let root = super::policy_dir(pin_dir);
    if !root.exists() {
        return Ok(());
    }
    let layout = Layout::new(&root);
    let mut failures = Vec::new();
    crate::progset::remove_netlink_filters(&layout, &FAMILY, &mut failures);
    tc::unpin_all(&layout.links(), &mut failures);
    std::fs::remove_dir_all(&root).map_err(|e| BpfError::Kernel {
        op: format!("remove {}", root.display()),
        detail: e.to_string(),
    })?;
    if !failures.is_empty() {
        return Err(BpfError::Kernel {
            op: "detach the policy programs everywhere".into(),
            detail: format!(
                "{}; remove them with `tc filter del dev <if> ingress pref {}` (and egress)",
                failures.join(", "),
                FAMILY.nl_priority
            ),
        });
    }
    Ok(())
}
