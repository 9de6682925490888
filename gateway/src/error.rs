//! The one place where failures become HTTP responses: a status and a JSON body
//! `{"code": ..., "message": ..., "details": ...}` whose `code` is stable and documented in
//! `docs/errors.md`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use revenant_runtime::InvokeError;

/// Every error code an API answers with: its stable name and its HTTP status, in one place.
/// `docs/errors.md` lists exactly these (checked by a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadArgument,
    BadHeader,
    BadJson,
    BadPath,
    BodyUnreadable,
    InvalidWorkerName,
    Unauthenticated,
    InvalidToken,
    Forbidden,
    CorsRefused,
    HostRefused,
    OriginRefused,
    RouteNotFound,
    MethodNotAllowed,
    BodyTooLarge,
    UnsupportedMediaType,
    MailboxFull,
    WorkerNotFound,
    WorkerExists,
    DefinitionNotFound,
    InvalidDefinition,
    InvalidComponent,
    TooManyComponents,
    TooManyDefinitions,
    IncompatibleComponent,
    BadResponseStatus,
    ExportError,
    WorkerExited,
    WorkerInterrupted,
    WorkerTrap,
    GuestMemoryExceeded,
    ValueTooLarge,
    RecordingFailed,
    OutcomeTruncated,
    WorkerDiverged,
    ReadOnlyViolation,
    UnknownComponent,
    UnknownFunction,
    Internal,
    StorageUnavailable,
    StorageDamaged,
    StorageFull,
    TooManyWorkers,
    InvocationTimeout,
    DeadlineExceeded,
    NotOwner,
    WorkerMoved,
    ShardUnavailable,
    ForwardFailed,
    NotReady,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 50] = [
        Self::BadArgument,
        Self::BadHeader,
        Self::UnsupportedMediaType,
        Self::BadJson,
        Self::BadPath,
        Self::BodyUnreadable,
        Self::InvalidWorkerName,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::Forbidden,
        Self::CorsRefused,
        Self::HostRefused,
        Self::OriginRefused,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::BodyTooLarge,
        Self::MailboxFull,
        Self::WorkerNotFound,
        Self::WorkerExists,
        Self::DefinitionNotFound,
        Self::InvalidDefinition,
        Self::InvalidComponent,
        Self::TooManyComponents,
        Self::TooManyDefinitions,
        Self::IncompatibleComponent,
        Self::BadResponseStatus,
        Self::ExportError,
        Self::WorkerExited,
        Self::WorkerInterrupted,
        Self::WorkerTrap,
        Self::GuestMemoryExceeded,
        Self::ValueTooLarge,
        Self::RecordingFailed,
        Self::OutcomeTruncated,
        Self::WorkerDiverged,
        Self::ReadOnlyViolation,
        Self::UnknownComponent,
        Self::UnknownFunction,
        Self::Internal,
        Self::StorageUnavailable,
        Self::StorageDamaged,
        Self::StorageFull,
        Self::TooManyWorkers,
        Self::InvocationTimeout,
        Self::DeadlineExceeded,
        Self::NotOwner,
        Self::WorkerMoved,
        Self::ShardUnavailable,
        Self::ForwardFailed,
        Self::NotReady,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::BadArgument => "bad_argument",
            Self::BadHeader => "bad_header",
            Self::BadJson => "bad_json",
            Self::BadPath => "bad_path",
            Self::BodyUnreadable => "body_unreadable",
            Self::InvalidWorkerName => "invalid_worker_name",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::Forbidden => "forbidden",
            Self::CorsRefused => "cors_refused",
            Self::HostRefused => "host_refused",
            Self::OriginRefused => "origin_refused",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MailboxFull => "mailbox_full",
            Self::WorkerNotFound => "worker_not_found",
            Self::WorkerExists => "worker_exists",
            Self::DefinitionNotFound => "definition_not_found",
            Self::InvalidDefinition => "invalid_definition",
            Self::InvalidComponent => "invalid_component",
            Self::TooManyComponents => "too_many_components",
            Self::TooManyDefinitions => "too_many_definitions",
            Self::IncompatibleComponent => "incompatible_component",
            Self::BadResponseStatus => "bad_response_status",
            Self::ExportError => "export_error",
            Self::WorkerExited => "worker_exited",
            Self::WorkerInterrupted => "worker_interrupted",
            Self::WorkerTrap => "worker_trap",
            Self::GuestMemoryExceeded => "guest_memory_exceeded",
            Self::ValueTooLarge => "value_too_large",
            Self::RecordingFailed => "recording_failed",
            Self::OutcomeTruncated => "outcome_truncated",
            Self::WorkerDiverged => "worker_diverged",
            Self::ReadOnlyViolation => "read_only_violation",
            Self::UnknownComponent => "unknown_component",
            Self::UnknownFunction => "unknown_function",
            Self::Internal => "internal",
            Self::StorageUnavailable => "storage_unavailable",
            Self::StorageDamaged => "storage_damaged",
            Self::StorageFull => "storage_full",
            Self::TooManyWorkers => "too_many_workers",
            Self::InvocationTimeout => "invocation_timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotOwner => "not_owner",
            Self::WorkerMoved => "worker_moved",
            Self::ShardUnavailable => "shard_unavailable",
            Self::ForwardFailed => "forward_failed",
            Self::NotReady => "not_ready",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::BadArgument
            | Self::BadHeader
            | Self::BadJson
            | Self::BadPath
            | Self::BodyUnreadable
            | Self::InvalidWorkerName
            | Self::InvalidDefinition
            | Self::InvalidComponent => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CorsRefused | Self::HostRefused | Self::OriginRefused => {
                StatusCode::FORBIDDEN
            }
            Self::RouteNotFound | Self::WorkerNotFound | Self::DefinitionNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge | Self::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MailboxFull => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyComponents
            | Self::TooManyDefinitions
            | Self::IncompatibleComponent
            | Self::WorkerExists
            | Self::WorkerInterrupted => StatusCode::CONFLICT,
            // `export_error` answers with the route's `error_status`; 500 is only its default.
            Self::BadResponseStatus
            | Self::ExportError
            | Self::WorkerTrap
            | Self::GuestMemoryExceeded
            | Self::RecordingFailed
            | Self::WorkerDiverged
            | Self::ReadOnlyViolation
            | Self::UnknownComponent
            | Self::UnknownFunction
            | Self::StorageDamaged
            | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::WorkerExited | Self::OutcomeTruncated => StatusCode::GONE,
            Self::StorageUnavailable
            | Self::TooManyWorkers
            | Self::NotOwner
            | Self::WorkerMoved
            | Self::ShardUnavailable
            | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::ForwardFailed => StatusCode::BAD_GATEWAY,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::InvocationTimeout | Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the status is the route's (`error_status`) rather than the code's own.
    pub fn status_per_route(self) -> bool {
        self == Self::ExportError
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Machine-readable context (`null` when there is none).
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadArgument, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.code.status();
        self.into_response_with(status)
    }

    /// The response with another status than the code's own (`export_error`'s route status).
    pub fn into_response_with(self, status: StatusCode) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "code": self.code.name(),
            "message": self.message,
            "details": self.details,
        });
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                let challenge = if self.code == ErrorCode::InvalidToken {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let code = match &e {
            InvokeError::UnknownComponent(_) => ErrorCode::UnknownComponent,
            InvokeError::UnknownFunction { .. } => ErrorCode::UnknownFunction,
            InvokeError::InvalidWorkerName(_) => ErrorCode::InvalidWorkerName,
            InvokeError::BadArguments(_) => ErrorCode::BadArgument,
            InvokeError::MailboxFull(_) => ErrorCode::MailboxFull,
            InvokeError::TooManyWorkers(_) => ErrorCode::TooManyWorkers,
            InvokeError::Storage(_) => ErrorCode::StorageUnavailable,
            InvokeError::StorageDamaged(_) => ErrorCode::StorageDamaged,
            InvokeError::StorageFull(_) => ErrorCode::StorageFull,
            InvokeError::Timeout(_) => ErrorCode::InvocationTimeout,
            InvokeError::Interrupted(_) => ErrorCode::WorkerInterrupted,
            InvokeError::WorkerNotFound(_) => ErrorCode::WorkerNotFound,
            InvokeError::WorkerExists(_) => ErrorCode::WorkerExists,
            InvokeError::Exited { .. } => ErrorCode::WorkerExited,
            InvokeError::Trap(_) => ErrorCode::WorkerTrap,
            InvokeError::MemoryLimit(_) => ErrorCode::GuestMemoryExceeded,
            InvokeError::ValueTooLarge(_) => ErrorCode::ValueTooLarge,
            InvokeError::RecordingFailed(_) => ErrorCode::RecordingFailed,
            InvokeError::OutcomeTruncated(_) => ErrorCode::OutcomeTruncated,
            InvokeError::Divergence(_) => ErrorCode::WorkerDiverged,
            InvokeError::ReadOnlyViolation(_) => ErrorCode::ReadOnlyViolation,
            InvokeError::Internal(_) => ErrorCode::Internal,
            InvokeError::NotOwner(_) => ErrorCode::NotOwner,
            InvokeError::Moved(_) => ErrorCode::WorkerMoved,
            // The stored outcome of an earlier call: answered with the code it had.
            InvokeError::Repeated { code, .. } => {
                ErrorCode::from_name(code).unwrap_or(ErrorCode::WorkerTrap)
            }
        };
        Self::new(code, e.to_string())
    }
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/errors.md` documents exactly the codes the gateway answers with, each with its
    /// status.
    #[test]
    fn the_documented_codes_are_exactly_the_codes() {
        let doc = include_str!("../../docs/errors.md");
        let mut documented = Vec::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, status, codes, ..] = cells.as_slice() else {
                continue;
            };
            // A code answered with the route's status documents it as `error_status` (0 here).
            let status = match status.parse::<u16>() {
                Ok(s) => s,
                Err(_) if *status == "`error_status`" => 0,
                Err(_) => continue,
            };
            for code in codes.split(',') {
                let code = code.trim().trim_matches('`');
                documented.push((code.to_string(), status));
            }
        }
        let mut actual: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| {
                let status = if c.status_per_route() {
                    0
                } else {
                    c.status().as_u16()
                };
                (c.name().to_string(), status)
            })
            .collect();
        documented.sort();
        actual.sort();
        assert_eq!(documented, actual, "docs/errors.md and ErrorCode disagree");
    }

    /// Every code the runtime reports (and records with a failed call) is one the gateway
    /// knows, under the same name.
    #[test]
    fn every_runtime_error_keeps_its_code() {
        use std::time::Duration;
        let errors = [
            InvokeError::UnknownComponent("c".into()),
            InvokeError::UnknownFunction {
                component: "c".into(),
                function: "f".into(),
            },
            InvokeError::InvalidWorkerName("w".into()),
            InvokeError::BadArguments("a".into()),
            InvokeError::MailboxFull("w".into()),
            InvokeError::TooManyWorkers(1),
            InvokeError::Trap("t".into()),
            InvokeError::Timeout(Duration::from_secs(1)),
            InvokeError::MemoryLimit(1),
            InvokeError::ValueTooLarge("v".into()),
            InvokeError::RecordingFailed("r".into()),
            InvokeError::OutcomeTruncated("o".into()),
            InvokeError::Interrupted("w".into()),
            InvokeError::WorkerNotFound("w".into()),
            InvokeError::WorkerExists("w".into()),
            InvokeError::Exited {
                worker: "w".into(),
                code: 1,
            },
            InvokeError::Divergence("d".into()),
            InvokeError::Storage("s".into()),
            InvokeError::Internal("i".into()),
            InvokeError::Repeated {
                code: "invocation_timeout",
                message: "m".into(),
            },
        ];
        for e in errors {
            let code = e.code();
            assert_eq!(ApiError::from(e).code.name(), code);
        }
    }
}
