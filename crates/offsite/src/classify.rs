//! From an `object_store` error to a closed [`OffsiteCode`], by what the client
//! saw (an HTTP status, a connection that failed, a timeout), never by parsing the
//! provider's message.

use manifest::OffsiteCode;
use object_store::client::{HttpError, HttpErrorKind};

/// The code for a failed request. A `NotFound` while writing means the bucket is
/// missing (an object we are about to create cannot be missing).
pub(crate) fn upload_error(error: &object_store::Error) -> OffsiteCode {
    match error {
        object_store::Error::Unauthenticated { .. }
        | object_store::Error::PermissionDenied { .. } => OffsiteCode::S3AuthFailed,
        object_store::Error::NotFound { .. } => OffsiteCode::S3BucketNotFound,
        other => transport(other)
            .or_else(|| s3_error_code(other))
            .unwrap_or(OffsiteCode::S3UploadFailed),
    }
}

/// For requests whose HTTP status `object_store` keeps to itself (listings,
/// multipart steps), the S3 error code in the response body, which the error
/// carries: S3's own stable vocabulary, not a provider's free text.
fn s3_error_code(error: &(dyn std::error::Error + 'static)) -> Option<OffsiteCode> {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(&current.to_string());
        cause = current.source();
    }
    let has_code = |code: &str| text.contains(&format!("<Code>{code}</Code>"));
    if has_code("NoSuchBucket") {
        return Some(OffsiteCode::S3BucketNotFound);
    }
    let auth_codes = [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
    ];
    if auth_codes.into_iter().any(has_code) {
        return Some(OffsiteCode::S3AuthFailed);
    }
    None
}

/// `S3Unreachable` or `S3Timeout` when the request never got an answer.
fn transport(error: &(dyn std::error::Error + 'static)) -> Option<OffsiteCode> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect => Some(OffsiteCode::S3Unreachable),
                HttpErrorKind::Timeout => Some(OffsiteCode::S3Timeout),
                _ => None,
            };
        }
        cause = current.source();
    }
    None
}

/// A short name of what kind of error this is, for messages that must not quote
/// the settings.
pub(crate) fn kind_of(error: &object_store::Error) -> &'static str {
    match error {
        object_store::Error::UnknownConfigurationKey { .. } => "unknown configuration key",
        object_store::Error::NotSupported { .. } => "not supported",
        _ => "invalid S3 settings",
    }
}
