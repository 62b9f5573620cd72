"""Free TCP ports on 127.0.0.1 below the ephemeral range, for the processes a
run starts (metrics, APIs, brokers).

A port the kernel hands out for binding to port 0 is an ephemeral one: until
the server binds it, an outgoing connection may be given it as its local
port, and a connection to it from 127.0.0.1 may connect to itself (TCP
simultaneous open) and look like a listener. Ports here lie in 20000-25999:
below the ephemeral range (32768 and up), away from the stacks' bases
(13300-14499) and from the soak's broker (26000-29999). The Rust side
(the bench, the tests) is `loadtest::ports`.

As a script (`python3 lowport.py`, what targets.sh's free_port runs) it
prints one port, starting from its own pid so that a shell's successive
calls, each a new process, start apart.
"""

import itertools
import os
import random
import socket

LOW, COUNT = 20000, 6000

_next = itertools.count(random.SystemRandom().randrange(COUNT))


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(start=None):
    """A port nothing listens on now; successive calls in one process take
    ports in turn, so two are never the same while neither is bound yet."""
    for i in range(COUNT):
        port = LOW + ((next(_next) if start is None else start + i) % COUNT)
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {LOW}-{LOW + COUNT - 1}")


if __name__ == "__main__":
    # Pids of successive processes differ by a few; 37 spreads them apart.
    print(free_port(start=os.getpid() * 37))
