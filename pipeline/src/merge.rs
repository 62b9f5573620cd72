//! Merge rules: how a stored row and a new contribution combine, per column.
//!
//! A rule either commutes exactly as a SQL expression (integer and decimal
//! sums, min, max, and the `min_by`/`max_by` family whose ties are broken by
//! the values themselves), so the consumer writes it blind with
//! `INSERT ... ON DUPLICATE KEY UPDATE` and any order of writers gives one
//! result; or it does not (a sketch merge, a float sum: the result depends on
//! the order of additions), and the consumer reads the stored row under lock
//! and folds the contributions in offset order, which every group does alike.

use std::fmt;

use crate::sqltype::Class;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Adds. Exact in SQL on integers and decimals; a float sum is folded.
    Sum,
    Min,
    Max,
    /// The value of the contribution with the smallest `by` column (a column
    /// of the same table); ties are broken by the values of every column that
    /// shares the rule, in column order, so any merge order gives one result.
    MinBy(String),
    /// Likewise with the largest `by`.
    MaxBy(String),
    /// `min_by` of the table's event-time column: the first sighting's value.
    First,
    /// `max_by` of the event-time column: the last sighting's value.
    Last,
    /// DDSketch merge of the reference binary encoding (1% relative accuracy,
    /// the stream contract's): folded in offset order, since the sketch's sum is a float.
    DdSketch,
}

impl Merge {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let arg = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
        };
        Ok(match t {
            "sum" => Merge::Sum,
            "min" => Merge::Min,
            "max" => Merge::Max,
            "first" => Merge::First,
            "last" => Merge::Last,
            "ddsketch" => Merge::DdSketch,
            _ => {
                if let Some(by) = arg("min_by(") {
                    Merge::MinBy(by)
                } else if let Some(by) = arg("max_by(") {
                    Merge::MaxBy(by)
                } else {
                    return Err(format!(
                        "unknown merge rule {t:?} (one of sum, min, max, first, last, min_by(column), \
                         max_by(column), ddsketch)"
                    ));
                }
            }
        })
    }

    /// Whether the rule suits a column of this class; the reason when not.
    pub fn fits(&self, class: Class) -> Result<(), String> {
        let ok = match self {
            Merge::Sum => matches!(class, Class::Integer | Class::Decimal | Class::Float),
            Merge::Min | Merge::Max => !matches!(class, Class::Bytes),
            Merge::MinBy(_) | Merge::MaxBy(_) | Merge::First | Merge::Last => true,
            Merge::DdSketch => class == Class::Bytes,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Merge::Sum => "sum needs a numeric column".to_string(),
            Merge::Min | Merge::Max => format!("{self} of bytes is not a meaningful order"),
            _ => format!("{self} needs a BLOB column (the sketch's encoding)"),
        })
    }

    /// Whether a SQL expression applies the rule exactly, in any order.
    pub fn commutes_in_sql(&self, class: Class) -> bool {
        match self {
            Merge::Sum => class != Class::Float,
            Merge::Min | Merge::Max | Merge::MinBy(_) | Merge::MaxBy(_) | Merge::First | Merge::Last => true,
            Merge::DdSketch => false,
        }
    }
}

impl fmt::Display for Merge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Merge::Sum => f.write_str("sum"),
            Merge::Min => f.write_str("min"),
            Merge::Max => f.write_str("max"),
            Merge::First => f.write_str("first"),
            Merge::Last => f.write_str("last"),
            Merge::DdSketch => f.write_str("ddsketch"),
            Merge::MinBy(c) => write!(f, "min_by({c})"),
            Merge::MaxBy(c) => write!(f, "max_by({c})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_rule() {
        for t in ["sum", "min", "max", "first", "last", "ddsketch", "min_by(first_seen)", "max_by(at)"] {
            assert_eq!(Merge::parse(t).expect(t).to_string(), t);
        }
        for bad in ["avg", "min_by()", "min_by(x", "SUM"] {
            assert!(Merge::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn float_sums_and_sketches_are_folded() {
        assert!(Merge::Sum.commutes_in_sql(Class::Integer));
        assert!(!Merge::Sum.commutes_in_sql(Class::Float));
        assert!(!Merge::DdSketch.commutes_in_sql(Class::Bytes));
        assert!(Merge::DdSketch.fits(Class::Text).is_err());
        assert!(Merge::Sum.fits(Class::Text).is_err());
    }
}
