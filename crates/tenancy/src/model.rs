use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sovereign_db::schema::tenants;
use uuid::Uuid;

use crate::TenancyError;

/// The tenant every row belongs to when multi-tenancy is off; created by the migrations.
pub const DEFAULT_TENANT_ID: Uuid = Uuid::from_u128(1);
/// The default tenant's slug.
pub const DEFAULT_TENANT_SLUG: &str = "default";

/// Whether a tenant may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Every request for this tenant is refused; its data stays.
    Suspended,
}

impl TenantStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl FromStr for TenantStatus {
    type Err = TenancyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            other => Err(TenancyError::Invalid {
                field: "status",
                message: format!("`{other}` is not a tenant status"),
            }),
        }
    }
}

/// A tenant as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "acme"))]
    pub slug: String,
    #[cfg_attr(feature = "openapi", schema(example = "Acme Corp"))]
    pub name: String,
    pub status: TenantStatus,
    /// Tenant-level configuration, a JSON object; for the server, not sent to clients.
    #[serde(skip_serializing, default)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub settings: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }

    /// Whether `reference` names this tenant.
    #[must_use]
    pub fn matches(&self, reference: &TenantRef) -> bool {
        match reference {
            TenantRef::Id(id) => *id == self.id,
            TenantRef::Slug(slug) => *slug == self.slug,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub(crate) struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    status: String,
    settings: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = TenancyError;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            slug: row.slug,
            name: row.name,
            status: row.status.parse()?,
            settings: row.settings,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// How a request or an operator names a tenant: by UUID or by slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Id(Uuid),
    Slug(String),
}

/// Longest slug: a DNS label, so slugs can become subdomains.
pub const MAX_SLUG_LEN: usize = 63;

impl TenantRef {
    /// Strict parsing: a hyphenated UUID (36 characters), or a slug of 1–63 lowercase ASCII
    /// letters, digits and inner hyphens. Nothing else — no whitespace, no other characters.
    pub fn parse(text: &str) -> Result<Self, TenancyError> {
        if text.len() == 36
            && let Ok(id) = Uuid::try_parse(text)
        {
            return Ok(Self::Id(id));
        }
        check_slug(text).map_err(TenancyError::Malformed)?;
        Ok(Self::Slug(text.to_owned()))
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Slug(slug) => f.write_str(slug),
        }
    }
}

/// The slug rule, shared by parsing and by tenant creation.
pub(crate) fn check_slug(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_SLUG_LEN {
        return Err(format!(
            "a slug has 1 to {MAX_SLUG_LEN} characters, a UUID 36"
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("a slug has only lowercase letters, digits and hyphens".to_owned());
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err("a slug neither starts nor ends with a hyphen".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_strictly() {
        let id = "0192f6a0-7c3e-7b1a-9d2f-4a5b6c7d8e9f";
        assert_eq!(
            TenantRef::parse(id).unwrap(),
            TenantRef::Id(id.parse().unwrap())
        );
        assert_eq!(
            TenantRef::parse(&id.to_uppercase()).unwrap(),
            TenantRef::Id(id.parse().unwrap())
        );
        assert_eq!(
            TenantRef::parse("acme-2").unwrap(),
            TenantRef::Slug("acme-2".into())
        );
        assert_eq!(TenantRef::parse("a").unwrap(), TenantRef::Slug("a".into()));
        let longest = "a".repeat(63);
        assert!(TenantRef::parse(&longest).is_ok());
        for bad in [
            "",
            "Acme",
            "acme ",
            " acme",
            "-acme",
            "acme-",
            "ac_me",
            "acme.com",
            "ácme",
            "acme;drop",
            "{0192f6a0-7c3e-7b1a-9d2f-4a5b6c7d8e9f}",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(TenantRef::parse(bad), Err(TenancyError::Malformed(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn the_default_tenant_id_is_the_one_the_migration_creates() {
        assert_eq!(
            DEFAULT_TENANT_ID.to_string(),
            "00000000-0000-0000-0000-000000000001"
        );
    }
}
