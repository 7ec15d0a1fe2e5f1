#!/usr/bin/env python3
# Writes the golden shadow YAML files of famfs-cli's shadow tests with libyaml's own emitter
# (PyYAML's CEmitter), fed the event sequence the C famfs's famfs_emit_file_yaml() emits (read
# from its famfs_yaml.c): stream, explicit document start and end, a block mapping "file" holding
# path, size, flags, mode, uid, gid, nextents and the extent list (simple_ext_list, or
# striped_ext_list with nstrips, chunk_size and the strips' simple_ext_list), every scalar plain
# with implicit tags. Run: python3 gen.py (in this directory); needs PyYAML built with libyaml.
import yaml
from yaml.events import *

assert yaml.__with_libyaml__, "PyYAML without libyaml: the goldens must come from libyaml"

def s(v):
    return ScalarEvent(None, None, (True, True), v, style=None)

def kv(k, v):
    return [s(k), s(v)]

def simple(exts):
    ev = [s("simple_ext_list"), SequenceStartEvent(None, None, True, flow_style=False)]
    for d, o, l in exts:
        ev += [MappingStartEvent(None, None, True, flow_style=False)]
        ev += kv("devindex", "%d" % d) + kv("offset", "0x%x" % o) + kv("length", "0x%x" % l)
        ev += [MappingEndEvent()]
    return ev + [SequenceEndEvent()]

def doc(path, size, flags, mode, uid, gid, exts=None, striped=None):
    ev = [StreamStartEvent(encoding="utf-8"), DocumentStartEvent(explicit=True),
          MappingStartEvent(None, None, True, flow_style=False), s("file"),
          MappingStartEvent(None, None, True, flow_style=False)]
    ev += kv("path", path) + kv("size", "%d" % size) + kv("flags", "%d" % flags)
    ev += kv("mode", "0%o" % mode) + kv("uid", "%d" % uid) + kv("gid", "%d" % gid)
    if striped is None:
        ev += kv("nextents", "%d" % len(exts)) + simple(exts)
    else:
        nstrips, chunk, strips = striped
        ev += kv("nextents", "1") + [s("striped_ext_list"), SequenceStartEvent(None, None, True, flow_style=False),
               MappingStartEvent(None, None, True, flow_style=False)]
        ev += kv("nstrips", "%d" % nstrips) + kv("chunk_size", "0x%x" % chunk) + simple(strips)
        ev += [MappingEndEvent(), SequenceEndEvent()]
    ev += [MappingEndEvent(), MappingEndEvent(), DocumentEndEvent(explicit=True), StreamEndEvent()]
    return yaml.emit(ev, Dumper=yaml.CDumper)

WORDS = " ".join("word%02d" % i for i in range(20))
LONG_PLAIN = "dir with spaces/" + WORDS + "/" + WORDS
LONG_SINGLE = "x: " + WORDS + "  two  spaces " + WORDS
LONG_DOUBLE = "caf\u00e9 " + WORDS + "  " + WORDS

cases = {
    "simple": doc("dir/file", 3145728, 2, 0o644, 0, 0, [(0, 0xa00000, 0x400000)]),
    "multi": doc("a/b/c", 13 << 20, 2, 0o600, 1000, 1000, [(0, 0xa00000, 0x400000), (1, 0x40000000, 0xa00000)]),
    "striped": doc("il", 8 << 20, 2, 0o640, 7, 8, striped=(3, 0x200000, [(0, 0x40000000, 0x400000), (0, 0x80000000, 0x400000), (0, 0xc0000000, 0x400000)])),
    "superblock": doc(".meta/.superblock", 0x200000, 0, 0o444, 0, 0, [(0, 0, 0x200000)]),
    "log": doc(".meta/.log", 0x800000, 0, 0o644, 0, 0, [(0, 0x200000, 0x800000)]),
    "quoted": doc("x/a: b", 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
    "hash": doc("#lead", 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
    "nonascii": doc("caf\u00e9", 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
    "long-plain": doc(LONG_PLAIN, 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
    "long-single": doc(LONG_SINGLE, 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
    "long-double": doc(LONG_DOUBLE, 4096, 2, 0o644, 0, 0, [(0, 0xa00000, 0x200000)]),
}
for name, text in cases.items():
    with open(name + ".yaml", "w") as f:
        f.write(text)
