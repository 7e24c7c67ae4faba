//! Moving a link between namespaces, renaming it, and the alias that lets a later
//! process recognise a link it moved without any saved state.

use crate::{NetError, NetNs, Netlink, Result};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::LinkUnspec;

fn alias_of(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

impl Netlink {
    pub async fn set_down(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(|e| NetError::netlink("set link down", self.obj(index), e))
    }

    /// Renames link `index` (it must be down). `name` may be a pattern such as `eth%d`.
    pub async fn rename_link(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .name(name.to_string())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink("rename link", self.obj(format!("{index} to {name}")), e)
            })
    }

    /// Sets (or, with an empty string, clears) the alias of link `index`.
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).alias(alias).build())
            .execute()
            .await
            .map_err(|e| NetError::netlink("set link alias", self.obj(index), e))
    }

    /// Moves link `index` into `target`, named `name` there when given (the kernel
    /// renames it after the move; a pattern such as `eth%d` picks a free name) and with
    /// `alias` set there when given (empty clears it). The link arrives down and without
    /// addresses. The move happens before the rename: when the rename fails the link is
    /// in `target` under its old name.
    pub async fn move_link(
        &self,
        index: u32,
        target: &NetNs,
        name: Option<&str>,
        alias: Option<&str>,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).setns_by_fd(target.raw_fd());
        if let Some(n) = name {
            b = b.name(n.to_string());
        }
        if let Some(a) = alias {
            b = b.alias(a);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    "move link",
                    self.obj(format!("{index} to {}", target.path().display())),
                    e,
                )
            })
    }

    /// `(index, alias)` of every link that has an alias.
    pub async fn link_aliases(&self) -> Result<Vec<(u32, String)>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_filter_map(|m| async move { Ok(alias_of(&m).map(|a| (m.header.index, a))) })
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list link aliases", self.obj("all"), e))
    }
}
