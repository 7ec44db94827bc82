#!/usr/bin/env python3
"""The distribution workload, the same tree as the CFEngine baseline.

  dist_gen.py tree DIR           10,000 files of 198 bytes in s00..s99, and
                                 big/b00..b09 of 1 MiB each (deterministic)
  dist_gen.py policy TREE OUT    OUT/dist.toml: one [[file]] promise per file of
                                 TREE, source = its path in TREE, path = /dist/<path>
  dist_gen.py mutate FILE N      rewrite FILE with 198 bytes that depend on N
"""
import hashlib
import os
import sys


def tree(t):
    for i in range(10000):
        d = os.path.join(t, "s%02d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        body = "# dist file %05d\n" % i + "".join(
            "k%d=%s\n" % (j, hashlib.sha256(b"%d-%d" % (i, j)).hexdigest()[:56]) for j in range(3))
        with open(os.path.join(d, "f%05d" % i), "w") as f:
            f.write(body)
    os.makedirs(os.path.join(t, "big"), exist_ok=True)
    for i in range(10):
        h = hashlib.sha256(b"big%d" % i).digest()
        blk = bytearray()
        while len(blk) < 1 << 20:
            h = hashlib.sha256(h).digest()
            blk += h
        with open(os.path.join(t, "big", "b%02d" % i), "wb") as f:
            f.write(bytes(blk[:1 << 20]))


def policy(t, out):
    rels = []
    for d, _, files in os.walk(t):
        for name in files:
            rels.append(os.path.relpath(os.path.join(d, name), t))
    rels.sort()
    with open(out, "w") as f:
        f.write("# The distribution benchmark: every file of files/ to /dist/.\n")
        for r in rels:
            f.write('\n[[file]]\npath = "/dist/%s"\nsource = "%s"\nmode = "0644"\n' % (r, r))


def mutate(p, n):
    with open(p, "w") as f:
        f.write(("# dist file changed %06d\n" % n).ljust(197, "x") + "\n")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "tree":
        tree(sys.argv[2])
    elif cmd == "policy":
        policy(sys.argv[2], sys.argv[3])
    elif cmd == "mutate":
        mutate(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: dist_gen.py tree DIR | policy TREE OUT | mutate FILE N")
