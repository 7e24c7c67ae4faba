//! A set of tc programs from one embedded object, pinned under the pin directory and
//! attached to interfaces in roles (which of the set's programs go on an interface): the
//! flannel fast path, the policy's host veths and the terway fast path are each one.
//! Load once and adopt what is pinned, switch attachments atomically when the code
//! changed, tcx links pinned under `<pin>/links/<prefix>_<hook>_<ifindex>`, clsact filters
//! at this set's fixed priority and handle otherwise (primitives in `tc.rs`), and a pinned
//! map recording `ifindex -> mode | role` so restarts and `remove_all` find everything.

use crate::bpffs;
use crate::cleanup::ReconcileReport;
use crate::error::{BpfError, Result};
use crate::fastpath::{load_object, AttachMode, Attachment};
use crate::iface;
use crate::layout::{hook_dir, Layout};
use crate::tc;
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use aya::programs::{SchedClassifier, TcAttachType};
use std::path::{Path, PathBuf};

/// Low byte of a `links` map value.
pub(crate) const MODE_TCX: u32 = 1;
pub(crate) const MODE_NETLINK: u32 = 2;
const MODE_MASK: u32 = 0xff;

/// A program set: what its object holds and where its attachments are recorded.
#[derive(Debug)]
pub(crate) struct Family {
    /// Programs and the hook each one takes.
    pub programs: &'static [(&'static str, TcAttachType)],
    /// Roles (a value above the low byte) and the indexes into `programs` they attach.
    pub roles: &'static [(u32, &'static [usize])],
    /// The pinned map recording attachments (in the object, pinned by name).
    pub links_map: &'static str,
    /// Prefix of this set's tcx link pins.
    pub link_prefix: &'static str,
    /// Priority and handle of this set's clsact filters: fixed, so any process can find
    /// and replace them. The priority orders sets sharing a hook (lower runs first).
    pub nl_priority: u16,
    pub nl_handle: u32,
    /// tcx: place the links first in the chain (ahead of the other sets) rather than last.
    pub tcx_first: bool,
}

impl Family {
    fn role_programs(&self, role: u32) -> &'static [usize] {
        self.roles
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| *p)
            .unwrap_or(&[])
    }

    fn tcx_pin(&self, layout: &Layout, ifindex: u32, hook: TcAttachType) -> PathBuf {
        let dir = hook_dir(hook);
        layout
            .links()
            .join(format!("{}_{dir}_{ifindex}", self.link_prefix))
    }

    /// The ifindex of one of this set's tcx link pins, from its file name.
    pub fn pin_ifindex(&self, file_name: &str) -> Option<u32> {
        let rest = file_name
            .strip_prefix(self.link_prefix)?
            .strip_prefix('_')?;
        let rest = rest
            .strip_prefix("ingress_")
            .or_else(|| rest.strip_prefix("egress_"))?;
        rest.parse().ok()
    }
}

/// Loaded (or opened) programs of a family and its attachment record.
pub(crate) struct ProgSet {
    pub layout: Layout,
    pub family: &'static Family,
    /// In the order of `family.programs`.
    pub progs: Vec<SchedClassifier>,
    pub links: BpfHashMap<MapData, u32, u32>,
    pub mode: AttachMode,
}

/// Opens the pinned programs of `family` under `layout` (in the order of
/// `family.programs`), nothing else.
pub(crate) fn open_programs(layout: &Layout, family: &Family) -> Result<Vec<SchedClassifier>> {
    let pin_dir = layout.root();
    let first = layout.program(family.programs[0].0);
    if !pin_dir.exists() || !first.exists() {
        if pin_dir.exists() && !bpffs::is_bpffs(pin_dir) {
            return Err(BpfError::NoBpffs {
                path: pin_dir.to_path_buf(),
                detail: "not on a bpf filesystem".into(),
            });
        }
        return Err(BpfError::NotLoaded { path: first });
    }
    let mut progs = Vec::new();
    for (name, _) in family.programs {
        let p = layout.program(name);
        if !p.exists() {
            return Err(BpfError::NotLoaded { path: p });
        }
        progs.push(
            SchedClassifier::from_pin(&p).map_err(|e| {
                BpfError::from_err(format!("open pinned program {}", p.display()), &e)
            })?,
        );
    }
    Ok(progs)
}

/// One recorded attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub ifindex: u32,
    pub how: Attachment,
    pub role: u32,
}

impl ProgSet {
    /// Loads `object` (the verifier runs here) with maps pinned by name, pins programs
    /// whose code changed (rename over the old pin, so `open` never sees a gap), and opens
    /// the result; switches existing attachments when a pinned program was replaced.
    pub fn load_or_adopt(
        pin_dir: &Path,
        mode: AttachMode,
        family: &'static Family,
        object: &[u8],
    ) -> Result<ProgSet> {
        let upgrade = Self::pin_programs(pin_dir, family, object)?;
        let mut set = Self::open(pin_dir, mode, family)?;
        if upgrade {
            tracing::info!(pin_dir = %pin_dir.display(), set = family.links_map, "eBPF programs changed; switching attachments");
            set.switch_attachments()?;
        }
        Ok(set)
    }

    /// The loading half of [`ProgSet::load_or_adopt`]; true when a pinned program was
    /// replaced (its attachments still run the old code).
    pub fn pin_programs(pin_dir: &Path, family: &Family, object: &[u8]) -> Result<bool> {
        let layout = Layout::new(pin_dir);
        bpffs::ensure_dir(pin_dir)?;
        for d in [layout.maps(), layout.progs(), layout.links()] {
            std::fs::create_dir_all(&d).map_err(|e| BpfError::Kernel {
                op: format!("create pin directory {}", d.display()),
                detail: e.to_string(),
            })?;
        }
        let names: Vec<&str> = family.programs.iter().map(|(n, _)| *n).collect();
        let mut ebpf = load_object(object, &names, &layout.maps())?;
        let mut upgrade = false;
        for name in &names {
            let fresh: &mut SchedClassifier = ebpf
                .program_mut(name)
                .expect("checked by load_object")
                .try_into()
                .expect("checked by load_object");
            let fresh_tag = fresh
                .info()
                .map_err(|e| BpfError::from_err("read the loaded program's info", &e))?
                .tag();
            let path = layout.program(name);
            let pinned_tag = match SchedClassifier::from_pin(&path) {
                Ok(p) => p.info().ok().map(|i| i.tag()),
                Err(_) => None,
            };
            if pinned_tag == Some(fresh_tag) {
                continue;
            }
            upgrade |= pinned_tag.is_some();
            // Pin next to the old one and rename over it, so a concurrent `open` never sees
            // the path missing. (bpffs refuses dots in names.)
            let tmp = layout.progs().join(format!("{name}_new"));
            let _ = std::fs::remove_file(&tmp);
            fresh
                .pin(&tmp)
                .map_err(|e| BpfError::from_err(format!("pin program at {}", tmp.display()), &e))?;
            std::fs::rename(&tmp, &path).map_err(|e| BpfError::Kernel {
                op: format!("move the program pin to {}", path.display()),
                detail: e.to_string(),
            })?;
        }
        Ok(upgrade)
    }

    /// Opens the pinned programs and the links map without loading anything.
    pub fn open(pin_dir: &Path, mode: AttachMode, family: &'static Family) -> Result<ProgSet> {
        let layout = Layout::new(pin_dir);
        let progs = open_programs(&layout, family)?;
        let links = BpfHashMap::try_from(Map::HashMap(open_map(&layout, family.links_map)?))
            .map_err(|e| BpfError::from_err(format!("use the {} map", family.links_map), &e))?;
        Ok(ProgSet {
            layout,
            family,
            progs,
            links,
            mode,
        })
    }

    /// The kernel's tag of program `i`.
    pub fn tag(&self, i: usize) -> Result<u64> {
        Ok(self.progs[i]
            .info()
            .map_err(|e| BpfError::from_err("read the pinned program's info", &e))?
            .tag())
    }

    /// Attaches the programs of `role` to `ifindex`. Idempotent; an interface that
    /// already carries them keeps its mechanism (tcx or clsact).
    pub fn attach(&mut self, ifindex: u32, role: u32) -> Result<Attachment> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        let recorded = self.links.get(&ifindex, 0).ok();
        let mode = match (self.mode, recorded.map(|v| v & MODE_MASK)) {
            // Keep an interface on the mechanism it already uses, or it would get both.
            (AttachMode::Auto, Some(MODE_NETLINK)) => AttachMode::Netlink,
            (AttachMode::Auto, Some(MODE_TCX)) => AttachMode::Tcx,
            (m, _) => m,
        };
        let progs = self.family.role_programs(role);
        let set = self.family.links_map;
        let got = tc::attach_with_fallback(
            self,
            mode,
            &name,
            set,
            |s| s.attach_all_tcx(progs, ifindex, &name),
            |s| s.attach_all_netlink(progs, &name),
        )?;
        let v = role
            | match got {
                Attachment::Tcx => MODE_TCX,
                Attachment::Netlink => MODE_NETLINK,
            };
        self.links
            .insert(ifindex, v, 0)
            .map_err(|e| BpfError::from_err(format!("record the attachment on {name}"), &e))?;
        Ok(got)
    }

    /// Whether every program of `role` is in the tcx chains of `ifindex`.
    pub fn tcx_attached(&self, ifindex: u32, role: u32) -> Result<bool> {
        let name = iface::name_of(ifindex).ok_or(BpfError::NoSuchInterface { ifindex })?;
        for &i in self.family.role_programs(role) {
            let (prog, hook) = self.family.programs[i];
            if !tc::tcx_has_program(&name, prog, hook)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Programs are attached last-first (egress companions before the ingress program
    /// that starts short-cutting or judging), i.e. in reverse order of the role's list.
    fn attach_all_tcx(&mut self, progs: &[usize], ifindex: u32, name: &str) -> Result<()> {
        for &i in progs.iter().rev() {
            self.attach_tcx(i, ifindex, name)?;
        }
        Ok(())
    }

    fn attach_tcx(&mut self, i: usize, ifindex: u32, name: &str) -> Result<()> {
        let (prog_name, hook) = self.family.programs[i];
        let pin = self.family.tcx_pin(&self.layout, ifindex, hook);
        let first = self.family.tcx_first;
        tc::attach_tcx(&mut self.progs[i], prog_name, name, hook, first, &pin)
    }

    fn attach_all_netlink(&mut self, progs: &[usize], name: &str) -> Result<()> {
        tc::add_clsact(name)?;
        let f = self.family;
        for &i in progs.iter().rev() {
            let (prog_name, hook) = f.programs[i];
            tc::attach_netlink(
                &mut self.progs[i],
                prog_name,
                name,
                hook,
                f.nl_priority,
                f.nl_handle,
            )?;
        }
        Ok(())
    }

    /// Removes every program of the set from `ifindex`. Not an error when nothing is
    /// attached or the interface is gone (the kernel drops attachments with it).
    pub fn detach(&mut self, ifindex: u32) -> Result<()> {
        let recorded = self.links.get(&ifindex, 0).ok();
        let name = iface::name_of(ifindex);
        // In the family's order: ingress before the egress side stops recording.
        for (prog_name, hook) in self.family.programs {
            let pin = self.family.tcx_pin(&self.layout, ifindex, *hook);
            if pin.exists() {
                tc::unpin_tcx_link(&pin)?;
            }
            let Some(name) = &name else { continue };
            // Also where the record says tcx or nothing: a filter may have been attached
            // by a process that died before recording it.
            match tc::detach_netlink(name, *hook, prog_name) {
                Ok(()) => {}
                // Without a clsact qdisc the filter dump fails; nothing of ours is there.
                Err(_) if recorded.map(|v| v & MODE_MASK) != Some(MODE_NETLINK) => {}
                Err(e) => {
                    return Err(BpfError::from_err(
                        format!("remove the {prog_name} filter from {name}"),
                        &e,
                    ))
                }
            }
        }
        match self.links.remove(&ifindex) {
            Ok(()) => Ok(()),
            Err(e) if tc::errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(BpfError::from_err(
                format!("forget the attachment on ifindex {ifindex}"),
                &e,
            )),
        }
    }

    pub fn attachments(&self) -> Result<Vec<Recorded>> {
        let mut out = Vec::new();
        for item in self.links.iter() {
            let (ifindex, v) = item.map_err(|e| BpfError::from_err("list attachments", &e))?;
            out.push(Recorded {
                ifindex,
                how: if v & MODE_MASK == MODE_NETLINK {
                    Attachment::Netlink
                } else {
                    Attachment::Tcx
                },
                role: v & !MODE_MASK,
            });
        }
        out.sort_by_key(|r| r.ifindex);
        Ok(out)
    }

    /// [`ProgSet::attachments`] without the roles, for sets of one role.
    pub fn interfaces(&self) -> Result<Vec<(u32, Attachment)>> {
        Ok(self
            .attachments()?
            .into_iter()
            .map(|r| (r.ifindex, r.how))
            .collect())
    }

    /// After an upgrade: every attachment to the newly pinned programs, without a gap.
    pub fn switch_attachments(&mut self) -> Result<()> {
        let f = self.family;
        for r in self.attachments()? {
            let Some(name) = iface::name_of(r.ifindex) else {
                continue;
            };
            for &i in f.role_programs(r.role).iter().rev() {
                let (prog_name, hook) = f.programs[i];
                let link = match r.how {
                    Attachment::Tcx => {
                        let pin = f.tcx_pin(&self.layout, r.ifindex, hook);
                        match tc::pinned_tcx_link(&pin)? {
                            Some(link) => link,
                            None => {
                                // Attached by an older version without this hook: add it.
                                self.attach_tcx(i, r.ifindex, &name)?;
                                continue;
                            }
                        }
                    }
                    Attachment::Netlink => {
                        tc::netlink_link(&name, hook, f.nl_priority, f.nl_handle)?
                    }
                };
                let what = format!("{name}'s {prog_name}");
                tc::switch_link(&mut self.progs[i], link, &what, r.how)?;
            }
        }
        Ok(())
    }

    /// Forgets attachments of interfaces that are gone (and their tcx pins); a family with
    /// one role also records the tcx pins that lost their record (there is only one thing
    /// they can be). Endpoints are the caller's business.
    pub fn reconcile_links(&mut self) -> Result<ReconcileReport> {
        let (mut kept, mut removed) = (0, 0);
        for r in self.attachments()? {
            if iface::exists(r.ifindex) {
                kept += 1;
            } else {
                self.detach(r.ifindex)?;
                removed += 1;
            }
        }
        let adopt_role = match self.family.roles {
            [(role, _)] => Some(*role),
            _ => None,
        };
        let dir = self.layout.links();
        let entries = std::fs::read_dir(&dir).map_err(|e| BpfError::Kernel {
            op: format!("list {}", dir.display()),
            detail: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(ifindex) = self.family.pin_ifindex(&file) else {
                continue;
            };
            if !iface::exists(ifindex) {
                tc::unpin_tcx_link(&entry.path())?;
                removed += 1;
            } else if let (Some(role), Err(_)) = (adopt_role, self.links.get(&ifindex, 0)) {
                self.links
                    .insert(ifindex, role | MODE_TCX, 0)
                    .map_err(|e| BpfError::from_err("record an adopted tcx link", &e))?;
                kept += 1;
            }
        }
        Ok(ReconcileReport {
            kept_attachments: kept,
            removed_attachments: removed,
            removed_endpoints: 0,
        })
    }
}

pub(crate) fn open_map(layout: &Layout, name: &str) -> Result<MapData> {
    let p = layout.map(name);
    MapData::from_pin(&p)
        .map_err(|e| BpfError::from_err(format!("open pinned map {}", p.display()), &e))
}

/// For `remove_all`: removes the clsact filters a family's links map records (tcx links go
/// with their pins). Failures are collected, not fatal.
pub(crate) fn remove_netlink_filters(layout: &Layout, family: &Family, failures: &mut Vec<String>) {
    let Ok(md) = MapData::from_pin(layout.map(family.links_map)) else {
        return;
    };
    let Ok(links) = BpfHashMap::<MapData, u32, u32>::try_from(Map::HashMap(md)) else {
        return;
    };
    for (ifindex, v) in links.iter().flatten() {
        if v & MODE_MASK != MODE_NETLINK {
            continue;
        }
        let Some(name) = iface::name_of(ifindex) else {
            continue;
        };
        for (prog, hook) in family.programs {
            if let Err(e) = tc::detach_netlink(&name, *hook, prog) {
                failures.push(format!("{name} {prog}: {e}"));
            }
        }
    }
}
