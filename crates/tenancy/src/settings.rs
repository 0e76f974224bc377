//! The tenancy setting: whether several tenants are served.

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::Value;
use sovereign_core::settings::{ReadSettings, Reader};

setting!(
    ENABLE_MULTI_TENANT,
    "ENABLE_MULTI_TENANT",
    Value("false"),
    "Serve several tenants, chosen by token or `X-Tenant-ID`. Off: everything lives in the default tenant."
);

/// How tenants are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenancySettings {
    /// Several tenants, chosen by token or `X-Tenant-ID`; off, everything lives in the default
    /// tenant.
    pub multi_tenant: bool,
}

impl ReadSettings for TenancySettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Tenancy");
        Some(Self {
            multi_tenant: r.value(&ENABLE_MULTI_TENANT),
        })
    }
}
