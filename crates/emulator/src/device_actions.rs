//! The handlers of the registry's device actions (`store::actions` does the work):
//! `POST /devices/{id}/applyConfigurationContent` and `POST /devices/keys/regenerate`.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::server::{MAX_BODY_BYTES, Path, Shared, blocking, json, parse_object, read_body};
use crate::store::RegenerateRequest;
use twinops_iothub::wire::JsonMap;

/// 204 on an edge device (the content is written before the answer); 400 on a device that is
/// not an edge device or content that is no deployment's; 404 on a missing device.
pub(crate) async fn apply_configuration_content(
    State(hub): State<Shared>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Error> {
    let content: JsonMap = parse_object(&read_body(body, MAX_BODY_BYTES).await?)?;
    blocking(&hub, move |h| {
        h.store.apply_configuration_content(&id, &content)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 200 when every identity got new keys, 207 when some did and others are in `errors`, 400 when
/// none did (IoT Hub's three answers, all with the same `BulkRegenerateKeyResult` body).
pub(crate) async fn regenerate_keys(
    State(hub): State<Shared>,
    body: Body,
) -> Result<Response, Error> {
    let req: RegenerateRequest = parse_object(&read_body(body, MAX_BODY_BYTES).await?)?;
    let result = blocking(&hub, move |h| h.store.regenerate_keys(&req)).await?;
    let status = match (result.rotated_keys.is_empty(), result.errors.is_empty()) {
        (_, true) => StatusCode::OK,
        (false, false) => StatusCode::MULTI_STATUS,
        (true, false) => StatusCode::BAD_REQUEST,
    };
    Ok(json(status, &result))
}
