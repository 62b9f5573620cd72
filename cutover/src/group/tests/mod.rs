use super::*;

fn api() -> Pipeline {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    Pipeline::load(&path).expect("api pipeline")
}

#[test]
fn insights_groups_come_from_the_description() {
    let groups = Groups::of(&Pipeline::insights());
    let names: Vec<&str> = groups.all().iter().map(|g| g.as_str()).collect();
    assert_eq!(names, ["timeseries", "query_patterns"]);
    let [timeseries, patterns] = groups.all()[..] else { panic!("two groups") };
    assert_eq!(groups.parse("timeseries"), Ok(timeseries));
    let unknown = groups.parse("stats").expect_err("not a group");
    assert_eq!(
        unknown.to_string(),
        "unknown table group \"stats\" (this pipeline's groups: timeseries, query_patterns)"
    );
    assert!(groups.any_aged(&[timeseries]) && !groups.any_aged(&[patterns]));
    assert_eq!(groups.copied_tables(&[timeseries]), Vec::<String>::new());
    assert_eq!(groups.copied_tables(&[timeseries, patterns]), ["query_patterns"]);
    assert_eq!(groups.holding("slow_queries"), Some(timeseries));
    assert_eq!(groups.holding("no_such_table"), None);
    assert_eq!(groups.parse_or_all(&[]), Ok(vec![timeseries, patterns]));
}

#[test]
fn another_pipeline_has_its_own_groups() {
    let groups = Groups::of(&api());
    let names: Vec<&str> = groups.all().iter().map(|g| g.as_str()).collect();
    assert_eq!(names, ["timeseries", "routes"]);
    assert_eq!(groups.all_copied_tables(), ["api_routes"]);
    // Same name, same handle: routing rows parsed under either pipeline compare equal.
    assert_eq!(groups.parse("timeseries"), Groups::of(&Pipeline::insights()).parse("timeseries"));
    assert_ne!(groups, Groups::of(&Pipeline::insights()));
    assert!(groups.parse("query_patterns").is_err());
}

#[test]
fn roles_round_trip() {
    assert_eq!("new".parse::<Role>().map(Role::other), Ok(Role::Old));
    assert!("newer".parse::<Role>().is_err());
}
