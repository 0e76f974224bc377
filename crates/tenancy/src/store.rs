//! Reading the registry (any role) and administering it (only [`TenantAdmin`]).

use diesel::OptionalExtension;
use diesel::prelude::*;
use sovereign_db::schema::tenants;
use sovereign_db::{DatabaseSettings, Db, DbError, PoolSettings, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::TenancyError;
use crate::model::{Tenant, TenantRef, TenantRow, TenantStatus, check_slug};
use crate::resolution::{TenantClaims, accept, tenant_to_load};

/// The tenant `reference` names, if any.
pub async fn find(db: &Db, reference: &TenantRef) -> Result<Option<Tenant>, TenancyError> {
    let mut conn = db.conn().await?;
    let query = tenants::table.select(TenantRow::as_select()).into_boxed();
    let query = match reference {
        TenantRef::Id(id) => query.filter(tenants::id.eq(*id)),
        TenantRef::Slug(slug) => query.filter(tenants::slug.eq(slug.clone())),
    };
    query
        .first(&mut conn)
        .await
        .optional()
        .map_err(DbError::from)?
        .map(Tenant::try_from)
        .transpose()
}

/// Resolves a request's tenant: the rules of [`crate::resolution`] around one lookup.
pub async fn resolve(
    db: &Db,
    multi_tenant: bool,
    claims: TenantClaims<'_>,
) -> Result<Tenant, TenancyError> {
    let reference = tenant_to_load(multi_tenant, claims)?;
    let loaded = find(db, &reference).await?;
    accept(multi_tenant, claims, loaded)
}

/// Tenant administration: the one cross-tenant path. It needs a [`Db`] connected as a member of
/// `sovereign_tenant_admin` (or the schema owner) — the server's runtime role can read the
/// registry but PostgreSQL refuses it any change, so request code cannot reach this by accident.
#[derive(Debug, Clone)]
pub struct TenantAdmin {
    db: Db,
}

/// Longest tenant name, in characters.
pub const MAX_NAME_LEN: usize = 200;

fn check_name(name: &str) -> Result<String, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(TenancyError::Invalid {
            field: "name",
            message: format!("a name has 1 to {MAX_NAME_LEN} characters"),
        });
    }
    Ok(name.to_owned())
}

impl TenantAdmin {
    #[must_use]
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Tenant administration as the settings describe it: a small pool of its own (two
    /// connections) on `DATABASE_ADMIN_URL`, apart from the runtime pool.
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let pool = PoolSettings {
            max_size: 2,
            ..settings.pool
        };
        Ok(Self::new(Db::new(&settings.admin_url, pool)?))
    }

    /// Every tenant, oldest first.
    pub async fn list(&self) -> Result<Vec<Tenant>, TenancyError> {
        let mut conn = self.db.conn().await?;
        tenants::table
            .select(TenantRow::as_select())
            .order((tenants::created_at.asc(), tenants::id.asc()))
            .load(&mut conn)
            .await
            .map_err(DbError::from)?
            .into_iter()
            .map(Tenant::try_from)
            .collect()
    }

    /// Creates an active tenant.
    pub async fn create(&self, slug: &str, name: &str) -> Result<Tenant, TenancyError> {
        check_slug(slug).map_err(|message| TenancyError::Invalid {
            field: "slug",
            message,
        })?;
        let name = check_name(name)?;
        let slug = slug.to_owned();
        let result = self
            .db
            .transaction(|conn| {
                async move {
                    diesel::insert_into(tenants::table)
                        .values((
                            tenants::id.eq(Uuid::now_v7()),
                            tenants::slug.eq(slug),
                            tenants::name.eq(name),
                        ))
                        .returning(TenantRow::as_returning())
                        .get_result(conn)
                        .await
                        .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await;
        match result {
            Ok(row) => Tenant::try_from(row),
            Err(e) if e.is_unique_violation() => Err(TenancyError::SlugTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Suspends or reactivates a tenant.
    pub async fn set_status(
        &self,
        reference: &TenantRef,
        status: TenantStatus,
    ) -> Result<Tenant, TenancyError> {
        let reference = reference.clone();
        let row = self
            .db
            .transaction(|conn| {
                async move {
                    let update = diesel::update(tenants::table).set((
                        tenants::status.eq(status.as_str()),
                        tenants::updated_at.eq(diesel::dsl::now),
                    ));
                    let returning = TenantRow::as_returning();
                    match &reference {
                        TenantRef::Id(id) => {
                            update
                                .filter(tenants::id.eq(*id))
                                .returning(returning)
                                .get_result(conn)
                                .await
                        }
                        TenantRef::Slug(slug) => {
                            update
                                .filter(tenants::slug.eq(slug))
                                .returning(returning)
                                .get_result(conn)
                                .await
                        }
                    }
                    .optional()
                    .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(Tenant::try_from)
            .transpose()?
            .ok_or(TenancyError::NotFound)
    }

    /// One tenant.
    pub async fn get(&self, reference: &TenantRef) -> Result<Tenant, TenancyError> {
        find(&self.db, reference)
            .await?
            .ok_or(TenancyError::NotFound)
    }

    /// Renames a tenant.
    pub async fn rename(&self, reference: &TenantRef, name: &str) -> Result<Tenant, TenancyError> {
        let name = check_name(name)?;
        let id = self.get(reference).await?.id;
        let row = self
            .db
            .transaction(|conn| {
                async move {
                    diesel::update(tenants::table.find(id))
                        .set((
                            tenants::name.eq(name),
                            tenants::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(TenantRow::as_returning())
                        .get_result(conn)
                        .await
                        .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        Tenant::try_from(row)
    }

    /// Deletes a suspended tenant and, through `ON DELETE CASCADE`, every row it owns, and returns
    /// it as it was. The default tenant cannot be deleted, and an active one must be suspended
    /// first.
    pub async fn delete(&self, reference: &TenantRef) -> Result<Tenant, TenancyError> {
        let tenant = self.get(reference).await?;
        if tenant.id == crate::DEFAULT_TENANT_ID {
            return Err(TenancyError::Invalid {
                field: "id",
                message: "the default tenant cannot be deleted".to_owned(),
            });
        }
        if tenant.is_active() {
            return Err(TenancyError::Invalid {
                field: "status",
                message: "suspend the tenant before deleting it".to_owned(),
            });
        }
        let id = tenant.id;
        self.db
            .transaction(|conn| {
                async move {
                    diesel::delete(tenants::table.find(id))
                        .execute(conn)
                        .await
                        .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(tenant)
    }
}
