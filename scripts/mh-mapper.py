#!/usr/bin/env python3
"""Maps FILE read-only, reads its first page, closes the descriptor (the mapping stays), writes
READY, waits for GO to exist, reads the page again and prints whether it was the same bytes.
A SIGBUS on the second read kills the process (exit status 135 from a shell): what a fenced host
must do. Used by scripts/check-multihost (the lease scenarios)."""
import mmap
import os
import sys
import time

path, ready, go = sys.argv[1:4]
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
first = bytes(m[0:4096])
with open(ready, "w") as r:
    r.write("ok")
while not os.path.exists(go):
    time.sleep(0.05)
again = bytes(m[0:4096])
print("read after GO:", "same bytes" if again == first else "OTHER BYTES", flush=True)
