//! Any pipeline topic's records, decoded generically: the reader schema's
//! field values by position, for the consumer to turn into the rows of every
//! table the description feeds from the topic.
//!
//! A writer schema identical to the reader's (the common case) is decoded by
//! walking the fields straight off the bytes: no `Value` tree with a `String`
//! per field name, no resolution. Every length prefix is checked against the
//! bytes left, so a hostile one cannot make it allocate. Another writer
//! version is resolved against the reader schema by `apache-avro`.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use pipeline::FieldKind;

use crate::decode_error::DecodeError;

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// int, long and the timestamps.
    Long(i64),
    Double(f64),
    Bool(bool),
    /// Shared: a consumer hands one string to every row that stores it.
    Str(std::sync::Arc<str>),
    Bytes(Vec<u8>),
    StrArray(Vec<String>),
}

/// What decodes one topic's records.
#[derive(Debug, Clone)]
pub struct RecordReader {
    /// The topic's name (without prefix), for errors.
    pub topic: String,
    /// The record's full name: a writer schema naming another record is `wrong_record`.
    pub record: String,
    pub reader: Schema,
    /// A fingerprint of the reader's canonical form: writers with the same take the fast path.
    pub(crate) canonical: u64,
    /// Per reader field, how to read it off the bytes; None when a field of
    /// another type (a map, a nested record) makes the fast path unusable.
    fast: Option<Vec<(FieldKind, Option<usize>)>>,
    fields: usize,
}

impl RecordReader {
    pub fn new(topic: &pipeline::Topic) -> Self {
        let fields = match &topic.schema {
            Schema::Record(r) => r.fields.len(),
            _ => 0,
        };
        // Every field must be one the fast path reads (record_fields keeps
        // only those), in position order.
        let fast = (topic.fields.len() == fields && topic.fields.iter().enumerate().all(|(i, f)| f.position == i))
            .then(|| {
                topic
                    .fields
                    .iter()
                    .map(|f| (f.kind, f.nullable.then(|| null_branch(&topic.schema, f.position))))
                    .collect()
            });
        Self {
            topic: topic.name.clone(),
            record: topic.record.clone(),
            reader: topic.schema.clone(),
            canonical: canonical_hash(&topic.schema),
            fast,
            fields,
        }
    }

    /// The values of a datum written with `writer` (already checked to be this record).
    pub(crate) fn read(&self, writer: &Schema, same: bool, body: &mut &[u8]) -> Result<Vec<Value>, DecodeError> {
        if same {
            if let Some(plan) = &self.fast {
                let mut out = Vec::with_capacity(plan.len());
                for (kind, null_branch) in plan {
                    out.push(read_field(body, *kind, *null_branch)?);
                }
                return Ok(out);
            }
        }
        let avro = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
        let datum = GenericDatumReader::builder(writer).reader_schema(&self.reader).build().map_err(avro)?;
        let value = datum.read_value(body).map_err(avro)?;
        let Avro::Record(fields) = value else { return Err(DecodeError::Avro("not a record".into())) };
        let mut out = vec![Value::Null; self.fields];
        for (slot, (_, v)) in out.iter_mut().zip(fields) {
            *slot = convert(v);
        }
        Ok(out)
    }
}

/// Which union branch is null in a nullable field (0 for `["null", T]`).
fn null_branch(schema: &Schema, position: usize) -> usize {
    match schema {
        Schema::Record(r) => match r.fields.get(position).map(|f| &f.schema) {
            Some(Schema::Union(u)) => u.variants().iter().position(|v| matches!(v, Schema::Null)).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

/// A stable fingerprint of a schema's canonical form.
pub(crate) fn canonical_hash(schema: &Schema) -> u64 {
    xxhash_rust::xxh3::xxh3_64(schema.canonical_form().as_bytes())
}

fn convert(v: Avro) -> Value {
    match v {
        Avro::Null => Value::Null,
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::Long(i64::from(i)),
        Avro::Long(l)
        | Avro::TimestampMillis(l)
        | Avro::TimestampMicros(l)
        | Avro::LocalTimestampMillis(l)
        | Avro::LocalTimestampMicros(l)
        | Avro::TimeMicros(l) => Value::Long(l),
        Avro::Double(d) => Value::Double(d),
        Avro::Float(f) => Value::Double(f64::from(f)),
        Avro::Boolean(b) => Value::Bool(b),
        Avro::String(s) | Avro::Enum(_, s) => Value::Str(s.into()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => Value::Bytes(b),
        Avro::Union(_, inner) => convert(*inner),
        Avro::Array(items) => Value::StrArray(
            items
                .into_iter()
                .filter_map(|i| match convert(i) {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn truncated() -> DecodeError {
    DecodeError::Avro("the datum ends early".into())
}

fn read_long(body: &mut &[u8]) -> Result<i64, DecodeError> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = body.split_first().ok_or_else(truncated)?;
        *body = rest;
        if shift == 63 && byte > 1 {
            return Err(DecodeError::Avro("a varint longer than 64 bits".into()));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // Zigzag.
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(DecodeError::Avro("a varint longer than 64 bits".into()))
}

fn read_len(body: &mut &[u8]) -> Result<usize, DecodeError> {
    let len = read_long(body)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Avro(format!("negative length {len}")))?;
    if len > body.len() {
        return Err(truncated());
    }
    Ok(len)
}

fn read_bytes<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = read_len(body)?;
    let (head, rest) = body.split_at(len);
    *body = rest;
    Ok(head)
}

fn read_str<'a>(body: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    let bytes = read_bytes(body)?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::Avro("a string is not UTF-8".into()))
}

fn read_field(body: &mut &[u8], kind: FieldKind, null_branch: Option<usize>) -> Result<Value, DecodeError> {
    if let Some(null) = null_branch {
        let branch = read_long(body)?;
        match usize::try_from(branch) {
            Ok(b) if b == null => return Ok(Value::Null),
            Ok(b) if b <= 1 => {}
            _ => return Err(DecodeError::Avro(format!("union branch {branch} out of range"))),
        }
    }
    Ok(match kind {
        FieldKind::Int | FieldKind::Long | FieldKind::TimestampMillis | FieldKind::TimestampMicros => {
            Value::Long(read_long(body)?)
        }
        FieldKind::Double => {
            let (bytes, rest) = body.split_first_chunk::<8>().ok_or_else(truncated)?;
            *body = rest;
            Value::Double(f64::from_le_bytes(*bytes))
        }
        FieldKind::Boolean => {
            let (&b, rest) = body.split_first().ok_or_else(truncated)?;
            *body = rest;
            match b {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(DecodeError::Avro(format!("boolean byte {b}"))),
            }
        }
        FieldKind::String => Value::Str(read_str(body)?.into()),
        FieldKind::Bytes => Value::Bytes(read_bytes(body)?.to_vec()),
        FieldKind::StringArray => {
            let mut items = Vec::new();
            loop {
                let count = read_long(body)?;
                if count == 0 {
                    break;
                }
                if count < 0 {
                    // A negative count is followed by the block's size in bytes.
                    read_long(body)?;
                }
                let n = count.unsigned_abs();
                // Each item takes at least one byte: a count beyond what is left is a lie.
                if n > body.len() as u64 {
                    return Err(truncated());
                }
                for _ in 0..n {
                    items.push(read_str(body)?.to_string());
                }
            }
            Value::StrArray(items)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{sample_query_stats, sample_slow_query};
    use crate::Codec;

    /// The fast path and apache-avro's generic reader agree on real records.
    #[test]
    fn fast_and_generic_paths_agree() {
        let codec = Codec::embedded().expect("codec");
        let p = pipeline::Pipeline::insights();
        let stats = codec.encode_query_stats(&sample_query_stats(7, "f00d")).expect("encode");
        let mut slow_event = sample_slow_query(9, "beef");
        slow_event.error = Some("boom".into());
        let slow = codec.encode_slow_query(&slow_event).expect("encode");
        for (topic, bytes) in [(&p.topics[0], stats), (&p.topics[1], slow)] {
            let reader = RecordReader::new(topic);
            assert!(reader.fast.is_some(), "{}: every field is one the fast path reads", topic.name);
            let (mut a, mut b) = (&bytes[5..], &bytes[5..]);
            let fast = reader.read(&topic.schema, true, &mut a).expect("fast");
            let generic = reader.read(&topic.schema, false, &mut b).expect("generic");
            assert_eq!(fast, generic);
            assert!(a.is_empty() && b.is_empty());
        }
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        // A string length of 2^40 with 3 bytes behind it.
        let mut body: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1, 2, 3];
        assert!(read_field(&mut body, FieldKind::String, None).is_err());
        let mut body: &[u8] = &[0xff; 11];
        assert!(read_long(&mut body).is_err());
        // An array claiming a million items in two bytes.
        let mut body: &[u8] = &[0x80, 0x89, 0x7a, 0, 0];
        assert!(read_field(&mut body, FieldKind::StringArray, None).is_err());
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX, 1_714_564_800_000] {
            let mut enc = Vec::new();
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            loop {
                let byte = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    enc.push(byte);
                    break;
                }
                enc.push(byte | 0x80);
            }
            let mut body: &[u8] = &enc;
            assert_eq!(read_long(&mut body).expect("long"), v);
        }
    }
}
