//! Errors that reach a client, and the one table that maps each to its AWS `__type` and HTTP status.
//!
//! Every subsystem turns its own failures into an [`ApiError`] at the edge of the API layer; nothing
//! else decides how an error looks on the wire.

use http::StatusCode;

/// An error answered to a Kinesis client. The variant names the AWS `__type`; the string is the
/// human message, phrased as AWS phrases it where AWS's wording is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    ExpiredIterator(String),
    #[error("{0}")]
    ExpiredNextToken(String),
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    #[error("{0}")]
    InternalFailure(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    MissingAuthenticationToken(String),
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    UnrecognizedClient(String),
    /// DynamoDB: a condition did not hold; the item as it was, as JSON, when the caller asked
    /// for it (ReturnValuesOnConditionCheckFailure ALL_OLD).
    #[error("{0}")]
    ConditionalCheckFailed(String, Option<String>),
    /// Firehose: the version a change was based on is no longer current.
    #[error("{0}")]
    ConcurrentModification(String),
    /// Kinesis Analytics: application code that does not compile.
    #[error("{0}")]
    CodeValidation(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    UnableToDetectSchema(String),
    #[error("{0}")]
    InvalidApplicationConfiguration(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    /// Kinesis queues: a request over the queue's bounds.
    #[error("{0}")]
    Throttling(String),
    /// Internal: an append reached a shard a reshard had just closed. The API layer routes the
    /// records again; a client sees InternalFailure only if that keeps failing.
    #[error("{0}")]
    ShardClosed(String),
}

/// The message every variant carries, borrowed as the receiver is.
macro_rules! message_of {
    ($e:expr) => {
        match $e {
            ApiError::ResourceNotFound(m)
            | ApiError::ResourceInUse(m)
            | ApiError::InvalidArgument(m)
            | ApiError::Validation(m)
            | ApiError::LimitExceeded(m)
            | ApiError::ExpiredIterator(m)
            | ApiError::ExpiredNextToken(m)
            | ApiError::Serialization(m)
            | ApiError::UnknownOperation(m)
            | ApiError::ProvisionedThroughputExceeded(m)
            | ApiError::InternalFailure(m)
            | ApiError::ServiceUnavailable(m)
            | ApiError::MissingAuthenticationToken(m)
            | ApiError::IncompleteSignature(m)
            | ApiError::InvalidSignature(m)
            | ApiError::AccessDenied(m)
            | ApiError::UnrecognizedClient(m)
            | ApiError::ConditionalCheckFailed(m, _)
            | ApiError::ConcurrentModification(m)
            | ApiError::CodeValidation(m)
            | ApiError::TooManyTags(m)
            | ApiError::UnableToDetectSchema(m)
            | ApiError::InvalidApplicationConfiguration(m)
            | ApiError::UnsupportedOperation(m)
            | ApiError::Throttling(m)
            | ApiError::ShardClosed(m) => m,
        }
    };
}

impl ApiError {
    /// The AWS error type name, as sent in `__type` and `x-amzn-ErrorType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
            ApiError::ResourceInUse(_) => "ResourceInUseException",
            ApiError::InvalidArgument(_) => "InvalidArgumentException",
            ApiError::Validation(_) => "ValidationException",
            ApiError::LimitExceeded(_) => "LimitExceededException",
            ApiError::ExpiredIterator(_) => "ExpiredIteratorException",
            ApiError::ExpiredNextToken(_) => "ExpiredNextTokenException",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            ApiError::InternalFailure(_) => "InternalFailure",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            ApiError::IncompleteSignature(_) => "IncompleteSignatureException",
            ApiError::InvalidSignature(_) => "InvalidSignatureException",
            ApiError::AccessDenied(_) => "AccessDeniedException",
            ApiError::UnrecognizedClient(_) => "UnrecognizedClientException",
            ApiError::ConditionalCheckFailed(..) => "ConditionalCheckFailedException",
            ApiError::ConcurrentModification(_) => "ConcurrentModificationException",
            ApiError::CodeValidation(_) => "CodeValidationException",
            ApiError::TooManyTags(_) => "TooManyTagsException",
            ApiError::UnableToDetectSchema(_) => "UnableToDetectSchemaException",
            ApiError::InvalidApplicationConfiguration(_) => "InvalidApplicationConfigurationException",
            ApiError::UnsupportedOperation(_) => "UnsupportedOperationException",
            ApiError::Throttling(_) => "ThrottlingException",
            ApiError::ShardClosed(_) => "InternalFailure",
        }
    }

    /// The HTTP status AWS uses for this error type.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InternalFailure(_) | ApiError::ShardClosed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The binary push protocol's numeric error code. A code, once used, is never reused.
    pub fn push_code(&self) -> u16 {
        match self {
            ApiError::ResourceNotFound(_) => 3,
            ApiError::ResourceInUse(_) => 5,
            ApiError::InvalidArgument(_) => 4,
            ApiError::Validation(_) => 7,
            ApiError::LimitExceeded(_) => 8,
            ApiError::ExpiredIterator(_) => 9,
            ApiError::ExpiredNextToken(_) => 10,
            ApiError::Serialization(_) => 11,
            ApiError::UnknownOperation(_) => 12,
            ApiError::ProvisionedThroughputExceeded(_) => 13,
            ApiError::InternalFailure(_) => 6,
            ApiError::ServiceUnavailable(_) => 14,
            ApiError::MissingAuthenticationToken(_) => 15,
            ApiError::IncompleteSignature(_) => 16,
            ApiError::InvalidSignature(_) => 17,
            ApiError::AccessDenied(_) => 18,
            ApiError::UnrecognizedClient(_) => 19,
            ApiError::ConditionalCheckFailed(..) => 20,
            ApiError::ConcurrentModification(_) => 21,
            ApiError::CodeValidation(_) => 22,
            ApiError::TooManyTags(_) => 23,
            ApiError::UnableToDetectSchema(_) => 24,
            ApiError::InvalidApplicationConfiguration(_) => 25,
            ApiError::UnsupportedOperation(_) => 26,
            ApiError::Throttling(_) => 27,
            ApiError::ShardClosed(_) => 6,
        }
    }

    pub fn message(&self) -> &str {
        message_of!(self)
    }

    /// The message, to be rewritten in place.
    pub fn message_mut(&mut self) -> &mut String {
        message_of!(self)
    }

    /// The JSON error body: `__type` and the message. AWS's Java-based services name the message
    /// `Message` in a SerializationException and `message` everywhere else.
    pub fn body(&self) -> serde_json::Value {
        self.body_with_prefix("")
    }

    /// The JSON error body with `__type` prefixed as the service writes it (DynamoDB:
    /// `com.amazonaws.dynamodb.v20120810#`).
    pub fn body_with_prefix(&self, prefix: &str) -> serde_json::Value {
        let member = if matches!(self, ApiError::Serialization(_)) { "Message" } else { "message" };
        let kind = format!("{prefix}{}", self.type_name());
        if self.message().is_empty() {
            // AWS sends some errors (a body that is not an object, an unknown operation) bare.
            return serde_json::json!({ "__type": kind });
        }
        let mut body = serde_json::json!({"__type": kind, member: self.message()});
        if let ApiError::ConditionalCheckFailed(_, Some(item)) = self {
            if let Ok(item) = serde_json::from_str::<serde_json::Value>(item) {
                body["Item"] = item;
            }
        }
        body
    }

    /// AWS's wording for a single failed member constraint.
    pub fn validation(value: impl std::fmt::Display, member: &str, constraint: &str) -> ApiError {
        ApiError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_errors_are_not_400() {
        assert_eq!(ApiError::InternalFailure("x".into()).status(), 500);
        assert_eq!(ApiError::ServiceUnavailable("x".into()).status(), 503);
        assert_eq!(ApiError::ResourceNotFound("x".into()).status(), 400);
        assert_eq!(ApiError::ExpiredIterator("x".into()).type_name(), "ExpiredIteratorException");
    }
}
