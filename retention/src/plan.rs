//! What one table on one shard needs: partitions split off `p_future` ahead
//! of time, and real partitions dropped once wholly older than retention.
//! Pure, so every rule is tested without a server.

use cluster::partitions::{self, FUTURE, PAST};
use serde::Serialize;

/// One partition as `information_schema.PARTITIONS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// Exclusive upper bound, seconds since the epoch; `None` = MAXVALUE.
    pub upper: Option<i64>,
}

/// The partition layout is not the one this job manages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

/// The changes for one table, in the order they run: split, drop, truncate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TablePlan {
    /// New real partitions `(name, upper)`, split off `p_future` in one
    /// `REORGANIZE PARTITION`, ascending.
    pub create: Vec<(String, i64)>,
    /// Real partitions whose every window is older than the cutoff.
    pub drop: Vec<String>,
    /// `p_past` lies wholly below the cutoff: empty it if it holds rows.
    pub empty_past: bool,
}

impl TablePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.drop.is_empty() && !self.empty_past
    }
}

/// Parameters of one run.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Partition width, seconds.
    pub width: i64,
    /// Keep every window starting at or after `now - keep`.
    pub keep: i64,
    /// Have partitions through `now + ahead`.
    pub ahead: i64,
}

/// Plans one table. `parts` in ordinal order.
///
/// A partition is dropped only when its upper bound is at or below
/// `now - keep`: every row in it belongs to a window that started before the
/// cutoff, and since bounds are multiples of the width (itself a multiple of
/// the hour window) a window never straddles two partitions.
pub fn plan(parts: &[Part], policy: Policy, now: i64) -> Result<TablePlan, LayoutError> {
    plan_guarded(parts, policy, now, Some(now.saturating_sub(policy.keep)))
}

/// [`plan`], dropping only partitions whose upper bound is at or below
/// `drop_cutoff` (itself at most `now - keep`); `None` drops nothing (the
/// guards in `execute` refused, e.g. the clocks disagree).
pub fn plan_guarded(
    parts: &[Part],
    policy: Policy,
    now: i64,
    drop_cutoff: Option<i64>,
) -> Result<TablePlan, LayoutError> {
    let (past_upper, reals) = check_layout(parts)?;
    let cutoff = now.saturating_sub(policy.keep);
    let drop_below = drop_cutoff.map_or(i64::MIN, |c| c.min(cutoff));
    let width = policy.width;
    let mut out = TablePlan::default();

    let last_upper = reals.last().map_or(past_upper, |p| p.1);
    let target_upper = partitions::floor(now.saturating_add(policy.ahead), width) + width;
    // A table nobody maintained for a while would need a partition per missed
    // period: everything below the cutoff gets one partition instead, dropped
    // in this same run (rows dated there, sitting in p_future, go with it).
    let mut lower = last_upper;
    let aligned_cutoff = partitions::floor(cutoff, width);
    if aligned_cutoff > lower && aligned_cutoff < target_upper {
        out.create.push((partitions::name(lower, width), aligned_cutoff));
        lower = aligned_cutoff;
    }
    let mut upper = partitions::floor(lower, width) + width;
    while upper <= target_upper {
        out.create.push((partitions::name(lower, width), upper));
        lower = upper;
        upper += width;
    }
    out.drop = reals
        .iter()
        .chain(&out.create)
        .filter(|(_, upper)| *upper <= drop_below)
        .map(|(name, _)| name.clone())
        .collect();
    out.empty_past = past_upper <= drop_below;
    Ok(out)
}

/// `p_past`, then real partitions with increasing bounds, then `p_future`.
fn check_layout(parts: &[Part]) -> Result<(i64, Vec<(String, i64)>), LayoutError> {
    let describe = || parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(",");
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return Err(LayoutError("table is not partitioned".into()));
    };
    let past_upper = match (first.name.as_str(), first.upper) {
        (PAST, Some(u)) => u,
        _ => return Err(LayoutError(format!("first partition must be {PAST} with a bound, got [{}]", describe()))),
    };
    if last.name != FUTURE || last.upper.is_some() || parts.len() < 2 {
        return Err(LayoutError(format!("last partition must be {FUTURE} (MAXVALUE), got [{}]", describe())));
    }
    let mut reals = Vec::new();
    let mut previous = past_upper;
    for p in &parts[1..parts.len() - 1] {
        let Some(upper) = p.upper.filter(|u| *u > previous) else {
            return Err(LayoutError(format!("partition {} is out of order in [{}]", p.name, describe())));
        };
        reals.push((p.name.clone(), upper));
        previous = upper;
    }
    Ok((past_upper, reals))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 10;

    fn layout(past_upper: i64, uppers: &[i64]) -> Vec<Part> {
        let mut parts = vec![Part { name: PAST.into(), upper: Some(past_upper) }];
        let mut lower = past_upper;
        for &u in uppers {
            parts.push(Part { name: partitions::name(lower, W), upper: Some(u) });
            lower = u;
        }
        parts.push(Part { name: FUTURE.into(), upper: None });
        parts
    }

    /// The layout after running `plan` (what the server would hold).
    fn apply(parts: &[Part], plan: &TablePlan) -> Vec<Part> {
        let mut out: Vec<Part> = parts[..parts.len() - 1].to_vec();
        out.extend(plan.create.iter().map(|(n, u)| Part { name: n.clone(), upper: Some(*u) }));
        out.retain(|p| !plan.drop.contains(&p.name));
        out.push(Part { name: FUTURE.into(), upper: None });
        out
    }

    const POLICY: Policy = Policy { width: W, keep: 40, ahead: 30 };

    #[test]
    fn a_guard_lowers_the_drop_cutoff_or_forbids_drops() {
        let now = 1_000_005;
        let parts = layout(999_950, &[999_960, 999_970, 999_980, 999_990, 1_000_000, 1_000_010]);
        let none = plan_guarded(&parts, POLICY, now, None).expect("plan");
        assert!(none.drop.is_empty() && !none.empty_past, "{none:?}");
        assert_eq!(none.create, plan(&parts, POLICY, now).expect("plan").create, "creation is not guarded");
        // Newest applied message at 999_990: cutoff 999_950 instead of 999_965.
        let lowered = plan_guarded(&parts, POLICY, now, Some(999_990 - 40)).expect("plan");
        assert!(lowered.drop.is_empty() && lowered.empty_past, "{lowered:?}");
        // A guard never raises the cutoff above now - keep.
        let high = plan_guarded(&parts, POLICY, now, Some(now + 1000)).expect("plan");
        assert_eq!(high, plan(&parts, POLICY, now).expect("plan"));
    }

    #[test]
    fn creates_ahead_and_drops_only_wholly_expired() {
        let now = 1_000_005;
        let parts = layout(999_950, &[999_960, 999_970, 999_980, 999_990, 1_000_000, 1_000_010]);
        let p = plan(&parts, POLICY, now).expect("plan");
        // cutoff = 999_965: the partition [999_960, 999_970) still holds retained windows.
        assert_eq!(p.drop, vec![partitions::name(999_950, W)]);
        assert!(p.empty_past);
        let uppers: Vec<i64> = p.create.iter().map(|c| c.1).collect();
        assert_eq!(uppers, vec![1_000_020, 1_000_030, 1_000_040]);
    }

    #[test]
    fn never_drops_a_partition_holding_a_retained_window() {
        for now in 1_000_000..1_000_100 {
            let parts = layout(999_900, &(999_910..=1_000_000).step_by(10).collect::<Vec<_>>());
            let p = plan(&parts, POLICY, now).expect("plan");
            let after = apply(&parts, &p);
            let cutoff = now - POLICY.keep;
            for d in &p.drop {
                let existing = parts.iter().find(|x| &x.name == d).and_then(|x| x.upper);
                let created = p.create.iter().find(|c| &c.0 == d).map(|c| c.1);
                let upper = existing.or(created).expect("dropped partition exists");
                assert!(upper <= cutoff, "dropped {d} ending {upper} with cutoff {cutoff}");
            }
            // Every retained second still falls into a real partition or p_future.
            let reals: Vec<i64> = after.iter().filter_map(|x| x.upper).collect();
            assert!(*reals.last().expect("bounds") >= now + POLICY.ahead, "not far enough ahead at {now}");
        }
    }

    #[test]
    fn second_run_is_a_no_op_apart_from_emptying_past() {
        let now = 1_000_005;
        let parts = layout(999_950, &[999_960]);
        let first = plan(&parts, POLICY, now).expect("plan");
        let after = apply(&parts, &first);
        let second = plan(&after, POLICY, now).expect("plan");
        assert!(second.create.is_empty() && second.drop.is_empty(), "{second:?}");
    }

    #[test]
    fn a_long_unmaintained_table_gets_one_wide_partition_not_thousands() {
        let now = 2_000_000;
        let parts = layout(1_000_000, &[1_000_010]);
        let p = plan(&parts, POLICY, now).expect("plan");
        assert!(p.create.len() <= 9, "{p:?}");
        // [1_000_010, 1_999_960): everything the table missed, dropped at once.
        assert_eq!(p.create.first().cloned(), Some((partitions::name(1_000_010, W), 1_999_960)));
        assert_eq!(p.drop, vec![partitions::name(1_000_000, W), partitions::name(1_000_010, W)]);
        let after = apply(&parts, &p);
        let uppers: Vec<i64> = after.iter().filter_map(|x| x.upper).collect();
        assert!(uppers.windows(2).all(|w| w[0] < w[1]), "{uppers:?}");
    }

    #[test]
    fn refuses_layouts_it_does_not_manage() {
        let no_future = vec![Part { name: PAST.into(), upper: Some(10) }, Part { name: "p1".into(), upper: Some(20) }];
        assert!(plan(&no_future, POLICY, 0).expect_err("refused").0.contains("p_future"));
        let unordered = layout(100, &[120, 110]);
        assert!(plan(&unordered, POLICY, 0).expect_err("refused").0.contains("out of order"));
        assert!(plan(&[], POLICY, 0).expect_err("refused").0.contains("not partitioned"));
    }
}
