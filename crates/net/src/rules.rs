//! Policy-routing rules (`ip rule`): which table a packet looks up, chosen by its source
//! or destination address.

use crate::{NetError, Netlink, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::RouteHeader;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::IpVersion;

pub use crate::routes::TABLE_MAIN;

/// A "lookup table" rule. `src`/`dst` absent means "any"; both absent makes an IPv4 rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub table: u32,
}

impl Rule {
    pub fn family(&self) -> AddressFamily {
        match self.src.or(self.dst) {
            Some(IpNet::V6(_)) => AddressFamily::Inet6,
            _ => AddressFamily::Inet,
        }
    }

    fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = self.family();
        m.header.action = RuleAction::ToTable;
        if self.table > 255 {
            m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        } else {
            m.header.table = self.table as u8;
        }
        m.attributes.push(RuleAttribute::Table(self.table));
        m.attributes.push(RuleAttribute::Priority(self.priority));
        if let Some(src) = self.src {
            m.header.src_len = src.prefix_len();
            m.attributes.push(RuleAttribute::Source(src.addr()));
        }
        if let Some(dst) = self.dst {
            m.header.dst_len = dst.prefix_len();
            m.attributes.push(RuleAttribute::Destination(dst.addr()));
        }
        m
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {}:", self.priority)?;
        if let Some(s) = self.src {
            write!(f, " from {s}")?;
        }
        if let Some(d) = self.dst {
            write!(f, " to {d}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

impl Netlink {
    /// Adds `rule`; an identical rule already present is success (the kernel would
    /// otherwise happily keep duplicates, so this never asks it to replace).
    pub async fn add_rule(&self, rule: &Rule) -> Result<()> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule.message();
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetError::netlink("add rule", self.obj(rule), e);
                if err.is_exists() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Deletes `rule`; a missing rule is success.
    pub async fn delete_rule(&self, rule: &Rule) -> Result<()> {
        match self.handle.rule().del(rule.message()).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetError::netlink("delete rule", self.obj(rule), e);
                if err.is_not_found() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The "lookup table" rules of one family (other actions are left out).
    pub async fn rules(&self, family: AddressFamily) -> Result<Vec<Rule>> {
        let version = if family == AddressFamily::Inet6 {
            IpVersion::V6
        } else {
            IpVersion::V4
        };
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list rules", self.obj("all"), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.action == RuleAction::ToTable)
            .map(|m| {
                let mut rule = Rule {
                    priority: 0,
                    src: None,
                    dst: None,
                    table: m.header.table as u32,
                };
                for a in &m.attributes {
                    match a {
                        RuleAttribute::Priority(p) => rule.priority = *p,
                        RuleAttribute::Table(t) => rule.table = *t,
                        RuleAttribute::Source(ip) => {
                            rule.src = IpNet::new(*ip, m.header.src_len).ok()
                        }
                        RuleAttribute::Destination(ip) => {
                            rule.dst = IpNet::new(*ip, m.header.dst_len).ok()
                        }
                        _ => {}
                    }
                }
                rule
            })
            .collect())
    }
}
