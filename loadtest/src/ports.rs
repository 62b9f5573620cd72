//! Free TCP ports on 127.0.0.1 for the processes a bench or a test starts,
//! below the ephemeral range (32768 and up here): a port the kernel hands out
//! for binding to port 0 is an ephemeral one, and until the process binds
//! it an outgoing connection may be given it. 20000-25999 lies away from the
//! local stacks' bases (13300-14499) and from the soak's broker
//! (26000-29999); `compose/local/lowport.py` is the scripts' counterpart.

use std::sync::atomic::{AtomicU32, Ordering};

const LOW: u32 = 20_000;
const COUNT: u32 = 6_000;

/// A port nothing is bound to right now. Calls take ports in turn from a
/// start derived from the process id, so one process never hands out the
/// same port twice while neither is bound yet, and two processes start apart.
pub fn free_port() -> std::io::Result<u16> {
    static TURN: AtomicU32 = AtomicU32::new(0);
    // Pids of successive processes differ by a few; 37 spreads them apart.
    let start = std::process::id().wrapping_mul(37);
    for _ in 0..COUNT {
        let offset = start.wrapping_add(TURN.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(LOW + offset).expect("below 26000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no free port in {LOW}-{}", LOW + COUNT - 1)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_lie_below_the_ephemeral_range_and_one_process_never_repeats_one() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_port().expect("free port")).collect();
        assert!(ports.iter().all(|p| (20_000..26_000).contains(p)), "{ports:?}");
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
