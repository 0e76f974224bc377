//! Page-number pagination with a hard cap on the page size.

use serde::Serialize;

/// Largest page any list returns.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// A validated page request: `page` from 1, `limit` from 1 to [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            limit: DEFAULT_PAGE_SIZE,
        }
    }
}

impl PageRequest {
    /// A page request from optional user input; out-of-range values are an error naming the
    /// field, never silently clamped.
    pub fn new(page: Option<u32>, limit: Option<u32>) -> Result<Self, (&'static str, String)> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 || page > 1_000_000 {
            return Err(("page", "must be from 1 to 1000000".to_owned()));
        }
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(("limit", format!("must be from 1 to {MAX_PAGE_SIZE}")));
        }
        Ok(Self { page, limit })
    }

    /// Rows to skip.
    #[must_use]
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.limit)
    }
}

/// One page of results and the total count.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_not_clamped() {
        assert_eq!(PageRequest::new(None, None), Ok(PageRequest::default()));
        assert_eq!(
            PageRequest::new(Some(3), Some(10)).map(PageRequest::offset),
            Ok(20)
        );
        assert_eq!(
            PageRequest::new(Some(0), None).map_err(|e| e.0),
            Err("page")
        );
        assert_eq!(
            PageRequest::new(None, Some(1_000_000)).map_err(|e| e.0),
            Err("limit")
        );
        assert_eq!(
            PageRequest::new(None, Some(0)).map_err(|e| e.0),
            Err("limit")
        );
    }
}
