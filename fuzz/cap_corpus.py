#!/usr/bin/env python3
"""Picks at most N files (and at most B bytes) of a fuzz corpus that keep
as much of its coverage as possible: a greedy set cover over libFuzzer's
merge control file (written by `-merge=1 -merge_control_file=FILE`), each
step taking the file that adds the most edges not yet covered, then the
most features (edges with hit-count buckets), then the smaller.

    cap_corpus.py CONTROL_FILE OUT_DIR [max_files] [max_bytes]

Copies the chosen files into OUT_DIR (named by their SHA-1, as libFuzzer
names them) and prints how many features they keep. scripts/fuzz.sh --cmin
calls it after `cargo fuzz cmin` left more than the committed corpus may
hold (docs/fuzzing.md).
"""

import hashlib
import os
import shutil
import sys


def read_control(path):
    """The control file's inputs as (path, size, edges, features)."""
    with open(path) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    paths = lines[2 : 2 + count]
    size, sets = {}, {"FT": {}, "COV": {}}
    for line in lines[2 + count :]:
        kind, _, rest = line.partition(" ")
        fields = rest.split()
        if kind == "STARTED":
            size[int(fields[0])] = int(fields[1])
        elif kind in sets:
            sets[kind][int(fields[0])] = set(map(int, fields[1:]))
    ft, cov = sets["FT"], sets["COV"]
    return [(paths[i], size.get(i, 0), cov.get(i, set()), ft[i]) for i in sorted(ft)]


def main():
    control, out = sys.argv[1], sys.argv[2]
    max_files = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    max_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20
    inputs = read_control(control)
    all_edges = set().union(set(), *(x[2] for x in inputs))
    all_features = set().union(set(), *(x[3] for x in inputs))
    edges, features, chosen, used = set(), set(), [], 0
    left = list(inputs)
    while left and len(chosen) < max_files:
        gain = lambda x: (len(x[2] - edges), len(x[3] - features), -x[1])
        best = max(left, key=gain)
        if gain(best)[:2] == (0, 0):
            break
        left.remove(best)
        if used + best[1] > max_bytes:
            continue
        chosen.append(best)
        edges |= best[2]
        features |= best[3]
        used += best[1]
    os.makedirs(out, exist_ok=True)
    for path, _, _, _ in chosen:
        with open(path, "rb") as f:
            name = hashlib.sha1(f.read()).hexdigest()
        shutil.copyfile(path, os.path.join(out, name))
    print(
        f"kept {len(chosen)} of {len(inputs)} files, {used} bytes: "
        f"{len(edges)} of {len(all_edges)} edges, {len(features)} of {len(all_features)} features"
    )


if __name__ == "__main__":
    main()
