//! The one place where failures become HTTP responses: a status and a JSON body
//! `{"code": ..., "message": ..., "details": ...}` whose `code` is stable and documented in
//! `docs/errors.md`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use revenant_runtime::InvokeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Machine-readable context (`null` when there is none).
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_argument", message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "details": self.details,
        });
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        match self.status {
            StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                let challenge = if self.code == "invalid_token" {
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
        let status = match &e {
            InvokeError::UnknownComponent(_) | InvokeError::UnknownFunction { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            InvokeError::InvalidWorkerName(_) | InvokeError::BadArguments(_) => {
                StatusCode::BAD_REQUEST
            }
            InvokeError::MailboxFull(_) => StatusCode::TOO_MANY_REQUESTS,
            InvokeError::TooManyWorkers(_) | InvokeError::Storage(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            InvokeError::Interrupted(_) => StatusCode::CONFLICT,
            InvokeError::WorkerNotFound(_) => StatusCode::NOT_FOUND,
            InvokeError::Exited { .. } => StatusCode::GONE,
            InvokeError::Trap(_)
            | InvokeError::MemoryLimit(_)
            | InvokeError::Divergence(_)
            | InvokeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.code(), e.to_string())
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
