use super::*;

fn record(start: i64, state: WindowVerdict, differences: u64) -> (i64, WindowRecord) {
    let r = WindowRecord {
        tbl: "query_stats_minute".into(),
        window_start: start,
        window_end: start + 60,
        state,
        old_rows: Some(10),
        new_rows: Some(10 - differences),
        run_id: 1,
        differences,
        late: (0, 0),
        clusters: ("old".into(), "new".into()),
    };
    (start, r)
}

#[test]
fn equal_neighbours_merge_and_a_lone_difference_keeps_its_own_span() {
    let base = 1_800_000_000; // a multiple of 60
    let mut records: BTreeMap<i64, WindowRecord> =
        (0..10).map(|i| record(base + i * 60, WindowVerdict::Equal, 0)).collect();
    records.insert(base + 4 * 60, record(base + 4 * 60, WindowVerdict::Different, 2).1);
    let got = spans(&records, 60, base, base + 12 * 60);
    let shape: Vec<(Option<WindowVerdict>, u64)> = got.iter().map(|s| (s.state, s.windows)).collect();
    assert_eq!(
        shape,
        [
            (Some(WindowVerdict::Equal), 4),
            (Some(WindowVerdict::Different), 1),
            (Some(WindowVerdict::Equal), 5),
            (None, 2)
        ]
    );
    assert_eq!((got[1].window_start, got[1].differences, got[1].new_rows), (base + 240, 2, 8));
    assert_eq!(got[2].old_rows, 50);
}

#[test]
fn a_day_of_compressed_windows_zooms_to_the_checked_span_and_stays_small() {
    // 2 s windows over 24 h: 43,200 windows, of which 30 were checked.
    let (size, from, to) = (2, 1_800_000_000, 1_800_000_000 + 86_400);
    let first = from + 40_000;
    let records: BTreeMap<i64, WindowRecord> =
        (0..30).map(|i| record(first + i * size, WindowVerdict::Equal, 0)).collect();
    let (shown_from, shown_to) = data_span(records.keys().map(|s| (*s, size))).expect("span");
    assert_eq!((shown_from, shown_to), (first, first + 30 * size));
    let timeline = Timeline { tbl: "t".into(), window_secs: size, spans: spans(&records, size, shown_from, shown_to) };
    assert_eq!(timeline.spans.len(), 1);
    assert_eq!(counts(&timeline), [30, 0, 0, 0, 0]);
    let report = Report {
        generated_at: "now".into(),
        from,
        to,
        timeline: Timelines { shown_from, shown_to, timelines: vec![timeline] },
        latest_windows_run: None,
        table_runs: vec![],
        open_differences: vec![],
        repairs: vec![],
    };
    let page = html(&report);
    assert!(page.len() < 20_000, "{} bytes", page.len());
    assert_eq!(page.matches("class=\"equal\" style=\"flex-grow:30\"").count(), 1, "{page}");
    // Nothing recorded: no zoom, the whole range is one unchecked span.
    assert_eq!(data_span(std::iter::empty()), None);
    assert_eq!(spans(&BTreeMap::new(), size, from, to).len(), 1);
}
