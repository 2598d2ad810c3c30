#!/usr/bin/env python3
"""Backfill of two (or more) builds of the agent, alternating, under one harness.

Each round starts this build's simulators in their own process
(`eures-sync-bench sims`), runs one agent binary (`eures-sync run`, its own
process, a fresh SQLite ledger) until EURES holds every copy, and reads that
process's CPU time from /proc. Builds whose bench cannot run the simulators
apart (older ones ran them in the bench's process) are compared this way.

    bench/paired-backfill.py OLD/eures-sync target/release/eures-sync

Environment: N (postings, 100000), ROUNDS (3), SIMS (the bench binary,
target/release/eures-sync-bench).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("N", "100000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SIMS = os.environ.get("SIMS", "target/release/eures-sync-bench")
QUIET = dict(os.environ, RUST_LOG="error")


def cpu_seconds(pid):
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(agent):
    sims = subprocess.Popen([SIMS, "sims", "--postings", str(N), "--expect", str(N)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    jobag = sims.stdout.readline().split()[1]
    eures = sims.stdout.readline().split()[1]
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "agent.toml")
        with open(config, "w") as f:
            f.write(f'[database]\nurl = "sqlite://{d}/ledger.db?mode=rwc"\n'
                    f'[jobag]\nbase_url = "{jobag}"\npoll_interval_ms = 100\npage_size = 1000\n'
                    f'[eures]\nbase_url = "{eures}"\nconcurrency = 32\n'
                    f'[reconcile]\ninterval_s = 0\n[http]\nlisten = "127.0.0.1:0"\n'
                    f'[log]\nlevel = "error"\n')
        subprocess.run([agent, "migrate", "--config", config], check=True,
                       stdout=subprocess.DEVNULL, env=QUIET)
        started = time.monotonic()
        worker = subprocess.Popen([agent, "run", "--config", config],
                                  stdout=subprocess.DEVNULL, env=QUIET)
        held = sims.stdout.readline()
        wall = time.monotonic() - started
        cpu = cpu_seconds(worker.pid)
        worker.terminate()
        worker.wait()
    sims.stdin.close()
    sims.wait()
    if not held.startswith("held"):
        sys.exit(f"{agent}: the simulators said {held!r}")
    return N / wall, cpu * 1e6 / N


def main():
    builds = sys.argv[1:]
    if len(builds) < 2:
        sys.exit(__doc__)
    results = {b: [] for b in builds}
    for r in range(ROUNDS):
        for b in builds if r % 2 == 0 else builds[::-1]:
            rate, us = run(b)
            results[b].append((rate, us))
            print(f"round {r + 1} {b}: {rate:.0f} postings/s, {us:.0f} µs CPU per posting", flush=True)
    for b, runs in results.items():
        print(f"{b}: median {statistics.median(r for r, _ in runs):.0f} postings/s, "
              f"{statistics.median(u for _, u in runs):.0f} µs CPU per posting")


if __name__ == "__main__":
    main()
