//! Attachment bytes: `GET /v1/attachments/{id}` (metadata and upload offset), the content URL
//! `/v1/attachments/{id}/content` (a tus 1.0 core upload resource: `HEAD` for the offset,
//! `PATCH` for bytes at `Upload-Offset`, `OPTIONS` for what the server supports; and `GET` to
//! download, with `Range`), and `POST /v1/attachments/{id}/finish` (verify and store, which
//! also happens by itself when the last byte arrives).
//!
//! Plain poem handlers: the bodies are raw bytes, not JSON, and are specified in
//! `sync-protocol/PROTOCOL.md` ("Attachments") with the rest of what apps do offline. Errors use
//! the API's one JSON shape.

use std::ops::Range;

use base64::Engine;
use futures_util::StreamExt;
use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler,
    http::{StatusCode, header},
    post,
    web::{Data, Json, Path},
};
use uuid::Uuid;

use super::{
    error::error_response,
    sync::{bearer_actor, failure, reject},
};
use crate::service::{
    Actor, Error, Result, Services,
    attachments::{AttachmentView, Chunk, ChunkOutcome, Download},
};

/// The header that says where a chunk starts, and (in answers) how many bytes the server has.
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// The tus protocol version this server speaks, in `Tus-Resumable` and `Tus-Version`.
const TUS_VERSION: &str = "1.0.0";
/// The tus extensions supported. `creation` is not: an upload is created by declaring the
/// attachment through sync. `termination` is not: an attachment ends by deleting its record.
const TUS_EXTENSIONS: &str = "checksum";
/// tus's status for a body that does not match its `Upload-Checksum`.
const CHECKSUM_MISMATCH: u16 = 460;

/// The attachment routes, to nest under `/v1/attachments`.
pub fn routes() -> Route {
    Route::new()
        .at("/:id", get(metadata))
        .at(
            "/:id/content",
            get(download)
                .head(upload_offset)
                .patch(upload_chunk)
                .options(tus_options)
                .around(|endpoint, req| async move {
                    // tus clients expect `Tus-Resumable` on every answer, errors included.
                    let mut response = endpoint.get_response(req).await;
                    response.headers_mut().insert(
                        "tus-resumable",
                        header::HeaderValue::from_static(TUS_VERSION),
                    );
                    Ok(response)
                }),
        )
        .at("/:id/finish", post(finish))
}

fn attachment_id(id: &str) -> poem::Result<Uuid> {
    id.parse().map_err(|_| {
        reject(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{id:?} is not an attachment id (a UUID)"),
        ))
    })
}

/// The attachment as the caller may see it.
async fn attachment_view(
    req: &Request,
    id: &str,
    services: &Services,
) -> poem::Result<AttachmentView> {
    let actor = bearer_actor(req, services).await?;
    services
        .attachment(&actor, attachment_id(id)?)
        .await
        .map_err(failure)
}

#[handler]
async fn metadata(
    req: &Request,
    Path(id): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    Ok(Json(attachment_view(req, &id, &services).await?).into_response())
}

/// tus `HEAD`: where the upload stands. Also answers for attachments that are stored.
#[handler]
async fn upload_offset(
    req: &Request,
    Path(id): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let view = attachment_view(req, &id, &services).await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(UPLOAD_OFFSET, view.received)
        .header("upload-length", view.size)
        .header(header::CACHE_CONTROL, "no-store")
        .finish())
}

/// tus `OPTIONS`: what this server supports. Needs no credentials.
#[handler]
fn tus_options(services: Data<&Services>) -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("tus-version", TUS_VERSION)
        .header("tus-extension", TUS_EXTENSIONS)
        .header("tus-checksum-algorithm", "sha256")
        .header("tus-max-size", services.config().attachments.max_file_bytes)
        .finish()
}

#[handler]
async fn upload_chunk(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    services: Data<&Services>,
) -> poem::Result<Response> {
    if let Some(version) = req.header("tus-resumable")
        && version.trim() != TUS_VERSION
    {
        return Ok(Json(serde_json::json!({
            "code": "tus_version_not_supported",
            "message": format!("this server speaks tus {TUS_VERSION}, not {version:?}"),
        }))
        .with_status(StatusCode::PRECONDITION_FAILED)
        .with_header("tus-version", TUS_VERSION)
        .into_response());
    }
    let actor = bearer_actor(req, &services).await?;
    let id = attachment_id(&id)?;
    let offset: i64 = req
        .header(UPLOAD_OFFSET)
        .and_then(|value| value.trim().parse().ok())
        .filter(|offset| *offset >= 0)
        .ok_or_else(|| {
            reject(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_offset",
                "send `Upload-Offset: <byte offset>` with every chunk; HEAD the content URL (or \
                 GET the attachment) for the offset the server has",
            ))
        })?;
    if let Some(content_type) = req.header(header::CONTENT_TYPE) {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/offset+octet-stream")
            && !essence.eq_ignore_ascii_case("application/octet-stream")
        {
            return Err(reject(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the bytes as `application/offset+octet-stream`",
            )));
        }
    }
    let checksum = req
        .header("upload-checksum")
        .map(parse_checksum)
        .transpose()?;
    let length = req
        .header(header::CONTENT_LENGTH)
        .and_then(|value| value.trim().parse::<i64>().ok());
    let chunk = Chunk {
        offset,
        length,
        checksum,
        body: body.into_bytes_stream().boxed(),
    };
    let outcome = services
        .upload_chunk(&actor, id, chunk)
        .await
        .map_err(failure)?;
    let (status, code, message, received) = match outcome {
        ChunkOutcome::Received(received) => {
            return Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(UPLOAD_OFFSET, received)
                .finish());
        }
        ChunkOutcome::Gap(received) => (
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!(
                "the chunk starts at {offset} but the server has {received} bytes; send from \
                 {received}"
            ),
            received,
        ),
        ChunkOutcome::Interrupted(received) => (
            StatusCode::BAD_REQUEST,
            "body_incomplete",
            format!(
                "the body ended before all its bytes arrived; the server has {received} bytes, \
                 send from there"
            ),
            received,
        ),
        ChunkOutcome::ChecksumMismatch(received) => (
            StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
            "checksum_mismatch",
            format!(
                "the body does not match its Upload-Checksum and was discarded; the server has \
                 {received} bytes"
            ),
            received,
        ),
    };
    Ok(Json(serde_json::json!({
        "code": code,
        "message": message,
        "details": { "received": received },
    }))
    .with_status(status)
    .with_header(UPLOAD_OFFSET, received)
    .into_response())
}

/// Reads tus's `Upload-Checksum: sha256 <base64 digest>`.
fn parse_checksum(value: &str) -> poem::Result<[u8; 32]> {
    let (algorithm, digest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(reject(error_response(
            StatusCode::BAD_REQUEST,
            "checksum_algorithm_not_supported",
            format!("Upload-Checksum takes sha256, not {algorithm:?}"),
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            reject(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_checksum",
                "Upload-Checksum is `sha256 <the body's SHA-256 digest in base64>`",
            ))
        })
}

#[handler]
async fn finish(
    req: &Request,
    Path(id): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let actor = bearer_actor(req, &services).await?;
    let view = services
        .finish_upload(&actor, attachment_id(&id)?)
        .await
        .map_err(failure)?;
    Ok(Json(view).into_response())
}

#[handler]
async fn download(
    req: &Request,
    Path(id): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let actor = bearer_actor(req, &services).await?;
    let requested = req.header(header::RANGE).map(str::to_owned);
    download_response(&services, &actor, attachment_id(&id)?, requested)
        .await
        .map_err(failure)
}

/// An attachment's bytes, all or the requested `Range`, as the answer to a download (also the
/// console's, which has its own sign-in but the same access rules). A range outside the file
/// answers 416 here; other errors are the caller's to present.
pub(crate) async fn download_response(
    services: &Services,
    actor: &Actor,
    id: Uuid,
    requested_range: Option<String>,
) -> Result<Response> {
    let opened = services
        .download(actor, id, |size| match requested_range {
            None => Ok(None),
            Some(text) => resolve_range(&text, size),
        })
        .await;
    let Download {
        view,
        range,
        size,
        body,
    } = match opened {
        Ok(opened) => opened,
        Err(Error::Invalid {
            code: "range_not_satisfiable",
            message,
            details,
        }) => {
            let size = details
                .as_ref()
                .and_then(|d| d.get("size"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            return Ok(Json(serde_json::json!({
                "code": "range_not_satisfiable",
                "message": message,
                "details": details,
            }))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .into_response());
        }
        Err(err) => return Err(err),
    };
    let partial = range != (0..size);
    let content_type = view
        .content_type
        .as_str()
        .unwrap_or("application/octet-stream");
    let mut response = Response::builder()
        .status(if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .content_type(content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, range.end - range.start)
        .header(
            header::ETAG,
            format!("\"{}\"", view.sha256.as_str().unwrap_or_default()),
        )
        // Never rendered by a browser as a page of ours.
        .header("x-content-type-options", "nosniff")
        .header(header::CONTENT_DISPOSITION, "attachment");
    if partial {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    Ok(response.body(Body::from_bytes_stream(body)))
}

/// Reads a `Range` header against a file of `size` bytes: `bytes=a-b`, `bytes=a-` or
/// `bytes=-n`. Several ranges, or another unit, are ignored (the whole file is sent, as HTTP
/// allows); a range outside the file is refused.
fn resolve_range(header: &str, size: u64) -> Result<Option<Range<u64>>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = || Error::Invalid {
        code: "range_not_satisfiable",
        message: format!("the range {spec:?} is outside the file's {size} bytes"),
        details: Some(serde_json::json!({ "size": size })),
    };
    let (first, last) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().map_err(|_| unsatisfiable())?;
        if suffix == 0 {
            return Err(unsatisfiable());
        }
        size.saturating_sub(suffix)..size
    } else {
        let start: u64 = first.parse().map_err(|_| unsatisfiable())?;
        let end = if last.is_empty() {
            size
        } else {
            let last: u64 = last.parse().map_err(|_| unsatisfiable())?;
            if last < start {
                return Err(unsatisfiable());
            }
            last.saturating_add(1).min(size)
        };
        start..end
    };
    if range.start >= size || range.is_empty() {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::resolve_range;

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(resolve_range("bytes=0-99", 1000).unwrap(), Some(0..100));
        assert_eq!(resolve_range("bytes=900-", 1000).unwrap(), Some(900..1000));
        assert_eq!(resolve_range("bytes=-100", 1000).unwrap(), Some(900..1000));
        assert_eq!(
            resolve_range("bytes=990-2000", 1000).unwrap(),
            Some(990..1000)
        );
        assert_eq!(resolve_range("bytes=-5000", 1000).unwrap(), Some(0..1000));
        assert_eq!(resolve_range("bytes=0-1,5-6", 1000).unwrap(), None);
        assert_eq!(resolve_range("items=0-1", 1000).unwrap(), None);
        assert!(resolve_range("bytes=1000-", 1000).is_err());
        assert!(resolve_range("bytes=5-2", 1000).is_err());
        assert!(resolve_range("bytes=x-2", 1000).is_err());
        assert!(resolve_range("bytes=-0", 1000).is_err());
        // The largest last byte there is means "to the end", not a wrapped-around empty range.
        assert_eq!(
            resolve_range("bytes=0-18446744073709551615", 1000).unwrap(),
            Some(0..1000)
        );
    }
}
