//! Attachment bytes: `GET /v1/attachments/{id}` (metadata and upload offset),
//! `PATCH /v1/attachments/{id}/content` (a chunk at `Upload-Offset`),
//! `POST /v1/attachments/{id}/finish` (verify and store), and
//! `GET /v1/attachments/{id}/content` (download, with `Range`).
//!
//! Plain poem handlers: the bodies are raw bytes, not JSON, and are specified in
//! `sync-protocol/PROTOCOL.md` ("Attachments") with the rest of what apps do offline. Errors use
//! the API's one JSON shape.

use std::ops::Range;

use poem::{
    Body, IntoResponse, Request, Response, Route, get, handler,
    http::{StatusCode, header},
    patch, post,
    web::{Data, Json, Path},
};
use uuid::Uuid;

use super::{
    error::error_response,
    sync::{bearer_actor, failure, reject},
};
use crate::service::{
    Error, Result, Services,
    attachments::{ChunkOutcome, Download},
};

/// The header that says where a chunk starts, and (in answers) how many bytes the server has.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// The attachment routes, to nest under `/v1/attachments`.
pub fn routes() -> Route {
    Route::new()
        .at("/:id", get(metadata))
        .at("/:id/content", patch(upload_chunk).get(download))
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

#[handler]
async fn metadata(
    req: &Request,
    Path(id): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let actor = bearer_actor(req, &services).await?;
    let view = services
        .attachment(&actor, attachment_id(&id)?)
        .await
        .map_err(failure)?;
    Ok(Json(view).into_response())
}

#[handler]
async fn upload_chunk(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    services: Data<&Services>,
) -> poem::Result<Response> {
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
                "send `Upload-Offset: <byte offset>` with every chunk; GET the attachment for the \
                 offset the server has",
            ))
        })?;
    let limit = services.config().attachments.max_chunk_bytes;
    let chunk = body.into_bytes_limit(limit).await.map_err(|_| {
        reject(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "chunk_too_large",
            format!("a chunk carries at most {limit} bytes"),
        ))
    })?;
    match services
        .upload_chunk(&actor, id, offset, chunk)
        .await
        .map_err(failure)?
    {
        ChunkOutcome::Received(received) => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(UPLOAD_OFFSET, received)
            .finish()),
        ChunkOutcome::Gap(received) => Ok(Json(serde_json::json!({
            "code": "offset_mismatch",
            "message": format!(
                "the chunk starts at {offset} but the server has {received} bytes; send from \
                 {received}"
            ),
            "details": { "received": received },
        }))
        .with_status(StatusCode::CONFLICT)
        .with_header(UPLOAD_OFFSET, received)
        .into_response()),
    }
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
    let opened = services
        .download(&actor, attachment_id(&id)?, |size| match requested {
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
        Ok(download) => download,
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
        Err(err) => return Err(failure(err)),
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
            (last + 1).min(size)
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
    }
}
