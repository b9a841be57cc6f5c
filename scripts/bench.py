#!/usr/bin/env python3
"""artifactfs benchmark: the same workloads, in one run, on a plain directory, on an
artifactfs mount (default fs backend, full durability) and, when bindfs is
installed, on a bindfs passthrough of a plain directory. Prints one line per
workload with absolute figures and the ratios mount/native and mount/bindfs.
Every figure is the median of --repeat runs. Ratios are for the record
(docs/BENCHMARKS.md); nothing here fails on a ratio.

Usage: scripts/bench.sh [--short] [--repeat N] [--workdir DIR]
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

ARGS = None
BIN = None


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


class Target:
    def __init__(self, name, root):
        self.name, self.root = name, root

    def step(self):
        d = os.path.join(self.root, "bench", "step")
        os.makedirs(d, exist_ok=True)
        return d

    def setup(self):
        pass

    def teardown(self):
        pass

    def rss_kib(self):
        return None


class Native(Target):
    pass


class ArtifactFs(Target):
    def __init__(self, name, root, data):
        super().__init__(name, root)
        self.data = data

    def setup(self):
        os.makedirs(self.root, exist_ok=True)
        sh(f"{BIN} mount {self.root} --data {self.data}")
        rec = None
        for _ in range(200):
            if is_mounted(self.root):
                break
            time.sleep(0.02)
        self.pid = int(open(os.path.join(self.data, "lock")).read().strip())

    def teardown(self):
        if is_mounted(self.root):
            sh(f"{BIN} umount {self.root}")

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])


class Bindfs(Target):
    def __init__(self, name, root, src):
        super().__init__(name, root)
        self.src = src

    def setup(self):
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.src, exist_ok=True)
        sh(f"bindfs --no-allow-other {self.src} {self.root}")

    def teardown(self):
        if is_mounted(self.root):
            sh(f"fusermount3 -u {self.root}")


def median_of(fn, repeat):
    vals = []
    for i in range(repeat):
        vals.append(fn(i))
    return statistics.median(vals)


def fio(args):
    out = subprocess.run(
        "fio --output-format=json --ioengine=psync " + args,
        shell=True, check=True, capture_output=True, text=True,
    ).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    return side["bw_bytes"] / (1 << 20)  # MiB/s


# --- workloads: each returns (value, unit, higher_is_better) -----------------

def seq_write(t, size_mib):
    path = os.path.join(t.step(), "seq.bin")

    def run(i):
        return fio(f"--name=w --filename={path} --rw=write --bs=1M --size={size_mib}M --end_fsync=1")
    return median_of(run, ARGS.repeat), "MiB/s", True


def seq_read(t, size_mib, cold):
    path = os.path.join(t.step(), "seq.bin")

    def run(i):
        if cold:
            drop_caches()
        else:
            with open(path, "rb") as f:  # warm the cache once
                while f.read(1 << 20):
                    pass
        return fio(f"--name=r --filename={path} --rw=read --bs=1M --size={size_mib}M")
    return median_of(run, ARGS.repeat), "MiB/s", True


def small_files(t, n):
    """create+write+close n files of 4 KiB, each a committed version on the mount."""
    payload = os.urandom(4096)
    results = {}

    def create(i):
        d = os.path.join(t.step(), f"small{i}")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        start = time.perf_counter()
        for k in range(n):
            fd = os.open(os.path.join(d, f"f{k:05}.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, payload[:4000] + b"needle%05d" % k + payload[:86])
            os.close(fd)
        return n / (time.perf_counter() - start)
    results["create"] = (median_of(create, ARGS.repeat), "files/s", True)
    d = os.path.join(t.step(), "small0")

    def timed(fn):
        def run(i):
            if ARGS.cold_meta:
                drop_caches()
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1000
        return median_of(run, ARGS.repeat), "ms", False

    names = sorted(os.listdir(d))
    results["stat"] = timed(lambda: [os.stat(os.path.join(d, x)) for x in names])
    results["ls -l"] = timed(lambda: subprocess.run(["ls", "-l", d], check=True, stdout=subprocess.DEVNULL))
    results["grep -r"] = timed(lambda: subprocess.run(["grep", "-rl", "needle00042", d], check=True, stdout=subprocess.DEVNULL))

    def read_all():
        for x in names:
            with open(os.path.join(d, x), "rb") as f:
                f.read()
    results["read all"] = timed(read_all)
    return results


def concurrent_writers(t, writers, files):
    """writers threads x files files of 1 KiB..1 MiB; every file's bytes checked after."""
    rng = random.Random(7)
    sizes = [[rng.randint(1 << 10, 1 << 20) for _ in range(files)] for _ in range(writers)]
    pool = os.urandom(1 << 20)

    def run(i):
        base = os.path.join(t.step(), f"conc{i}")
        if os.path.exists(base):
            shutil.rmtree(base)
        os.makedirs(base)

        def writer(w):
            for k, size in enumerate(sizes[w]):
                data = pool[:size]
                p = os.path.join(base, f"w{w:03}-{k:03}")
                with open(p, "wb") as f:
                    f.write(data)
            return sum(sizes[w])
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=writers) as ex:
            total = sum(ex.map(writer, range(writers)))
        secs = time.perf_counter() - start
        for w in range(writers):
            for k, size in enumerate(sizes[w]):
                with open(os.path.join(base, f"w{w:03}-{k:03}"), "rb") as f:
                    if f.read() != pool[:size]:
                        raise SystemExit(f"{t.name}: w{w}-{k} lost or corrupt")
        return total / secs / (1 << 20)
    return median_of(run, ARGS.repeat), "MiB/s", True


def big_catalog(workdir, versions):
    """A catalog of `versions` synthetic versions: query latency and daemon RSS."""
    data = os.path.join(workdir, "catalog-data")
    mnt = os.path.join(workdir, "catalog-mnt")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    # Let the daemon create and migrate an empty catalog, then fill it in bulk.
    t = ArtifactFs("catalog", mnt, data)
    t.setup()
    t.teardown()
    db = sqlite3.connect(os.path.join(data, "catalog.db"))
    per = 10
    arts = max(1, versions // per)
    db.execute("PRAGMA synchronous=OFF")
    db.executemany(
        "INSERT INTO artifacts(rowid, id, path, trace_id, step_id, live, mode, uid, gid, mtime_ns, owner,"
        " created_at_ns, current_version, artifact_type) VALUES (?,?,?,?,?,1,420,0,0,0,?,0,?,?)",
        ((i + 1, f"BENCH{i:010}", f"trace{i % 1000}/step{i % 7}/f{i}.md", f"trace{i % 1000}", f"step{i % 7}",
          f"agent{i % 50}", per, "critique" if i % 3 == 0 else "draft") for i in range(arts)),
    )
    manifest = json.dumps({"id": "x", "version": 1, "trace_id": "t", "step_id": "s", "path": "p", "created_by": "a",
                           "created_at": "2026-11-26T00:00:00.000Z", "uri": "fs:///x", "size_bytes": 1,
                           "checksum": "sha256:" + "0" * 64, "status": "completed", "supersedes": None, "owner": "a"})
    db.executemany(
        "INSERT INTO versions(artifact_rowid, version, size_bytes, sha256, created_at_ns, created_by, path, status,"
        " manifest) VALUES (?,?,1,?,?,?,?,'completed',?)",
        ((i + 1, v + 1, f"{i:032x}{v:032x}", i * per + v, f"agent{(i + v) % 50}", f"trace{i % 1000}/step{i % 7}/f{i}.md",
          manifest) for i in range(arts) for v in range(per)),
    )
    db.commit()
    db.close()
    t.setup()
    out = {}
    for label, args in (("query --agent", "--agent agent7"), ("query --trace", "--trace trace42")):
        def run(i, args=args):
            start = time.perf_counter()
            subprocess.run(f"{BIN} query --data {data} --limit 100 {args}", shell=True, check=True,
                           stdout=subprocess.DEVNULL)
            return (time.perf_counter() - start) * 1000
        out[label] = (median_of(run, ARGS.repeat), "ms", False)
    sh(f"ls {mnt}/trace42/step0 > /dev/null")
    out["daemon peak RSS"] = (t.rss_kib() / 1024, "MiB", False)
    t.teardown()
    return out


def main():
    global ARGS, BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true", help="small sizes (CI)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp/artifactfs-bench")
    ap.add_argument("--bin", default=os.environ.get("ARTIFACTFS_BIN", "target/release/artifactfs"))
    ap.add_argument("--cold-meta", action="store_true", help="drop caches before metadata workloads")
    ARGS = ap.parse_args()
    BIN = os.path.abspath(ARGS.bin)
    size = 64 if ARGS.short else 1024
    nsmall = 300 if ARGS.short else 5000
    writers, files = (10, 5) if ARGS.short else (100, 50)
    nversions = 20_000 if ARGS.short else 1_000_000

    w = ARGS.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    targets = [Native("native", os.path.join(w, "native")),
               ArtifactFs("artifactfs", os.path.join(w, "mnt"), os.path.join(w, "data"))]
    if shutil.which("bindfs"):
        targets.append(Bindfs("bindfs", os.path.join(w, "bind"), os.path.join(w, "bindsrc")))
    os.makedirs(targets[0].root)
    rows = {}
    try:
        for t in targets:
            t.setup()
            r = {}
            r[f"seq write {size} MiB"] = seq_write(t, size)
            r[f"seq read cold {size} MiB"] = seq_read(t, size, cold=True)
            r[f"seq read warm {size} MiB"] = seq_read(t, size, cold=False)
            for k, v in small_files(t, nsmall).items():
                r[f"{nsmall} x 4 KiB: {k}"] = v
            r[f"{writers} writers x {files} files"] = concurrent_writers(t, writers, files)
            rows[t.name] = r
            t.teardown()
        cat = big_catalog(w, nversions)
    finally:
        for t in targets:
            t.teardown()

    names = [t.name for t in targets]
    print(f"# artifactfs benchmark {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.uname().nodename}, "
          f"{os.cpu_count()} cores, median of {ARGS.repeat}{', short' if ARGS.short else ''}")
    header = f"{'workload':34} " + " ".join(f"{n:>12}" for n in names) + f" {'mount/native':>13}"
    if "bindfs" in names:
        header += f" {'mount/bindfs':>13}"
    print(header)
    for wl in rows["native"]:
        vals = [rows[n][wl][0] for n in names]
        unit, higher = rows["native"][wl][1], rows["native"][wl][2]
        line = f"{wl + ' (' + unit + ')':34} " + " ".join(f"{v:12.1f}" for v in vals)
        def ratio(a, b):
            # Always "how many times as good as": >1 means artifactfs is better.
            return (a / b) if higher else (b / a)
        line += f" {ratio(vals[1], vals[0]):12.2f}x"
        if "bindfs" in names:
            line += f" {ratio(vals[1], vals[2]):12.2f}x"
        print(line)
    print(f"# catalog of {nversions} versions (on the mount)")
    for k, (v, unit, _) in cat.items():
        print(f"{k + ' (' + unit + ')':34} {v:12.1f}")
    print("# ratios: >1.00x means artifactfs is faster (for times: native time / mount time)")


if __name__ == "__main__":
    main()
