//! Errors: `ApiError` is what the emulated API answers (the vendor's code, HTTP status
//! and message); `SimError` is the emulator itself failing (config, state file, socket).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn missing(param: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{param}\" that is mandatory for processing this request is not supplied."),
        )
    }

    pub fn invalid(param: &str, value: &str) -> Self {
        Self::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{param}\" is not valid: {value:?}."),
        )
    }

    pub fn eni_not_found(id: &str) -> Self {
        Self::new(
            404,
            "InvalidEniId.NotFound",
            format!("The specified NetworkInterfaceId {id} does not exist."),
        )
    }

    pub fn instance_not_found(id: &str) -> Self {
        Self::new(
            404,
            "InvalidInstanceId.NotFound",
            format!("The specified InstanceId {id} does not exist."),
        )
    }

    /// HTTP 400, as in the ECS ENI APIs' error tables (e.g. "ECS API
    /// AssignPrivateIpAddresses, error codes": 400 `InvalidOperation.InvalidEniState`).
    pub fn eni_state(id: &str, state: &str, op: &str) -> Self {
        Self::new(
            400,
            "InvalidOperation.InvalidEniState",
            format!("The ENI {id} is {state}; {op} is not allowed in this state."),
        )
    }

    /// The vSwitch has no free address, answered by AssignPrivateIpAddresses ("ECS API
    /// AssignPrivateIpAddresses, error codes": 400 `QuotaExceeded.PrivateIpAddress`,
    /// "Don't have enough private IPs in this switch"). CreateNetworkInterface answers
    /// `InvalidVSwitchId.IpNotEnough` instead (see vpc.rs).
    pub fn vswitch_no_private_ip(vswitch_id: &str) -> Self {
        Self::new(
            400,
            "QuotaExceeded.PrivateIpAddress",
            format!("Don't have enough private IPs in this switch ({vswitch_id})."),
        )
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid emulator config: {0}")]
    Config(String),
    #[error("listening on {addr}: {source}: pick a free address or port")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}
