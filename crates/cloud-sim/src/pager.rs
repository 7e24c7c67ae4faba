//! The two pagination styles of the vendor's Describe calls.
//!
//! Each API states its own limits; the callers pass them in. The answers carry only the
//! fields the vendor's response models have: `TotalCount`/`PageNumber`/`PageSize` for
//! numbered pages, `NextToken` (empty on the last page) for token pages.

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use serde_json::{json, Value};

/// What a size parameter outside its documented range does.
#[derive(Debug, Clone, Copy)]
pub enum SizeLimit {
    /// Refused as `InvalidParameter` above `max` (or at 0); `default` when absent.
    Reject { default: u64, max: u64 },
    /// Brought into `min..=max` (DescribeNetworkInterfaces' MaxResults: below 10 is
    /// read as 10, above 500 as 500); `default` when absent.
    Clamp { default: u64, min: u64, max: u64 },
}

impl SizeLimit {
    fn size(self, p: &Params, param: &str) -> ApiResult<u64> {
        let given = p.num(param)?;
        match self {
            SizeLimit::Reject { default, max } => {
                let size = given.unwrap_or(default);
                if size == 0 || size > max {
                    return Err(ApiError::invalid(param, &size.to_string()));
                }
                Ok(size)
            }
            SizeLimit::Clamp { default, min, max } => Ok(given.unwrap_or(default).clamp(min, max)),
        }
    }
}

/// PageNumber (from 1) / PageSize, answering TotalCount, PageNumber and PageSize.
pub fn numbered(
    p: &Params,
    items: Vec<Value>,
    limit: SizeLimit,
    outer: &str,
    inner: &str,
) -> ApiResult<Value> {
    let page = p.num("PageNumber")?.unwrap_or(1);
    let size = limit.size(p, "PageSize")?;
    if page == 0 {
        return Err(ApiError::invalid("PageNumber", "0"));
    }
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .collect();
    Ok(json!({
        "TotalCount": total,
        "PageNumber": page,
        "PageSize": size,
        outer: {inner: slice},
    }))
}

/// NextToken / a size parameter (`MaxResults`, or `MaxResult` in the VPC API), answering
/// NextToken only. The token is the offset of the next page, opaque to clients.
pub fn tokened(
    p: &Params,
    items: Vec<Value>,
    size_param: &str,
    limit: SizeLimit,
    outer: &str,
    inner: &str,
) -> ApiResult<Value> {
    let size = limit.size(p, size_param)?;
    let offset: usize = match p.get("NextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("sim-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "InvalidNextToken.Malformed",
                    format!("The NextToken {t:?} is invalid."),
                )
            })?,
    };
    let total = items.len();
    let end = (offset + size as usize).min(total);
    let slice: Vec<Value> = items.into_iter().skip(offset).take(size as usize).collect();
    let next = if end < total {
        format!("sim-{end}")
    } else {
        String::new()
    };
    Ok(json!({
        "NextToken": next,
        outer: {inner: slice},
    }))
}
