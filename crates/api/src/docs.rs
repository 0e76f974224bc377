//! The interactive API docs (Swagger UI, served from files compiled into the binary, so it
//! works on an offline host) and the OpenAPI document they read.

use actix_web::HttpResponse;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use actix_web::web::{self, Bytes};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Registers `/docs/`, its redirect from `/docs`, and the document.
pub(crate) fn register(cfg: &mut web::ServiceConfig, document: Bytes) {
    cfg.service(
        web::resource(OPENAPI_PATH)
            .app_data(web::Data::new(document))
            .route(web::get().to(serve_document)),
    )
    .service(web::resource("/docs").route(web::get().to(redirect_to_docs)))
    .service(
        SwaggerUi::new("/docs/{_:.*}").config(
            Config::new([OPENAPI_PATH])
                .try_it_out_enabled(true)
                .persist_authorization(true),
        ),
    );
}

async fn serve_document(document: web::Data<Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(document.get_ref().clone())
}

async fn redirect_to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((LOCATION, HeaderValue::from_static("/docs/")))
        .finish()
}
