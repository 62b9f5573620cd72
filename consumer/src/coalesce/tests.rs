//! Keys compared through their inline words order exactly as their columns do.

use std::cmp::Ordering;
use std::sync::Arc;

use super::*;

fn row(cells: Vec<Cell>) -> Row {
    Row { table: 0, cells }
}

/// A small pseudo-random sequence (no dependency for one test).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A text or bytes cell (a column holds one or the other, never both).
fn text(state: &mut u64, as_text: bool) -> Cell {
    // Lengths around the 23 bytes the words hold; NULs and shared prefixes.
    let len = (next(state) % 30) as usize;
    let alphabet = [b'a', b'b', 0u8, 0xff];
    let bytes: Vec<u8> = (0..len).map(|_| alphabet[(next(state) % 4) as usize]).collect();
    if as_text {
        Cell::Text(Arc::from(String::from_utf8_lossy(&bytes).into_owned()))
    } else {
        Cell::Bytes(Arc::from(bytes))
    }
}

#[test]
fn inline_words_order_keys_as_their_columns() {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let layouts: [&[usize]; 4] = [&[0, 1, 2], &[1, 0], &[2, 1, 0, 3], &[3, 0]];
    for (layout, key) in layouts.into_iter().enumerate() {
        let as_text = layout % 2 == 0;
        let rows: Vec<Row> = (0..300)
            .map(|_| {
                let mut s = state;
                let cells = vec![
                    Cell::UInt(next(&mut s) % 3),
                    text(&mut s, as_text),
                    Cell::Time((next(&mut s) % 5) as i64 - 2),
                    if next(&mut s) % 5 == 0 { Cell::Null } else { Cell::Int((next(&mut s) % 3) as i64 - 1) },
                ];
                state = s;
                row(cells)
            })
            .collect();
        for a in &rows {
            for b in &rows {
                let (ka, kb) = (KeyRef::new(a, key), KeyRef::new(b, key));
                let expected = compare_keys(a, b, key);
                assert_eq!(ka.cmp(&kb), expected, "{key:?}: {:?} vs {:?}", a.cells, b.cells);
                if expected == Ordering::Equal {
                    assert_eq!(kb.cmp(&ka), Ordering::Equal);
                }
            }
        }
    }
}
