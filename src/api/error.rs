//! `api::Error`: the one place errors become HTTP statuses and client messages.
//!
//! Client errors carry a message naming the problem. Internal errors are logged in full and
//! shown to clients only as "internal error" with a correlation id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::event::validate::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or malformed bearer token (send `Authorization: Bearer <token>`)")]
    MissingToken,
    #[error("invalid or revoked token")]
    BadToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what} is {actual}, over the limit {limit} = {limit_value}")]
    TooLarge {
        what: String,
        actual: usize,
        limit: &'static str,
        limit_value: usize,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the write queue is full; retry after {retry_after_s} s")]
    Busy { retry_after_s: u64 },
    #[error("assetlog is shutting down or cannot write; retry later")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingToken | Error::BadToken => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Invalid(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Busy { .. } | Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingToken => "missing_token",
            Error::BadToken => "bad_token",
            Error::Forbidden(_) => "forbidden",
            Error::Invalid(_) => "invalid_event",
            Error::BadRequest(_) => "bad_request",
            Error::NotFound(_) => "not_found",
            Error::TooLarge { .. } => "too_large",
            Error::Conflict(_) => "conflict",
            Error::Busy { .. } => "busy",
            Error::Unavailable => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<crate::log::Error> for Error {
    fn from(e: crate::log::Error) -> Self {
        use crate::log::Error as L;
        match e {
            L::Conflict { .. } => Error::Conflict(e.to_string()),
            L::QueueFull { .. } => Error::Busy { retry_after_s: 1 },
            L::Closed | L::Poisoned => Error::Unavailable,
            other => Error::Internal(other.into()),
        }
    }
}

impl From<crate::auth::Error> for Error {
    fn from(e: crate::auth::Error) -> Self {
        use crate::auth::Error as A;
        match e {
            A::NoSuchDeployment(_) | A::NoSuchToken(_) => Error::NotFound(e.to_string()),
            other => Error::Internal(other.into()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if let Error::Internal(source) = &self {
            let id = format!("{:016x}", rand::random::<u64>());
            tracing::error!(error = ?source, error_id = %id, "internal error");
            format!("internal error (id {id}); the server log has the details")
        } else {
            self.to_string()
        };
        crate::api::metrics::METRICS.rejected(self.code());
        let mut resp = (
            status,
            axum::Json(json!({"error": {"code": self.code(), "message": message}})),
        )
            .into_response();
        if let Error::Busy { retry_after_s } = self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_s.to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
