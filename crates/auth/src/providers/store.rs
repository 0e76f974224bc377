//! The providers of a tenant: those its administrators manage (client secrets sealed, never
//! returned) and those `AUTH_PROVIDERS` gives every tenant, which a tenant's own provider of the
//! same slug replaces.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use sovereign_db::schema::auth_providers;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::{
    NewProvider, ProviderConfig, ProviderDetails, ProviderInfo, ProviderKind, ProviderUpdate,
    check_endpoint,
};
use crate::model::{Principal, Role};
use crate::sealed::Sealer;
use crate::{Accounts, AuthError};

/// A provider as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = auth_providers, check_for_backend(diesel::pg::Pg))]
struct ProviderRow {
    id: Uuid,
    slug: String,
    kind: String,
    name: String,
    issuer: String,
    api_url: Option<String>,
    client_id: String,
    client_secret: Vec<u8>,
    scopes: Vec<Option<String>>,
    claims: serde_json::Value,
    allow_sign_up: bool,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Accounts {
    fn sealer(&self) -> Sealer {
        Sealer::new(self.inner.settings.secret_key_bytes())
    }

    fn config_from_row(&self, row: ProviderRow) -> Result<ProviderConfig, AuthError> {
        let ProviderRow {
            id,
            slug,
            kind,
            name,
            issuer,
            api_url,
            client_id,
            client_secret,
            scopes,
            claims,
            allow_sign_up,
            enabled,
            created_at,
            updated_at,
        } = row;
        let secret = self.sealer().open(&client_secret, id.as_bytes())?;
        let secret = String::from_utf8(secret)
            .map_err(|_| AuthError::Config("a sealed client secret is not text".to_owned()))?;
        Ok(ProviderConfig {
            id: Some(id),
            slug,
            kind: ProviderKind::parse(&kind)
                .ok_or_else(|| AuthError::Config(format!("unknown provider kind `{kind}`")))?,
            name,
            issuer: check_endpoint("issuer", &issuer)?,
            api_url: api_url.map(|u| check_endpoint("api_url", &u)).transpose()?,
            client_id,
            client_secret: SecretString::from(secret),
            scopes: scopes.into_iter().flatten().collect(),
            claims: serde_json::from_value(claims).unwrap_or_default(),
            allow_sign_up,
            enabled,
            created_at: Some(created_at),
            updated_at: Some(updated_at),
        })
    }

    /// The tenant's provider called `slug`, or the settings' one, enabled or not.
    pub(crate) async fn find_provider(
        &self,
        tenant: Uuid,
        slug: &str,
    ) -> Result<Option<ProviderConfig>, AuthError> {
        let wanted = slug.to_owned();
        let row: Option<ProviderRow> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    auth_providers::table
                        .filter(auth_providers::slug.eq(wanted))
                        .select(ProviderRow::as_select())
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if let Some(row) = row {
            return self.config_from_row(row).map(Some);
        }
        Ok(self.default_provider(slug))
    }

    fn default_provider(&self, slug: &str) -> Option<ProviderConfig> {
        self.inner
            .settings
            .providers
            .defaults
            .iter()
            .filter(|p| p.slug == slug)
            .find_map(|p| p.checked().ok())
    }

    /// An enabled provider, for a sign-in.
    pub(crate) async fn enabled_provider(
        &self,
        tenant: Uuid,
        slug: &str,
    ) -> Result<ProviderConfig, AuthError> {
        self.find_provider(tenant, slug)
            .await?
            .filter(|p| p.enabled)
            .ok_or(AuthError::NotFound("provider"))
    }

    /// Where provider `slug` sends browsers back: register it with the provider.
    #[must_use]
    pub fn provider_callback_url(&self, slug: &str) -> String {
        format!(
            "{}/api/v1/auth/providers/{slug}/callback",
            self.inner.settings.providers.api_public_url
        )
    }

    /// The tenant's enabled providers, for a sign-in page.
    pub async fn public_providers(&self, tenant: Uuid) -> Result<Vec<ProviderInfo>, AuthError> {
        let own: Vec<(String, String, String, bool)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    auth_providers::table
                        .order(auth_providers::slug)
                        .select((
                            auth_providers::slug,
                            auth_providers::kind,
                            auth_providers::name,
                            auth_providers::enabled,
                        ))
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut list: Vec<ProviderInfo> = own
            .iter()
            .filter(|(_, _, _, enabled)| *enabled)
            .filter_map(|(slug, kind, name, _)| {
                Some(ProviderInfo {
                    slug: slug.clone(),
                    kind: ProviderKind::parse(kind)?,
                    name: name.clone(),
                })
            })
            .collect();
        for default in &self.inner.settings.providers.defaults {
            if own.iter().any(|(slug, ..)| *slug == default.slug) {
                continue;
            }
            if let Some(p) = default.checked().ok().filter(|p| p.enabled) {
                list.push(ProviderInfo {
                    slug: p.slug,
                    kind: p.kind,
                    name: p.name,
                });
            }
        }
        list.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(list)
    }

    /// A provider's configuration, without its secret (administrators).
    pub async fn provider_details(
        &self,
        principal: &Principal,
        slug: &str,
    ) -> Result<ProviderDetails, AuthError> {
        principal.require(Role::Admin)?;
        let config = self
            .find_provider(principal.user.tenant_id, slug)
            .await?
            .ok_or(AuthError::NotFound("provider"))?;
        Ok(config.details(self.provider_callback_url(&config.slug)))
    }

    /// Adds a provider to the caller's tenant (administrators, recently authenticated).
    pub async fn create_provider(
        &self,
        principal: &Principal,
        input: &NewProvider,
    ) -> Result<ProviderDetails, AuthError> {
        principal.require(Role::Admin)?;
        principal.require_recent()?;
        let mut config = input.checked()?;
        let tenant = principal.user.tenant_id;
        let id = Uuid::now_v7();
        let sealed = self.sealer().seal(
            config.client_secret.expose_secret().as_bytes(),
            id.as_bytes(),
        )?;
        let row = config.clone();
        let claims = serde_json::to_value(&row.claims).unwrap_or_default();
        let created: Option<(DateTime<Utc>, DateTime<Utc>)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(auth_providers::table)
                        .values((
                            auth_providers::id.eq(id),
                            auth_providers::tenant_id.eq(tenant),
                            auth_providers::slug.eq(&row.slug),
                            auth_providers::kind.eq(row.kind.as_str()),
                            auth_providers::name.eq(&row.name),
                            auth_providers::issuer.eq(row.issuer_text()),
                            auth_providers::api_url
                                .eq(row.api_url.as_ref().map(ToString::to_string)),
                            auth_providers::client_id.eq(&row.client_id),
                            auth_providers::client_secret.eq(sealed),
                            auth_providers::scopes.eq(&row.scopes),
                            auth_providers::claims.eq(claims),
                            auth_providers::allow_sign_up.eq(row.allow_sign_up),
                            auth_providers::enabled.eq(row.enabled),
                        ))
                        .on_conflict_do_nothing()
                        .returning((auth_providers::created_at, auth_providers::updated_at))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let (created_at, updated_at) = created.ok_or(AuthError::SlugTaken)?;
        tracing::info!(security_event = "provider_added", %tenant, by = %principal.user.id, provider = %config.slug, "sign-in provider added");
        config.id = Some(id);
        config.created_at = Some(created_at);
        config.updated_at = Some(updated_at);
        Ok(config.details(self.provider_callback_url(&config.slug)))
    }

    /// Changes a provider of the caller's tenant (administrators, recently authenticated).
    pub async fn update_provider(
        &self,
        principal: &Principal,
        slug: &str,
        update: &ProviderUpdate,
    ) -> Result<ProviderDetails, AuthError> {
        principal.require(Role::Admin)?;
        principal.require_recent()?;
        let tenant = principal.user.tenant_id;
        let current = self
            .find_provider(tenant, slug)
            .await?
            .ok_or(AuthError::NotFound("provider"))?;
        let Some(id) = current.id else {
            return Err(AuthError::Forbidden(
                "providers from AUTH_PROVIDERS are changed in the settings, or replaced by one of the same slug",
            ));
        };
        let merged = NewProvider {
            slug: current.slug.clone(),
            kind: current.kind,
            name: update.name.clone().or(Some(current.name.clone())),
            issuer: update
                .issuer
                .clone()
                .or_else(|| Some(current.issuer_text())),
            api_url: update
                .api_url
                .clone()
                .or_else(|| current.api_url.as_ref().map(ToString::to_string)),
            client_id: update
                .client_id
                .clone()
                .unwrap_or_else(|| current.client_id.clone()),
            client_secret: update
                .client_secret
                .clone()
                .unwrap_or_else(|| current.client_secret.clone()),
            scopes: update.scopes.clone().or(Some(current.scopes.clone())),
            claims: update.claims.clone().or(Some(current.claims.clone())),
            allow_sign_up: update.allow_sign_up.or(Some(current.allow_sign_up)),
            enabled: update.enabled.or(Some(current.enabled)),
        };
        let mut config = merged.checked()?;
        let sealed = self.sealer().seal(
            config.client_secret.expose_secret().as_bytes(),
            id.as_bytes(),
        )?;
        let row = config.clone();
        let claims = serde_json::to_value(&row.claims).unwrap_or_default();
        let stamps: Option<(DateTime<Utc>, DateTime<Utc>)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(auth_providers::table.find(id))
                        .set((
                            auth_providers::name.eq(&row.name),
                            auth_providers::issuer.eq(row.issuer_text()),
                            auth_providers::api_url
                                .eq(row.api_url.as_ref().map(ToString::to_string)),
                            auth_providers::client_id.eq(&row.client_id),
                            auth_providers::client_secret.eq(sealed),
                            auth_providers::scopes.eq(&row.scopes),
                            auth_providers::claims.eq(claims),
                            auth_providers::allow_sign_up.eq(row.allow_sign_up),
                            auth_providers::enabled.eq(row.enabled),
                            auth_providers::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning((auth_providers::created_at, auth_providers::updated_at))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let (created_at, updated_at) = stamps.ok_or(AuthError::NotFound("provider"))?;
        tracing::info!(security_event = "provider_changed", %tenant, by = %principal.user.id, provider = %config.slug, "sign-in provider changed");
        config.id = Some(id);
        config.created_at = Some(created_at);
        config.updated_at = Some(updated_at);
        Ok(config.details(self.provider_callback_url(&config.slug)))
    }

    /// Removes a provider of the caller's tenant (administrators, recently authenticated). The
    /// identities it linked stay, keyed by issuer: a provider added again for the same issuer
    /// signs them in again.
    pub async fn delete_provider(
        &self,
        principal: &Principal,
        slug: &str,
    ) -> Result<(), AuthError> {
        principal.require(Role::Admin)?;
        principal.require_recent()?;
        let tenant = principal.user.tenant_id;
        let wanted = slug.to_owned();
        let removed = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(auth_providers::table)
                        .filter(auth_providers::slug.eq(wanted))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if removed == 0 {
            return Err(if self.default_provider(slug).is_some() {
                AuthError::Forbidden("providers from AUTH_PROVIDERS are removed in the settings")
            } else {
                AuthError::NotFound("provider")
            });
        }
        tracing::info!(security_event = "provider_removed", %tenant, by = %principal.user.id, provider = %slug, "sign-in provider removed");
        Ok(())
    }
}
