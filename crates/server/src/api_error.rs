//! Errors on the wire, in OpenAI's envelope `{"error":{"message","type","param","code"}}` with
//! the status the official SDKs map to their exception classes (400 `BadRequestError`, 401
//! `AuthenticationError`, 404 `NotFoundError`, 413, 429 `RateLimitError`, ≥500
//! `InternalServerError`). `code` is a string or null, as at OpenAI (vLLM and llama.cpp put the
//! integer status there, which some clients choke on). 429 and 503 carry `Retry-After`, which the
//! SDKs honour when they retry.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `server_error`, …
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400: a request the server understood but cannot accept; `param` names the field.
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        let error = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        match param {
            Some(p) => error.with_param(p),
            None => error,
        }
    }

    /// 400 for a value outside its range or of the wrong kind.
    pub fn invalid_value(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message, Some(param)).with_code("invalid_value")
    }

    /// 400 `context_length_exceeded`, worded like OpenAI's.
    pub fn context_length(context: usize, prompt: usize, max_tokens: Option<usize>) -> Self {
        let message = match max_tokens {
            Some(m) => format!(
                "This model's maximum context length is {context} tokens. However, you requested \
                 {} tokens ({prompt} in the messages, {m} in the completion). Please reduce the \
                 length of the messages or completion.",
                prompt + m
            ),
            None => format!(
                "This model's maximum context length is {context} tokens. However, your messages \
                 resulted in {prompt} tokens. Please reduce the length of the messages."
            ),
        };
        Self::invalid_request(message, Some("messages")).with_code("context_length_exceeded")
    }

    /// 401.
    pub fn invalid_api_key(provided: Option<&str>) -> Self {
        let message = match provided {
            None => "You didn't provide an API key. Provide it in the Authorization header \
                     (Authorization: Bearer YOUR_KEY)."
                .to_string(),
            Some(key) => format!("Incorrect API key provided: {}.", redact(key)),
        };
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    /// 404 for an unknown model.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 404 for a path the server does not serve.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown request URL: {method} {path}."),
        )
        .with_code("unknown_url")
    }

    /// 405.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("Method {method} is not allowed on {path}."),
        )
        .with_code("method_not_allowed")
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than this server's limit of {limit} bytes (--max-request-bytes)."),
        )
        .with_code("request_too_large")
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .with_code("rate_limit_exceeded");
        error.retry_after = Some(retry_after);
        error
    }

    /// 500: a bug or an I/O failure on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 503 with `Retry-After`: overloaded or still loading.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .with_code("service_unavailable");
        error.retry_after = Some(retry_after);
        error
    }

    /// The envelope, also used for a `data: {"error": …}` event in a failing stream.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Shows only the ends of a key, as OpenAI does.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_every_field_and_string_codes() {
        let body = ApiError::model_not_found("nope").body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let body = ApiError::internal("boom").body();
        assert!(body["error"]["param"].is_null() && body["error"]["code"].is_null());
    }

    #[test]
    fn keys_are_redacted() {
        assert_eq!(redact("sk-abcdefghijkl"), "sk-********ijkl");
        assert_eq!(redact("short"), "*****");
        assert!(ApiError::invalid_api_key(Some("sk-secretsecret"))
            .message
            .contains("sk-********cret"));
    }
}
