//! The request's tenant, as an extractor. The rules live in `sovereign_tenancy::resolution`;
//! this only reads the header and the credentials' tenant and runs them.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sovereign_tenancy::{TenancyError, Tenant, TenantClaims};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The header naming the tenant before authentication: its slug or UUID.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// The tenant of the authenticated credentials. Authentication puts it in the request's
/// extensions; tenant resolution then prefers it to `X-Tenant-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedTenant(pub Uuid);

/// The active tenant this request acts for. Handlers that touch tenant data take it and pass
/// its id to `Db::tenant_transaction`.
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Tenant);

impl FromRequest for CurrentTenant {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credentials = req.extensions().get::<AuthenticatedTenant>().map(|t| t.0);
        let mut values = req.headers().get_all(X_TENANT_ID);
        let header = match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(value), None) => value
                .to_str()
                .map(|v| Some(v.to_owned()))
                .map_err(|_| TenancyError::Malformed("it is not ASCII text".to_owned())),
            (Some(_), Some(_)) => Err(TenancyError::Malformed(
                "it was sent more than once".to_owned(),
            )),
        };
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state is missing"))?;
            let header = header?;
            let claims = TenantClaims {
                header: header.as_deref(),
                credentials,
            };
            let tenant =
                sovereign_tenancy::resolve(&state.db, state.settings.features.multi_tenant, claims)
                    .await?;
            Ok(Self(tenant))
        })
    }
}
