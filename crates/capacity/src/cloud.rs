//! Planning inputs from the cloud API (feature `cloud`, `unicni plan --from-cloud`): the
//! ENI limits of the configured instance types and the free addresses of the configured
//! vSwitches.

use crate::{CapacityError, InstanceTypeLimits, InstanceTypeTable, VSwitch};
use unicni_cloud::Cloud;
use unicni_config::Config;

/// What the cloud API says about `config`'s terway instance types
/// (DescribeInstanceTypes) and vSwitches (DescribeVSwitches; none asked when the config
/// names none).
pub async fn describe(
    cloud: &dyn Cloud,
    config: &Config,
) -> Result<(InstanceTypeTable, Vec<VSwitch>), CapacityError> {
    let api = |action: &'static str| {
        move |e| CapacityError::Cloud {
            action,
            source: Box::new(e),
        }
    };
    let limits = cloud
        .describe_instance_types(&config.terway.instance_types)
        .await
        .map_err(api("DescribeInstanceTypes"))?;
    let table = InstanceTypeTable::from_limits(
        limits
            .into_iter()
            .map(|l| InstanceTypeLimits {
                name: l.instance_type,
                enis: l.eni_quantity.into(),
                ipv4_per_eni: l.ipv4_per_eni.into(),
                ipv6_per_eni: l.ipv6_per_eni.into(),
            })
            .collect(),
        "cloud API (DescribeInstanceTypes)",
    );
    let mut vswitches = Vec::new();
    if !config.terway.vswitches.is_empty() {
        for v in cloud
            .describe_vswitches(None, &config.terway.vswitches)
            .await
            .map_err(api("DescribeVSwitches"))?
        {
            vswitches.push(VSwitch {
                cidr: v.cidr.parse().map_err(|_| CapacityError::CloudAnswer {
                    message: format!("vSwitch {} has an unreadable CIDR {:?}", v.id, v.cidr),
                })?,
                id: v.id,
                zone: v.zone_id,
                free_ips: v.available_ip_count,
            });
        }
    }
    Ok((table, vswitches))
}
