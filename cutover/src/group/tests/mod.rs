use super::*;

#[test]
fn groups_and_roles_round_trip() {
    for g in TableGroup::ALL {
        assert_eq!(g.as_str().parse::<TableGroup>(), Ok(g));
    }
    assert!("stats".parse::<TableGroup>().is_err());
    assert_eq!("new".parse::<Role>().map(Role::other), Ok(Role::Old));
    assert!(TableGroup::QueryPatterns.is_copied() && !TableGroup::Timeseries.is_copied());
}
