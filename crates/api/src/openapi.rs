//! The OpenAPI 3.1 document, generated from the registered routes.
//!
//! The problem response is declared once, as `components.responses.Problem`: routes state only
//! the status and which codes it carries (`(status = 404, description = "`not_found`")`), and
//! every such error response — and every operation's `default` — refers to it. Each operation's
//! id is unique (`<tag>_<handler>`), as typed clients need. A struct that flattens another is
//! one object in the document, not an `allOf` of its parts (see [`merge_flattened`]). No text
//! may hold U+0000, and every string the document describes says so (see [`refuse_nul`]).

use std::collections::BTreeSet;

use actix_web::App;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayItems, Object, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes,
    SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{PROBLEM_JSON, Problem, ProblemField};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sovereign",
        description = "Self-hosted, multi-tenant backend: accounts and sessions, tenants isolated by \
PostgreSQL row-level security, cache, vector search and realtime channels.\n\n\
Every error is an RFC 9457 problem body (`application/problem+json`) with a stable `code` and \
the `request_id` that also appears in the `X-Request-ID` header and the server's logs.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    components(schemas(
        Problem,
        ProblemField,
        sovereign_realtime::protocol::ClientFrame,
        sovereign_realtime::protocol::ServerFrame<'_>,
        sovereign_realtime::protocol::Position,
        sovereign_realtime::protocol::RequestId,
        sovereign_realtime::protocol::PresenceUser,
        sovereign_realtime::protocol::PresenceEvent,
    )),
    tags(
        (name = "operations", description = "Service information, liveness and readiness"),
        (name = "tenancy", description = "Tenants and tenant resolution; tenant administration for superadmins"),
        (name = "auth", description = "Registration, sign-in, sessions, password flows and the JWKS document"),
        (name = "users", description = "The caller's profile, and user administration within a tenant"),
        (name = "api-keys", description = "Long-lived credentials for programs"),
        (name = "realtime", description = "Websocket channels (`GET /api/v1/ws`): tickets for browsers and server-side publishing. The frames are the `ClientFrame` and `ServerFrame` schemas; docs/realtime.md describes the protocol"),
        (name = "vector", description = "Vector search: collections, points with JSON payloads, filtered nearest-neighbour search, recommendations and embeddings"),
        (name = "storage", description = "File storage: buckets, and objects streamed in and out (ranges, ETags); users own what they write"),
        (name = "audit", description = "The audit log: append-only, tenant-scoped, for administrators"),
    ),
    paths(routes::users::me),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

/// How clients authenticate: access tokens (also obtainable through the OAuth2 password flow,
/// which the docs page's Authorize button uses) and API keys.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from /api/v1/auth/login, or an API key",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key from /api/v1/api-keys",
            ))),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(Password::new(
                    "/api/v1/auth/token",
                    Scopes::new(),
                ))],
                "Sign in with an email address and password (OAuth2 password grant)",
            )),
        );
    }
}

/// The shared error response's name under `components.responses`.
const PROBLEM_RESPONSE: &str = "Problem";

/// Builds the document from the same route registration the server uses.
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, routes) = App::new()
        .into_utoipa_app()
        .configure(routes::register)
        .split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();

    let problem = ResponseBuilder::new()
        .description("An error, as an RFC 9457 problem body.")
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header(
            "X-Request-ID",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some("The request id, also in the body and the logs."))
                .build(),
        )
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .responses
        .insert(PROBLEM_RESPONSE.to_owned(), RefOr::T(problem));

    alias_me(&mut doc);
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            refer_errors_to_problem(operation);
            add_default_problem(operation);
            qualify_operation_id(operation);
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && let Some(schema) = parameter.schema.as_mut()
                {
                    refuse_nul(schema);
                }
            }
        }
    }
    let mut doc = merge_flattened(doc);
    if let Some(components) = doc.components.as_mut() {
        components.schemas.values_mut().for_each(refuse_nul);
        for (name, fields) in EXACTLY_ONE_OF {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*name) {
                exactly_one_of(object, fields);
            }
        }
    }
    doc
}

/// Request objects that take exactly one of some fields (present and not `null`), a rule the
/// derived schemas cannot state.
const EXACTLY_ONE_OF: &[(&str, &[&str])] = &[
    ("SearchRequest", &["vector", "text"]),
    ("PointInput", &["vector", "text"]),
    ("PointSelector", &["ids", "filter"]),
    ("PayloadUpdate", &["ids", "filter"]),
    ("Match", &["value", "any"]),
];

/// Adds `oneOf` with one alternative per field: the field is present and not `null`. utoipa's
/// object has no `oneOf` of its own; its map of extensions is written into the object as it is,
/// so the keyword goes there.
fn exactly_one_of(object: &mut Object, fields: &[&str]) {
    let alternatives: Vec<serde_json::Value> = fields
        .iter()
        .map(|field| {
            serde_json::json!({
                "required": [field],
                "properties": {*field: {"not": {"type": "null"}}}
            })
        })
        .collect();
    object
        .extensions
        .get_or_insert_with(Default::default)
        .insert("oneOf".to_owned(), alternatives.into());
}

/// The server refuses U+0000 in every path segment, query parameter and JSON string
/// (`nul_character`): PostgreSQL cannot store it. A string schema without a pattern of its
/// own gets one that says so; the patterns written by hand leave it out themselves. Free-form
/// payloads (any JSON) cannot carry the rule.
pub(crate) const NO_NUL: &str = "^[^\\u0000]*$";

fn refuse_nul(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            let is_string = match &object.schema_type {
                SchemaType::Type(kind) => *kind == Type::String,
                SchemaType::Array(kinds) => kinds.contains(&Type::String),
                SchemaType::AnyValue => false,
            };
            if is_string
                && object.pattern.is_none()
                && object.format.is_none()
                && object.enum_values.is_none()
            {
                object.pattern = Some(NO_NUL.to_owned());
            }
            object.properties.values_mut().for_each(refuse_nul);
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                refuse_nul(items);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(refuse_nul),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(refuse_nul),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(refuse_nul),
        _ => {}
    }
}

/// utoipa describes a struct that flattens another (`#[serde(flatten)]`) as the `allOf` of its
/// parts. No part of an `allOf` can then say `additionalProperties: false`, since it would
/// refuse the other part's fields; and generated clients make two types of one. Such schemas
/// become one object here. A request body among them is closed: the request types refuse
/// unknown fields also when they flatten (`sovereign_vector::NoOtherFields`), and an
/// integration test sends an unknown field to every closed request body of the document.
fn merge_flattened(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let request_bodies = request_body_schemas(&doc);
    let Some(components) = doc.components.as_mut() else {
        return doc;
    };
    let schemas = &mut components.schemas;
    let flattened: Vec<String> = schemas
        .iter()
        .filter(|(_, schema)| matches!(schema, RefOr::T(Schema::AllOf(_))))
        .map(|(name, _)| name.clone())
        .collect();
    let mut parts_used = BTreeSet::new();
    for name in flattened {
        let Some(RefOr::T(Schema::AllOf(all_of))) = schemas.get(&name) else {
            continue;
        };
        let mut merged = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(all_of.description.clone())
            .examples(all_of.examples.clone())
            .build();
        merged.example.clone_from(&all_of.example);
        let mut mergeable = true;
        for part in &all_of.items {
            let part = match part {
                RefOr::Ref(reference) => {
                    let part_name = schema_name(reference);
                    parts_used.insert(part_name.to_owned());
                    schemas.get(part_name)
                }
                inline @ RefOr::T(_) => Some(inline),
            };
            let Some(RefOr::T(Schema::Object(part))) = part else {
                mergeable = false;
                break;
            };
            merged.properties.extend(part.properties.clone());
            merged.required.extend(part.required.iter().cloned());
        }
        if !mergeable {
            continue;
        }
        if request_bodies.contains(&name) {
            merged.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
        schemas.insert(name, RefOr::T(Schema::Object(merged)));
    }
    // A request body that is one of several objects (an internally tagged enum, which refuses
    // unknown fields like every request type) is closed in each of them.
    for name in &request_bodies {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = schemas.get_mut(name) {
            for variant in &mut one_of.items {
                if let RefOr::T(Schema::Object(variant)) = variant {
                    variant.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
    // A part that only ever appeared inside another schema is gone with the `allOf`.
    let text = serde_json::to_string(&doc).unwrap_or_default();
    if let Some(components) = doc.components.as_mut() {
        for part in parts_used {
            if !text.contains(&format!("\"#/components/schemas/{part}\"")) {
                components.schemas.remove(&part);
            }
        }
    }
    doc
}

fn schema_name(reference: &Ref) -> &str {
    reference
        .ref_location
        .trim_start_matches("#/components/schemas/")
}

/// The names of the schemas operations take as request bodies.
fn request_body_schemas(doc: &utoipa::openapi::OpenApi) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for item in doc.paths.paths.values() {
        let operations = [
            &item.get,
            &item.put,
            &item.post,
            &item.delete,
            &item.options,
            &item.head,
            &item.patch,
            &item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let Some(RefOr::T(body)) = &operation.request_body else {
                continue;
            };
            for content in body.content.values() {
                if let RefOr::T(content) = content
                    && let Some(RefOr::Ref(reference)) = &content.schema
                {
                    names.insert(schema_name(reference).to_owned());
                }
            }
        }
    }
    names
}

/// `/api/v1/auth/me` is served by the same handler as `/api/v1/users/me`: the same operation,
/// under the auth tag.
fn alias_me(doc: &mut utoipa::openapi::OpenApi) {
    let [profile, alias] = routes::users::ME_PATHS;
    let Some(mut operation) = doc.paths.paths.get(profile).and_then(|i| i.get.clone()) else {
        return;
    };
    operation.tags = Some(vec!["auth".to_owned()]);
    let mut item = utoipa::openapi::PathItem::default();
    item.get = Some(operation);
    doc.paths.paths.insert(alias.to_owned(), item);
}

/// An error response a route declares by status and description only is the shared problem
/// response, with the route's description of the codes it carries.
fn refer_errors_to_problem(operation: &mut Operation) {
    for (status, response) in &mut operation.responses.responses {
        let is_error = status.parse::<u16>().is_ok_and(|s| s >= 400);
        if let RefOr::T(declared) = response
            && is_error
            && declared.content.is_empty()
        {
            let mut reference = Ref::from_response_name(PROBLEM_RESPONSE);
            reference.description = declared.description.clone();
            *response = RefOr::Ref(reference);
        }
    }
}

/// `<tag>_<handler>`: handler names repeat across route modules (`list`, `create`, …).
fn qualify_operation_id(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .map(|tag| tag.replace('-', "_"));
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        *id = format!("{tag}_{id}");
    }
}

fn add_default_problem(operation: &mut Operation) {
    operation
        .responses
        .responses
        .entry("default".to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(PROBLEM_RESPONSE)));
}

/// The document as pretty-printed JSON with a trailing newline, as committed in
/// `docs/openapi.json`.
#[must_use]
pub fn document_json() -> String {
    to_json(&document())
}

pub(crate) fn to_json(doc: &utoipa::openapi::OpenApi) -> String {
    // The document is plain data; serialising it cannot fail.
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_can_answer_a_problem() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = json["paths"].as_object().unwrap();
        for path in ["/", "/health", "/ready"] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let mut ids = BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                assert_eq!(
                    op["responses"]["default"]["$ref"], "#/components/responses/Problem",
                    "{method} {path}"
                );
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let is_problem = response["$ref"] == "#/components/responses/Problem";
                        let is_report = response["content"]["application/json"].is_object();
                        assert!(is_problem || is_report, "{method} {path} {status}");
                    }
                }
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} repeats");
            }
        }
        assert!(json["components"]["schemas"]["Problem"].is_object());

        let schemas = &json["components"]["schemas"];
        assert!(
            schemas.get("QueryOptions").is_none(),
            "merged into the searches"
        );
        assert_eq!(
            schemas["LoginRequest"]["properties"]["password"]["pattern"],
            NO_NUL
        );
        assert_eq!(
            schemas["SearchRequest"]["oneOf"],
            serde_json::json!([
                {"required": ["vector"], "properties": {"vector": {"not": {"type": "null"}}}},
                {"required": ["text"], "properties": {"text": {"not": {"type": "null"}}}}
            ])
        );
        for variant in schemas["IndexRequest"]["oneOf"].as_array().unwrap() {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
        }
        assert_eq!(
            paths["/api/v1/auth/me"]["get"]["responses"],
            paths["/api/v1/users/me"]["get"]["responses"],
            "one handler, one description"
        );
    }
}
