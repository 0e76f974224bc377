//! The rules that decide a request's tenant, as pure functions: first which tenant to load,
//! then whether the loaded tenant is acceptable. [`crate::resolve`] runs them around the one
//! database lookup.
//!
//! - Multi-tenancy off: always the default tenant; `X-Tenant-ID` is ignored. Credentials of
//!   another tenant are refused.
//! - Before authentication: the tenant named by `X-Tenant-ID` (required, strict format; it must
//!   exist and be active).
//! - After authentication: the tenant the credentials belong to. A header naming another tenant
//!   is refused (403 `tenant_mismatch`), never silently ignored.
//! - After authentication, for a caller who may cross tenants (a superadmin), with multi-tenancy
//!   on: the tenant `X-Tenant-ID` names, suspended ones too; its own without the header.
//!
//! [`tenant_to_load`] and [`accept`] decide a request's tenant from its claims;
//! [`tenant_to_act_in`] and [`accept_named`] decide a signed-in caller's, whose own tenant is
//! already loaded with its credentials.

use uuid::Uuid;

use crate::TenancyError;
use crate::model::{DEFAULT_TENANT_ID, Tenant, TenantRef};

/// What a request says about its tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantClaims<'a> {
    /// The raw `X-Tenant-ID` header, if sent.
    pub header: Option<&'a str>,
    /// The tenant of the authenticated credentials (access token or API key), if any.
    pub credentials: Option<Uuid>,
}

/// Which tenant to load for `claims`.
pub fn tenant_to_load(
    multi_tenant: bool,
    claims: TenantClaims<'_>,
) -> Result<TenantRef, TenancyError> {
    if !multi_tenant {
        return Ok(TenantRef::Id(DEFAULT_TENANT_ID));
    }
    // A malformed header is an error even when credentials decide the tenant.
    let header = claims.header.map(TenantRef::parse).transpose()?;
    match (claims.credentials, header) {
        (Some(id), _) => Ok(TenantRef::Id(id)),
        (None, Some(reference)) => Ok(reference),
        (None, None) => Err(TenancyError::Required),
    }
}

/// Whether the tenant loaded for `claims` (`None` when no tenant matched) may serve the request.
pub fn accept(
    multi_tenant: bool,
    claims: TenantClaims<'_>,
    loaded: Option<Tenant>,
) -> Result<Tenant, TenancyError> {
    let tenant = loaded.ok_or(TenancyError::NotFound)?;
    if let Some(credentials) = claims.credentials
        && credentials != tenant.id
    {
        return Err(TenancyError::Mismatch);
    }
    if multi_tenant
        && claims.credentials.is_some()
        && let Some(header) = claims.header
        && !tenant.matches(&TenantRef::parse(header)?)
    {
        return Err(TenancyError::Mismatch);
    }
    if !tenant.is_active() {
        return Err(TenancyError::Suspended);
    }
    Ok(tenant)
}

/// Where a signed-in caller acts, as decided by [`tenant_to_act_in`].
#[derive(Debug, Clone, PartialEq)]
pub enum ActingTenant {
    /// The tenant the credentials belong to (already loaded with them).
    Own(Tenant),
    /// Another tenant, named by a caller who may cross tenants: load it, then [`accept_named`].
    Named(TenantRef),
}

/// Which tenant a signed-in caller acts in. `own` is the tenant its credentials belong to;
/// `may_cross_tenants` says whether the caller may act in any tenant (a superadmin); `header`
/// is the raw `X-Tenant-ID`, if sent.
///
/// - A caller who may cross tenants, with multi-tenancy on, acts in the tenant the header names:
///   its own (whatever its status) when the header names it, otherwise another one, to load.
/// - Everyone else, and everyone when no header is sent or multi-tenancy is off: the rules of
///   [`tenant_to_load`] and [`accept`] with the credentials' tenant as the claim. That is the
///   own tenant, if active; a header naming another tenant is a mismatch, and so are
///   credentials of any tenant but the default one with multi-tenancy off.
pub fn tenant_to_act_in(
    multi_tenant: bool,
    may_cross_tenants: bool,
    own: Tenant,
    header: Option<&str>,
) -> Result<ActingTenant, TenancyError> {
    if multi_tenant
        && may_cross_tenants
        && let Some(header) = header
    {
        let named = TenantRef::parse(header)?;
        return Ok(if own.matches(&named) {
            ActingTenant::Own(own)
        } else {
            ActingTenant::Named(named)
        });
    }
    let claims = TenantClaims {
        header,
        credentials: Some(own.id),
    };
    // With credentials, the tenant to load is theirs, or the default one with multi-tenancy
    // off, which `accept` refuses for another tenant's credentials: no lookup is needed.
    if !own.matches(&tenant_to_load(multi_tenant, claims)?) {
        return Err(TenancyError::Mismatch);
    }
    accept(multi_tenant, claims, Some(own)).map(ActingTenant::Own)
}

/// Whether the tenant loaded for [`ActingTenant::Named`] (`None` when none matched) may be
/// acted in: any that exists, suspended ones too (their administrators are suspended with
/// them; a superadmin still reaches their data).
pub fn accept_named(loaded: Option<Tenant>) -> Result<Tenant, TenancyError> {
    loaded.ok_or(TenancyError::NotFound)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::TenantStatus;

    fn tenant(id: u128, slug: &str, status: TenantStatus) -> Tenant {
        Tenant {
            id: Uuid::from_u128(id),
            slug: slug.to_owned(),
            name: slug.to_owned(),
            status,
            settings: serde_json::json!({}),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn claims(header: Option<&str>, credentials: Option<u128>) -> TenantClaims<'_> {
        TenantClaims {
            header,
            credentials: credentials.map(Uuid::from_u128),
        }
    }

    fn code(result: Result<impl std::fmt::Debug, TenancyError>) -> &'static str {
        use sovereign_core::Diagnostic;
        result.expect_err("an error").code()
    }

    #[test]
    fn single_tenant_mode_always_loads_the_default_and_ignores_the_header() {
        for header in [None, Some("acme"), Some("not a slug!")] {
            assert_eq!(
                tenant_to_load(false, claims(header, None)).unwrap(),
                TenantRef::Id(DEFAULT_TENANT_ID)
            );
        }
        let default = tenant(1, "default", TenantStatus::Active);
        let ok = accept(
            false,
            claims(Some("whatever"), Some(1)),
            Some(default.clone()),
        );
        assert_eq!(ok.unwrap().id, DEFAULT_TENANT_ID);
        // Credentials minted for another tenant do not work here.
        assert_eq!(
            code(accept(false, claims(None, Some(7)), Some(default))),
            "tenant_mismatch"
        );
    }

    #[test]
    fn before_authentication_the_header_decides_and_is_required() {
        assert_eq!(
            tenant_to_load(true, claims(Some("acme"), None)).unwrap(),
            TenantRef::Slug("acme".into())
        );
        assert_eq!(
            code(tenant_to_load(true, claims(None, None))),
            "tenant_required"
        );
        assert_eq!(
            code(tenant_to_load(true, claims(Some("ACME"), None))),
            "invalid_tenant"
        );
        assert_eq!(
            code(tenant_to_load(true, claims(Some(""), None))),
            "invalid_tenant"
        );
    }

    #[test]
    fn unknown_and_suspended_tenants_are_refused() {
        assert_eq!(
            code(accept(true, claims(Some("ghost"), None), None)),
            "tenant_not_found"
        );
        let suspended = tenant(9, "frozen", TenantStatus::Suspended);
        assert_eq!(
            code(accept(true, claims(Some("frozen"), None), Some(suspended))),
            "tenant_suspended"
        );
        let active = tenant(9, "acme", TenantStatus::Active);
        assert_eq!(
            accept(true, claims(Some("acme"), None), Some(active))
                .unwrap()
                .slug,
            "acme"
        );
    }

    #[test]
    fn after_authentication_the_credentials_decide_and_a_different_header_is_refused() {
        assert_eq!(
            tenant_to_load(true, claims(Some("other"), Some(5))).unwrap(),
            TenantRef::Id(Uuid::from_u128(5))
        );
        let acme = tenant(5, "acme", TenantStatus::Active);
        // No header, or a header naming the same tenant by slug or id: fine.
        let same_id = Uuid::from_u128(5).to_string();
        for header in [None, Some("acme"), Some(same_id.as_str())] {
            assert_eq!(
                accept(true, claims(header, Some(5)), Some(acme.clone()))
                    .unwrap()
                    .id,
                acme.id
            );
        }
        assert_eq!(
            code(accept(true, claims(Some("globex"), Some(5)), Some(acme))),
            "tenant_mismatch"
        );
        // Even a malformed header is not ignored once credentials are present.
        assert_eq!(
            code(tenant_to_load(true, claims(Some("Bad Header"), Some(5)))),
            "invalid_tenant"
        );
        // Credentials of a suspended tenant stop working.
        let frozen = tenant(5, "acme", TenantStatus::Suspended);
        assert_eq!(
            code(accept(true, claims(None, Some(5)), Some(frozen))),
            "tenant_suspended"
        );
    }

    #[test]
    fn a_caller_who_may_cross_tenants_acts_in_the_tenant_the_header_names() {
        let own = tenant(5, "acme", TenantStatus::Active);
        let own_id = Uuid::from_u128(5).to_string();
        // Its own tenant, by slug, by id, or without the header.
        for header in [Some("acme"), Some(own_id.as_str()), None] {
            assert_eq!(
                tenant_to_act_in(true, true, own.clone(), header).unwrap(),
                ActingTenant::Own(own.clone()),
                "{header:?}"
            );
        }
        // Another one: to be loaded, by the reference given.
        assert_eq!(
            tenant_to_act_in(true, true, own.clone(), Some("globex")).unwrap(),
            ActingTenant::Named(TenantRef::Slug("globex".into()))
        );
        let other = Uuid::from_u128(9);
        assert_eq!(
            tenant_to_act_in(true, true, own.clone(), Some(&other.to_string())).unwrap(),
            ActingTenant::Named(TenantRef::Id(other))
        );
        // A malformed header is refused, not ignored.
        assert_eq!(
            code(tenant_to_act_in(true, true, own, Some("Not A Slug"))),
            "invalid_tenant"
        );
        // The named tenant must exist; suspended ones are reachable.
        assert_eq!(code(accept_named(None)), "tenant_not_found");
        let frozen = tenant(9, "frozen", TenantStatus::Suspended);
        assert_eq!(accept_named(Some(frozen.clone())).unwrap(), frozen);
        // Naming its own suspended tenant reaches it too; without the header the usual rules
        // apply.
        let own_frozen = tenant(5, "acme", TenantStatus::Suspended);
        assert_eq!(
            tenant_to_act_in(true, true, own_frozen.clone(), Some("acme")).unwrap(),
            ActingTenant::Own(own_frozen.clone())
        );
        assert_eq!(
            code(tenant_to_act_in(true, true, own_frozen, None)),
            "tenant_suspended"
        );
    }

    #[test]
    fn everyone_else_acts_in_their_own_tenant_and_naming_another_is_a_mismatch() {
        let own = tenant(5, "acme", TenantStatus::Active);
        let own_id = Uuid::from_u128(5).to_string();
        for header in [None, Some("acme"), Some(own_id.as_str())] {
            assert_eq!(
                tenant_to_act_in(true, false, own.clone(), header).unwrap(),
                ActingTenant::Own(own.clone()),
                "{header:?}"
            );
        }
        assert_eq!(
            code(tenant_to_act_in(true, false, own.clone(), Some("globex"))),
            "tenant_mismatch"
        );
        assert_eq!(
            code(tenant_to_act_in(
                true,
                false,
                own.clone(),
                Some(&Uuid::from_u128(9).to_string())
            )),
            "tenant_mismatch"
        );
        assert_eq!(
            code(tenant_to_act_in(true, false, own, Some("Bad Header"))),
            "invalid_tenant"
        );
        let frozen = tenant(5, "acme", TenantStatus::Suspended);
        for header in [None, Some("acme")] {
            assert_eq!(
                code(tenant_to_act_in(true, false, frozen.clone(), header)),
                "tenant_suspended"
            );
        }
    }

    #[test]
    fn with_multi_tenancy_off_everyone_acts_in_the_default_tenant_whatever_the_header_says() {
        let default = tenant(1, "default", TenantStatus::Active);
        for may_cross_tenants in [false, true] {
            for header in [None, Some("acme"), Some("not a slug!")] {
                assert_eq!(
                    tenant_to_act_in(false, may_cross_tenants, default.clone(), header).unwrap(),
                    ActingTenant::Own(default.clone()),
                    "{may_cross_tenants} {header:?}"
                );
            }
            // Credentials of another tenant do not work here, a superadmin's neither.
            let acme = tenant(5, "acme", TenantStatus::Active);
            for header in [None, Some("acme")] {
                assert_eq!(
                    code(tenant_to_act_in(
                        false,
                        may_cross_tenants,
                        acme.clone(),
                        header
                    )),
                    "tenant_mismatch"
                );
            }
        }
    }
}
