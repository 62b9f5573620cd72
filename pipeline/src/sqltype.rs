//! The SQL column types a description may use, parsed so that the merge
//! rules, the size checks and the comparators' row encoding can follow from
//! them, and rendered back canonically for the DDL.

use std::fmt;

/// A column's SQL type, as the DDL writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    pub base: Base,
    /// `VARCHAR(n)`, `BINARY(n)`, `DATETIME(n)`: the length or the fractional digits.
    pub size: Option<u32>,
    pub unsigned: bool,
    /// `CHARACTER SET x COLLATE y` of a string column (the table's default otherwise).
    pub charset: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Double,
    Decimal,
    Varchar,
    Text,
    MediumText,
    Binary,
    Varbinary,
    Blob,
    MediumBlob,
    DateTime,
}

/// How a column's values behave, whatever their exact SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Integer,
    Float,
    Decimal,
    Text,
    Bytes,
    DateTime,
}

impl Base {
    fn keyword(self) -> &'static str {
        match self {
            Base::TinyInt => "TINYINT",
            Base::SmallInt => "SMALLINT",
            Base::Int => "INT",
            Base::BigInt => "BIGINT",
            Base::Double => "DOUBLE",
            Base::Decimal => "DECIMAL",
            Base::Varchar => "VARCHAR",
            Base::Text => "TEXT",
            Base::MediumText => "MEDIUMTEXT",
            Base::Binary => "BINARY",
            Base::Varbinary => "VARBINARY",
            Base::Blob => "BLOB",
            Base::MediumBlob => "MEDIUMBLOB",
            Base::DateTime => "DATETIME",
        }
    }

    const ALL: [Base; 14] = [
        Base::TinyInt,
        Base::SmallInt,
        Base::Int,
        Base::BigInt,
        Base::Double,
        Base::Decimal,
        Base::Varchar,
        Base::Text,
        Base::MediumText,
        Base::Binary,
        Base::Varbinary,
        Base::Blob,
        Base::MediumBlob,
        Base::DateTime,
    ];
}

impl SqlType {
    /// Parses `BIGINT UNSIGNED`, `VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin`,
    /// `DATETIME(6)`, `DECIMAL(20,4)` is refused (sums of decimals are exact,
    /// but the store has needed none: say so rather than guess a scale).
    pub fn parse(text: &str) -> Result<Self, String> {
        let upper = text.trim().to_ascii_uppercase();
        let mut words = upper.split_whitespace();
        let head = words.next().ok_or("empty type")?;
        let (name, size) = match head.split_once('(') {
            Some((name, rest)) => {
                let digits = rest.strip_suffix(')').ok_or_else(|| format!("{head}: unclosed '('"))?;
                let n: u32 = digits.parse().map_err(|_| format!("{head}: the size must be a whole number"))?;
                (name, Some(n))
            }
            None => (head, None),
        };
        let base = Base::ALL
            .into_iter()
            .find(|b| b.keyword() == name)
            .ok_or_else(|| format!("unknown SQL type {name:?} (one of {})", known_types()))?;
        let mut out = SqlType { base, size, unsigned: false, charset: None };
        let rest: Vec<&str> = words.collect();
        // Keywords are matched upper-cased; charset and collation names keep the text's case.
        let original: Vec<&str> = text.split_whitespace().skip(1).collect();
        match rest.as_slice() {
            [] => {}
            ["UNSIGNED"] if out.class() == Class::Integer => out.unsigned = true,
            ["CHARACTER", "SET", _, "COLLATE", _] if matches!(base, Base::Varchar | Base::Text | Base::MediumText) => {
                out.charset = Some((original[2].to_string(), original[4].to_string()));
            }
            _ => return Err(format!("{text:?}: unsupported type attributes {:?}", rest.join(" "))),
        }
        let size_ok = match base {
            Base::Varchar | Base::Binary | Base::Varbinary => matches!(size, Some(1..=65_535)),
            Base::DateTime => matches!(size, None | Some(0..=6)),
            _ => size.is_none(),
        };
        if !size_ok {
            return Err(format!("{text:?}: wrong size for {} (VARCHAR/BINARY need one, DATETIME takes 0-6)", name));
        }
        Ok(out)
    }

    pub fn class(&self) -> Class {
        match self.base {
            Base::TinyInt | Base::SmallInt | Base::Int | Base::BigInt => Class::Integer,
            Base::Double => Class::Float,
            Base::Decimal => Class::Decimal,
            Base::Varchar | Base::Text | Base::MediumText => Class::Text,
            Base::Binary | Base::Varbinary | Base::Blob | Base::MediumBlob => Class::Bytes,
            Base::DateTime => Class::DateTime,
        }
    }

    /// The most bytes a value of this column holds (strings: as stored, in
    /// bytes, which is what the server checks in strict mode).
    pub fn max_bytes(&self) -> Option<usize> {
        let chars = |n: u32| n as usize;
        match self.base {
            // VARCHAR(n) counts characters; utf8mb4 is at most 4 bytes each,
            // ascii 1: bounded in bytes by the charset.
            Base::Varchar => Some(match &self.charset {
                Some((cs, _)) if cs.eq_ignore_ascii_case("ascii") => chars(self.size.unwrap_or(0)),
                _ => chars(self.size.unwrap_or(0)) * 4,
            }),
            Base::Binary | Base::Varbinary => Some(chars(self.size.unwrap_or(0))),
            Base::Text | Base::Blob => Some(65_535),
            Base::MediumText | Base::MediumBlob => Some(16_777_215),
            _ => None,
        }
    }

    /// The most characters a string column holds, where the limit is in characters.
    pub fn max_chars(&self) -> Option<usize> {
        match self.base {
            Base::Varchar => self.size.map(|n| n as usize),
            _ => None,
        }
    }

    /// Integer range as i128 bounds (what a value must fit).
    pub fn int_range(&self) -> Option<(i128, i128)> {
        let bits = match self.base {
            Base::TinyInt => 8,
            Base::SmallInt => 16,
            Base::Int => 32,
            Base::BigInt => 64,
            _ => return None,
        };
        Some(if self.unsigned { (0, (1i128 << bits) - 1) } else { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) })
    }

    /// Fractional-second digits of a DATETIME.
    pub fn fsp(&self) -> u32 {
        if self.base == Base::DateTime {
            self.size.unwrap_or(0)
        } else {
            0
        }
    }
}

fn known_types() -> String {
    Base::ALL.iter().map(|b| b.keyword()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.keyword())?;
        if let Some(n) = self.size {
            write!(f, "({n})")?;
        }
        if self.unsigned {
            f.write_str(" UNSIGNED")?;
        }
        if let Some((cs, coll)) = &self.charset {
            write!(f, " CHARACTER SET {cs} COLLATE {coll}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_the_store_types() {
        for t in [
            "BIGINT UNSIGNED",
            "VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin",
            "DATETIME",
            "DATETIME(6)",
            "BINARY(8)",
            "BLOB",
            "INT",
            "MEDIUMTEXT",
            "TEXT",
        ] {
            assert_eq!(SqlType::parse(t).expect(t).to_string(), t);
        }
        assert_eq!(SqlType::parse("bigint unsigned").expect("lower case").to_string(), "BIGINT UNSIGNED");
    }

    #[test]
    fn refuses_what_it_cannot_reason_about() {
        for bad in ["", "VARCHAR", "DATETIME(7)", "TEXT UNSIGNED", "JSON", "BIGINT(20)", "DECIMAL(20,4)", "INT SIGNED"]
        {
            assert!(SqlType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_follow_the_type() {
        let t = |s| SqlType::parse(s).expect(s);
        assert_eq!(t("VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin").max_bytes(), Some(64));
        assert_eq!(t("VARCHAR(255)").max_bytes(), Some(1020));
        assert_eq!(t("INT").int_range(), Some((-2_147_483_648, 2_147_483_647)));
        assert_eq!(t("BIGINT UNSIGNED").int_range(), Some((0, u64::MAX as i128)));
    }
}
