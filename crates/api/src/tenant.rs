//! The request's tenant before authentication, as an extractor. The rules live in
//! `sovereign_tenancy::resolution`; this only reads the header and runs them. Authenticated
//! requests get their tenant from [`crate::auth::CurrentUser`], which applies the same rules to
//! the credentials' tenant.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sovereign_tenancy::{TenancyError, Tenant, TenantClaims};

use crate::error::ApiError;
use crate::state::AppState;

/// The header naming the tenant before authentication: its slug or UUID.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// The `X-Tenant-ID` header as the OpenAPI document declares it, once, for every route that
/// takes it (`params(TenantHeader)`). [`CurrentTenant`] reads it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "a declaration for the document; the header is read by `tenant_header`"
)]
pub struct TenantHeader {
    /// The tenant's slug or UUID; required before signing in when multi-tenancy is on.
    #[param(rename = "X-Tenant-ID", example = "acme")]
    x_tenant_id: Option<String>,
}

/// The active tenant an unauthenticated request (register, login, forgot-password) acts for,
/// from `X-Tenant-ID` (or the default tenant with multi-tenancy off).
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Tenant);

impl FromRequest for CurrentTenant {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = tenant_header(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state is missing"))?;
            let header = header?;
            let claims = TenantClaims {
                header: header.as_deref(),
                credentials: None,
            };
            let tenant =
                sovereign_tenancy::resolve(&state.db, state.settings.tenancy.multi_tenant, claims)
                    .await?;
            Ok(Self(tenant))
        })
    }
}

/// The `X-Tenant-ID` header, if sent once as text.
pub(crate) fn tenant_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(X_TENANT_ID);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|v| Some(v.to_owned()))
            .map_err(|_| TenancyError::Malformed("it is not ASCII text".to_owned()).into()),
        (Some(_), Some(_)) => {
            Err(TenancyError::Malformed("it was sent more than once".to_owned()).into())
        }
    }
}
