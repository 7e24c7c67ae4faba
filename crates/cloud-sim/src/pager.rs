//! The two pagination styles of the vendor's Describe calls.

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use serde_json::{json, Value};

/// PageNumber (from 1) / PageSize, answering TotalCount, PageNumber and PageSize.
pub fn numbered(
    p: &Params,
    items: Vec<Value>,
    max_size: u64,
    outer: &str,
    inner: &str,
) -> ApiResult<Value> {
    let page = p.num("PageNumber")?.unwrap_or(1);
    let size = p.num("PageSize")?.unwrap_or(10);
    if page == 0 {
        return Err(ApiError::invalid("PageNumber", "0"));
    }
    if size == 0 || size > max_size {
        return Err(ApiError::invalid("PageSize", &size.to_string()));
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

/// NextToken / MaxResults: the token is the offset of the next page, opaque to clients.
pub fn tokened(
    p: &Params,
    items: Vec<Value>,
    size_param: &str,
    max_size: u64,
    outer: &str,
    inner: &str,
) -> ApiResult<Value> {
    let size = p.num(size_param)?.unwrap_or(max_size.min(10));
    if size == 0 || size > max_size {
        return Err(ApiError::invalid(size_param, &size.to_string()));
    }
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
        "TotalCount": total,
        outer: {inner: slice},
    }))
}
