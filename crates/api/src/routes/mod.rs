//! Route registration. Routes and their OpenAPI entries are registered together, so the
//! document cannot miss a route.

mod api_keys;
#[expect(
    unused_qualifications,
    reason = "the code utoipa generates for the query parameters of `audit_log::list`"
)]
mod audit_log;
mod auth;
pub(crate) mod dto;
mod factors;
mod passkeys;
mod providers;
mod realtime;
mod storage;
mod system;
mod tenants;
mod uploads;
pub(crate) mod users;
mod vector;

use actix_web::middleware::from_fn;
use actix_web::{guard, web};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::rate_limit;

/// Registers every documented route.
pub(crate) fn register(cfg: &mut ServiceConfig<'_>) {
    cfg.service(system::index)
        .service(system::health)
        .service(system::ready)
        .service(auth::jwks)
        .service(auth::logout)
        // `me`: one handler for both of its paths (the document has it from `ApiDoc`'s paths).
        // Before the auth scope, which takes every path under its prefix, and before
        // `/users/{id}`: the first matching pattern wins.
        // The resource is guarded by GET so that other methods go on to `put_me` and `patch_me`.
        .map(|cfg| {
            cfg.service(
                web::resource(users::ME_PATHS)
                    .guard(guard::Get())
                    .to(users::me),
            )
        })
        .service(auth::sessions)
        .service(auth::revoke_session)
        .service(factors::enrol_totp)
        .service(factors::confirm_factor)
        .service(factors::list_factors)
        .service(factors::remove_factor)
        .service(factors::regenerate_recovery_codes)
        .service(factors::get_mfa_policy)
        .service(factors::set_mfa_policy)
        .service(passkeys::start_passkey_registration)
        .service(passkeys::finish_passkey_registration)
        .service(passkeys::list_passkeys)
        .service(passkeys::rename_passkey)
        .service(passkeys::remove_passkey)
        .service(passkeys::start_passkey_reauthentication)
        .service(providers::list_providers)
        .service(providers::create_provider)
        .service(providers::get_provider)
        .service(providers::update_provider)
        .service(providers::delete_provider)
        .service(providers::authorize_provider)
        .service(providers::provider_callback)
        .service(providers::link_provider)
        .service(providers::confirm_link)
        .service(providers::list_identities)
        .service(providers::unlink_identity)
        .service(providers::list_redirect_urls)
        .service(providers::set_redirect_urls)
        // The routes that take a password or a token, counted against the `auth` rate-limit
        // policy too. After the other `/api/v1/auth/…` routes: a scope takes every path under
        // its prefix, including the ones none of its routes match.
        .service(
            scope(auth::CREDENTIALS)
                .wrap(from_fn(rate_limit::credential_limit))
                .service(auth::register)
                .service(auth::login)
                .service(auth::token)
                .service(auth::refresh)
                .service(auth::forgot_password)
                .service(auth::reset_password)
                .service(auth::change_password)
                .service(auth::request_verification)
                .service(auth::confirm_verification)
                .service(factors::verify_mfa)
                .service(factors::reauthenticate)
                .service(factors::enrol_mfa)
                .service(factors::confirm_mfa_enrolment)
                .service(providers::exchange_provider_code)
                .service(passkeys::start_passkey_sign_in)
                .service(passkeys::finish_passkey_sign_in),
        )
        .service(users::put_me)
        .service(users::patch_me)
        .service(users::list)
        .service(users::get_one)
        .service(users::put_one)
        .service(users::patch_one)
        .service(users::delete_one)
        .service(users::activate)
        .service(users::deactivate)
        .service(users::set_role)
        .service(api_keys::create)
        .service(api_keys::list)
        .service(api_keys::revoke)
        .service(audit_log::list)
        // `current` before `{id}`.
        .service(tenants::current)
        .service(tenants::list)
        .service(tenants::create)
        .service(tenants::get_one)
        .service(tenants::rename)
        .service(tenants::delete_one)
        .service(tenants::suspend)
        .service(tenants::activate)
        .service(vector::list)
        .service(vector::create)
        .service(vector::get_one)
        .service(vector::delete_one)
        .service(vector::index)
        .service(vector::upsert)
        .service(vector::get_points)
        .service(vector::delete_points)
        .service(vector::merge_payload)
        .service(vector::overwrite_payload)
        .service(vector::search)
        .service(vector::recommend)
        .service(storage::list_buckets)
        .service(storage::create_bucket)
        .service(storage::delete_bucket)
        .service(storage::usage)
        .service(storage::list_objects)
        .service(storage::delete_prefix)
        .service(storage::copy_object)
        .service(storage::move_object)
        .service(storage::put_object)
        .service(storage::get_object)
        .service(storage::update_object)
        .service(storage::delete_object)
        .service(uploads::create_upload)
        .service(uploads::get_upload)
        .service(uploads::put_upload_part)
        .service(uploads::complete_upload)
        .service(uploads::abort_upload)
        .service(uploads::sign_url)
        .service(realtime::create_ticket)
        .service(realtime::publish)
        .service(realtime::connect);
}
