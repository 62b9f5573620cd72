//! What a description needs to know of a topic's Avro record: its fields and
//! what kind of value each carries.

use apache_avro::Schema;

/// The kind of value an Avro field carries, as the store can hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Int,
    Long,
    Double,
    Boolean,
    String,
    Bytes,
    /// An array of strings: stored as its JSON text.
    StringArray,
    TimestampMillis,
    TimestampMicros,
}

/// One field of the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    /// A union with null.
    pub nullable: bool,
    /// Position in the record (what a decoded record's field list is indexed by).
    pub position: usize,
}

/// The record's full name and fields, or why the schema is not one a table can be fed from.
pub(crate) fn record_fields(schema: &Schema) -> Result<(String, Vec<Field>), String> {
    let Schema::Record(record) = schema else { return Err("the schema is not a record".into()) };
    let mut out = Vec::new();
    for (position, f) in record.fields.iter().enumerate() {
        let (inner, nullable) = match &f.schema {
            Schema::Union(u) if u.is_nullable() && u.variants().len() == 2 => {
                match u.variants().iter().find(|v| !matches!(v, Schema::Null)) {
                    Some(v) => (v, true),
                    None => continue,
                }
            }
            s => (s, false),
        };
        let Some(kind) = kind_of(inner) else { continue };
        out.push(Field { name: f.name.clone(), kind, nullable, position });
    }
    Ok((record.name.fullname(None), out))
}

/// Fields of other types cannot feed a column; they are left out, and a
/// column naming one is told the field is absent or unsupported.
fn kind_of(schema: &Schema) -> Option<FieldKind> {
    Some(match schema {
        Schema::Int => FieldKind::Int,
        Schema::Long => FieldKind::Long,
        Schema::Double => FieldKind::Double,
        Schema::Boolean => FieldKind::Boolean,
        Schema::String => FieldKind::String,
        Schema::Bytes => FieldKind::Bytes,
        Schema::TimestampMillis => FieldKind::TimestampMillis,
        Schema::TimestampMicros => FieldKind::TimestampMicros,
        Schema::Array(a) if matches!(*a.items, Schema::String) => FieldKind::StringArray,
        _ => return None,
    })
}
