//! Typed cloud errors. The vendor's error code is mapped once, here, so callers (the ENI
//! pool, the route controller) branch on a variant and never on a string.

use std::time::Duration;

/// What the API said, kept on every API-originated variant for logs and support tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub action: String,
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub http_status: u16,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {} (HTTP {}): {} [RequestId {}]",
            self.action, self.code, self.http_status, self.message, self.request_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The vSwitch has no free address (ECS AssignPrivateIpAddresses and
    /// CreateNetworkInterface error codes: `InvalidVSwitchId.IpNotEnough`, and
    /// `QuotaExceeded.PrivateIpAddress` "Don't have enough private IPs in this switch").
    /// Another vSwitch may still have room; the ENI itself may not be full.
    #[error("{0}; the vSwitch has no free IP addresses: add a vSwitch or free addresses in it")]
    VSwitchExhausted(ApiFailure),
    /// The ENI holds as many IPv4 addresses as its instance type allows (ECS
    /// AssignPrivateIpAddresses error codes: 403 `MaxEniPrivateIpsCountExceeded`,
    /// `InvalidOperation.Ipv4CountExceeded`). Another ENI may still have room.
    #[error("{0}; the ENI holds all the IPv4 addresses its instance type allows: use another ENI")]
    EniIpv4Full(ApiFailure),
    /// The same for IPv6 (ECS AssignIpv6Addresses error codes: 403
    /// `MaxEniIpv6IpsCountExceeded`, `InvalidOperation.Ipv6CountExceeded`).
    #[error("{0}; the ENI holds all the IPv6 addresses its instance type allows: use another ENI")]
    EniIpv6Full(ApiFailure),
    /// The vSwitch has no IPv6 CIDR block (ECS AssignIpv6Addresses error codes:
    /// `InvalidVSwitch.Ipv6NotTurnOn`).
    #[error(
        "{0}; the vSwitch has no IPv6 CIDR block: enable IPv6 on it or use a dual-stack vSwitch"
    )]
    VSwitchIpv6Off(ApiFailure),
    /// The instance holds as many ENIs as its type allows (ECS AttachNetworkInterface
    /// error codes: `EniPerInstanceLimitExceeded`).
    #[error("{0}; the instance holds all the ENIs its type allows: detach one or use a larger instance type")]
    EniQuotaExceeded(ApiFailure),
    /// The ENI is attaching, detaching or deleting (ECS ENI APIs' error codes: HTTP 400
    /// `InvalidOperation.InvalidEniState`); it clears once the ENI settles.
    #[error("{0}; the ENI is in a state that does not allow this operation: wait until it is Available or InUse")]
    InvalidEniState(ApiFailure),
    #[error("{0}; a quota is exhausted: raise it in the console or release resources")]
    QuotaExceeded(ApiFailure),
    #[error("{0}; another operation on the same resource is running: retry later")]
    TaskConflict(ApiFailure),
    #[error("{0}; the API throttled the request: lower the request rate")]
    Throttling(ApiFailure),
    #[error("{0}; the resource does not exist: check the ID")]
    NotFound(ApiFailure),
    #[error("{0}; authentication failed: check the access key ID, secret and clock")]
    AuthFailure(ApiFailure),
    #[error("{0}; the resource is in a state that does not allow this operation")]
    InvalidState(ApiFailure),
    #[error("{0}; the request was rejected as invalid")]
    InvalidParameter(ApiFailure),
    #[error("{0}; the service failed: retry later")]
    ServerError(ApiFailure),
    #[error("{0}")]
    Other(ApiFailure),
    #[error("request {action} to {endpoint} failed: {reason}: check the endpoint and network")]
    Transport {
        action: String,
        endpoint: String,
        reason: String,
    },
    #[error("response to {action} could not be decoded: {reason}")]
    Decode { action: String, reason: String },
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("no usable credentials: {0}")]
    Credentials(String),
    #[error("metadata service: {0}")]
    Metadata(String),
}

impl CloudError {
    /// Maps a vendor error code to its variant.
    pub fn from_api(f: ApiFailure) -> Self {
        let code = f.code.as_str();
        match code {
            "InvalidVSwitchId.IpNotEnough" | "QuotaExceeded.PrivateIpAddress" => {
                CloudError::VSwitchExhausted(f)
            }
            "MaxEniPrivateIpsCountExceeded" | "InvalidOperation.Ipv4CountExceeded" => {
                CloudError::EniIpv4Full(f)
            }
            // The one-/80-per-ENI rule refused (docs/cloud.md: the emulator's code).
            "MaxEniIpv6IpsCountExceeded"
            | "InvalidOperation.Ipv6CountExceeded"
            | "InvalidOperation.Ipv6PrefixCountExceeded" => CloudError::EniIpv6Full(f),
            // The emulator's former spelling is still understood.
            "InvalidVSwitch.Ipv6NotTurnOn" | "InvalidVSwitchId.Ipv6NotTurnOn" => {
                CloudError::VSwitchIpv6Off(f)
            }
            "EniPerInstanceLimitExceeded" => CloudError::EniQuotaExceeded(f),
            "InvalidOperation.InvalidEniState" => CloudError::InvalidEniState(f),
            "TaskConflict" | "OperationConflict" | "IncorrectStatus.RouteTableStatus" => {
                CloudError::TaskConflict(f)
            }
            "SignatureDoesNotMatch"
            | "InvalidAccessKeyId.NotFound"
            | "InvalidAccessKeyId.Inactive"
            | "IncompleteSignature"
            | "InvalidSecurityToken.Expired"
            | "InvalidSecurityToken.MismatchWithAccessKey"
            | "InvalidTimeStamp.Expired"
            | "SignatureNonceUsed"
            | "Forbidden.RAM" => CloudError::AuthFailure(f),
            "IncorrectRouteEntryStatus" | "IncorrectInstanceStatus" | "InvalidIp.IpUnassigned" => {
                CloudError::InvalidState(f)
            }
            "ServiceUnavailable" | "InternalError" | "SystemBusy" => CloudError::ServerError(f),
            _ if code.starts_with("Throttling") => CloudError::Throttling(f),
            _ if code.starts_with("QuotaExceed") => CloudError::QuotaExceeded(f),
            _ if code.ends_with(".NotFound") => CloudError::NotFound(f),
            _ if code.starts_with("Invalid")
                || code.starts_with("MissingParameter")
                || code.starts_with("InvalidParameter") =>
            {
                CloudError::InvalidParameter(f)
            }
            _ if f.http_status >= 500 => CloudError::ServerError(f),
            _ => CloudError::Other(f),
        }
    }

    pub fn api(&self) -> Option<&ApiFailure> {
        match self {
            CloudError::VSwitchExhausted(f)
            | CloudError::EniIpv4Full(f)
            | CloudError::EniIpv6Full(f)
            | CloudError::VSwitchIpv6Off(f)
            | CloudError::EniQuotaExceeded(f)
            | CloudError::InvalidEniState(f)
            | CloudError::QuotaExceeded(f)
            | CloudError::TaskConflict(f)
            | CloudError::Throttling(f)
            | CloudError::NotFound(f)
            | CloudError::AuthFailure(f)
            | CloudError::InvalidState(f)
            | CloudError::InvalidParameter(f)
            | CloudError::ServerError(f)
            | CloudError::Other(f) => Some(f),
            _ => None,
        }
    }

    /// The ENI has no room for another address of either family: another ENI may.
    pub fn is_eni_full(&self) -> bool {
        matches!(
            self,
            CloudError::EniIpv4Full(_) | CloudError::EniIpv6Full(_)
        )
    }

    pub fn code(&self) -> Option<&str> {
        self.api().map(|f| f.code.as_str())
    }

    /// Worth sending again unchanged: the request was refused for load, or never arrived.
    /// `TaskConflict` is included because it clears once the other operation finishes.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Throttling(_)
                | CloudError::ServerError(_)
                | CloudError::TaskConflict(_)
                | CloudError::Transport { .. }
        )
    }
}

pub type Result<T, E = CloudError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn f(code: &str, status: u16) -> ApiFailure {
        ApiFailure {
            action: "X".into(),
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
            http_status: status,
        }
    }

    #[test]
    fn maps_vendor_codes() {
        let cases = [
            ("InvalidVSwitchId.IpNotEnough", "VSwitchExhausted"),
            ("QuotaExceeded.PrivateIpAddress", "VSwitchExhausted"),
            ("MaxEniPrivateIpsCountExceeded", "EniIpv4Full"),
            ("InvalidOperation.Ipv4CountExceeded", "EniIpv4Full"),
            ("MaxEniIpv6IpsCountExceeded", "EniIpv6Full"),
            ("InvalidOperation.Ipv6CountExceeded", "EniIpv6Full"),
            ("InvalidVSwitch.Ipv6NotTurnOn", "VSwitchIpv6Off"),
            ("InvalidVSwitchId.Ipv6NotTurnOn", "VSwitchIpv6Off"),
            ("QuotaExceeded.VpcRouteEntryNum", "QuotaExceeded"),
            ("EniPerInstanceLimitExceeded", "EniQuotaExceeded"),
            ("TaskConflict", "TaskConflict"),
            ("Throttling.User", "Throttling"),
            ("Throttling", "Throttling"),
            ("InvalidEniId.NotFound", "NotFound"),
            ("SignatureDoesNotMatch", "AuthFailure"),
            ("InvalidAccessKeyId.NotFound", "AuthFailure"),
            ("InvalidOperation.InvalidEniState", "InvalidEniState"),
            ("IncorrectRouteEntryStatus", "InvalidState"),
            ("InvalidParameter", "InvalidParameter"),
            ("ServiceUnavailable", "ServerError"),
        ];
        for (code, want) in cases {
            let e = CloudError::from_api(f(code, 400));
            let got = format!("{e:?}");
            assert!(got.starts_with(want), "{code} -> {got}");
        }
        assert!(matches!(
            CloudError::from_api(f("Weird", 502)),
            CloudError::ServerError(_)
        ));
        assert!(CloudError::from_api(f("MaxEniIpv6IpsCountExceeded", 403)).is_eni_full());
        assert!(!CloudError::from_api(f("QuotaExceeded.PrivateIpAddress", 400)).is_eni_full());
        // Code, message and request id survive the mapping.
        let e = CloudError::from_api(f("InvalidOperation.Ipv4CountExceeded", 403));
        let api = e.api().unwrap();
        assert_eq!(
            (
                api.code.as_str(),
                api.message.as_str(),
                api.request_id.as_str(),
                api.http_status
            ),
            ("InvalidOperation.Ipv4CountExceeded", "m", "r", 403)
        );
        assert!(CloudError::from_api(f("Throttling", 400)).is_retryable());
        assert!(!CloudError::from_api(f("InvalidEniId.NotFound", 404)).is_retryable());
    }
}
