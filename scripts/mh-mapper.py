#!/usr/bin/env python3
"""Maps FILE read-only, reads its first page, closes the descriptor (the mapping stays), writes
READY, waits for GO to exist, reads the page again and prints whether it was the same bytes.
A SIGBUS on the second read kills the process (exit status 135 from a shell): what a fenced host
must do. Used by scripts/check-multihost (the lease and delete scenarios).

With a fourth argument `keep-fd` the descriptor stays open, and after GO a pread(2) of the first
page through it comes first: it prints `pread after GO: errno N` or whether it read the same
bytes (what `famfs rm --revoke` must turn into ESTALE), then the mapping is read as above."""
import mmap
import os
import sys
import time

path, ready, go = sys.argv[1:4]
keep_fd = len(sys.argv) > 4 and sys.argv[4] == "keep-fd"
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
if not keep_fd:
    f.close()
first = bytes(m[0:4096])
with open(ready, "w") as r:
    r.write("ok")
while not os.path.exists(go):
    time.sleep(0.05)
if keep_fd:
    try:
        got = os.pread(f.fileno(), 4096, 0)
        print("pread after GO:", "same bytes" if got == first else "OTHER BYTES", flush=True)
    except OSError as e:
        print("pread after GO: errno", e.errno, flush=True)
again = bytes(m[0:4096])
print("read after GO:", "same bytes" if again == first else "OTHER BYTES", flush=True)
