use super::*;
use crate::spec::tests::insights;

#[test]
fn resumes_after_the_key_in_key_order() {
    let patterns = insights("query_patterns");
    let key = vec![Some("42".to_string()), Some("ab'c".to_string())];
    assert_eq!(
        after_sql(&patterns, &key).expect("sql"),
        "(database_id > 42) OR (database_id = 42 AND fingerprint > 'ab\\'c')"
    );
    assert!(after_sql(&patterns, &vec![Some("4; DROP".into()), None]).is_err());
    let k = |id: &str, fp: &str| vec![Some(id.to_string()), Some(fp.to_string())];
    assert_eq!(compare_keys(&patterns, &k("9", "b"), &k("10", "a")), Ordering::Less);
    assert_eq!(compare_keys(&patterns, &k("10", "a"), &k("10", "B")), Ordering::Greater);
    assert_eq!(literal(Col::Bytes, &Some("0aff".into())).expect("hex"), "X'0aff'");
    assert!(literal(Col::Bytes, &Some("0x".into())).is_err());
    assert_eq!(
        literal(Col::DateTime, &Some("2026-01-01 00:00:00.125".into())).expect("time"),
        "'2026-01-01 00:00:00.125'"
    );
    assert_eq!(literal(Col::Decimal, &Some("-12.50".into())).expect("decimal"), "-12.50");
    assert!(literal(Col::Float, &Some("1; DROP".into())).is_err());
}
