//! The OpenAPI 3.1 description of the API, served at `/openapi.json`. It is
//! assembled from the handlers' `#[utoipa::path]`s and the schemas derived
//! from the types they read and answer with, so that it says what the code
//! does rather than what someone remembered to write down.

use super::problems::Problem;
use super::render::json_response;
use super::{actions, bundles, consultations, files, video};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Konsilium node API",
        description = "Consultations between medical organizations. Errors are RFC 9457 problem documents."
    ),
    paths(
        consultations::list_consultations,
        consultations::create_consultation,
        consultations::get_consultation,
        actions::act,
        bundles::fhir_bundle,
        files::get_file,
        video::open_video,
        video::whip,
        video::whep,
        video::leave,
        video::room,
        bundles::import_fhir,
        openapi,
    ),
    // Named here as well because clients of an undocumented path get one.
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The scheme the document-wide `security` requirement names: the token of
/// a configured user.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components.get_or_insert_default().add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An OpenAPI document, described only as far as a client needs to
/// recognise one.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "utoipa builds the document; this only describes it"
)]
struct Document {
    openapi: String,
    #[schema(value_type = Object)]
    paths: Value,
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    summary = "This description",
    // Readable without a token: a client learns here how to get one in.
    security(),
    responses((status = 200, description = "OpenAPI 3.1", body = inline(Document)))
)]
pub(super) async fn openapi() -> Response {
    json_response(StatusCode::OK, &openapi_document())
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("an OpenAPI document serializes to JSON")
}
