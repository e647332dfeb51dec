//! Multipart uploads: a consultation request with its attachments, each
//! streamed to a private temporary file.

use super::MAX_BODY;
use super::intake::NewConsultationBody;
use super::problems::Problem;
use axum::body::Bytes;
use axum::http::StatusCode;
use konsilium_protocol::content::FileInfo;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, Type};

/// An attachment part as it arrived: its bytes in a temporary file
/// (deleted on drop), and its title and media type from the part's headers.
pub(super) struct Upload {
    pub(super) file: tempfile::NamedTempFile,
    pub(super) info: FileInfo,
}

/// A consultation request with its attachments.
// A plain JSON request reads as one of these without attachments.
#[derive(ToSchema)]
pub(super) struct Form {
    /// The request's JSON, checked as a plain JSON request is
    #[schema(value_type = NewConsultationBody)]
    pub(super) request: Bytes,
    #[schema(schema_with = attachment_parts, required = false)]
    pub(super) attachment: Vec<Upload>,
}

/// Any number of parts, each a file of any media type.
fn attachment_parts() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/octet-stream"),
        )
        .build()
}

/// Reads a `multipart/form-data` request: the JSON part `request` and any
/// number of `attachment` parts, each streamed to a temporary file.
pub(super) async fn read_multipart(
    request: axum::extract::Request,
    upload_dir: Option<&std::path::Path>,
) -> Result<Form, Problem> {
    use axum::extract::FromRequest;
    use tokio::io::AsyncWriteExt;
    let bad = |detail: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-multipart",
            "The multipart body is not valid",
            detail,
        )
    };
    let mut form = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    let mut json = None;
    let mut files = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
        match field.name().unwrap_or("") {
            "request" => {
                if json.is_some() {
                    return Err(Problem::invalid(
                        "request",
                        "only one request part may be given",
                    ));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
                    if bytes.len() + chunk.len() > MAX_BODY {
                        return Err(Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body-too-large",
                            "The request part is too large",
                            format!("the request part may hold at most {MAX_BODY} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                json = Some(Bytes::from(bytes));
            }
            "attachment" => {
                let index = files.len();
                let info = FileInfo {
                    title: field.file_name().map(str::to_owned),
                    content_type: field
                        .content_type()
                        .map_or_else(|| FileInfo::default().content_type, str::to_owned),
                };
                let failed = |e: std::io::Error| {
                    tracing::error!("HTTP API: temporary file for an attachment: {e}");
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "upload-storage",
                        "The attachment could not be stored",
                        format!("attachment {index} could not be stored: {e}"),
                    )
                };
                let tmp = match upload_dir {
                    Some(dir) => tempfile::Builder::new().prefix(".upload-").tempfile_in(dir),
                    None => tempfile::Builder::new()
                        .prefix("konsilium-upload-")
                        .tempfile(),
                }
                .map_err(failed)?;
                let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(failed)?);
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad(format!("attachment {index}: {}", e.body_text())))?
                {
                    out.write_all(&chunk).await.map_err(failed)?;
                }
                out.flush().await.map_err(failed)?;
                files.push(Upload { file: tmp, info });
            }
            other => {
                return Err(Problem::invalid(
                    other,
                    format!(
                        "unknown part {other:?}: a multipart request has one \"request\" part (JSON) and \"attachment\" parts"
                    ),
                ));
            }
        }
    }
    let json = json.ok_or_else(|| Problem::missing("request", "as a multipart part (JSON)"))?;
    Ok(Form {
        request: json,
        attachment: files,
    })
}
