//! Why a message could not be turned into an event: the dead-letter reasons.

/// Why a message could not be turned into an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message has no value")]
    Empty,
    #[error("message is {0} bytes, shorter than the 5-byte Confluent header")]
    TruncatedHeader(usize),
    #[error("magic byte is {0:#04x}, expected 0x00 (Confluent wire format)")]
    BadMagic(u8),
    #[error("schema id {0} is not in the schema directory")]
    UnknownSchemaId(u32),
    /// The registry does not know the id, or its schema is unusable (the
    /// registry's answer is the detail).
    #[error("{why}")]
    UnusableSchemaId { id: u32, why: String },
    #[error("schema id {id} is record {record}, which does not belong on topic kind {topic}")]
    WrongRecord { id: u32, record: String, topic: String },
    #[error("avro decode failed: {0}")]
    Avro(String),
    #[error("{0} bytes left over after the avro datum")]
    TrailingBytes(usize),
    #[error("invalid field {field}: {why}")]
    Invalid { field: &'static str, why: String },
}

impl DecodeError {
    /// Every value [`DecodeError::reason`] returns (metrics start each at zero).
    pub const REASONS: [&'static str; 8] = [
        "empty",
        "truncated_header",
        "bad_magic",
        "unknown_schema_id",
        "wrong_record",
        "avro_decode",
        "trailing_bytes",
        "invalid_field",
    ];

    /// A short stable code for metrics labels and dead letter queries.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TruncatedHeader(_) => "truncated_header",
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::UnknownSchemaId(_) | DecodeError::UnusableSchemaId { .. } => "unknown_schema_id",
            DecodeError::WrongRecord { .. } => "wrong_record",
            DecodeError::Avro(_) => "avro_decode",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
            DecodeError::Invalid { .. } => "invalid_field",
        }
    }
}
