#!/usr/bin/env python3
"""Restart after kill -9 under load: time from exec to the first answer.

    restart.py BINARY CONFIG DATA [--load-secs 20] [--users 1000] [--rounds 5]

Starts BINARY serve on CONFIG with the data folder DATA, loads it with wrk (bench/wrk/
activity.lua, 64 connections, random users) for --load-secs, kills it with SIGKILL while the
load runs, then starts it again and measures, from the exec to the first answer of a durable
call (POST /user/<user>/activities, answered 200): the whole restart a caller sees, the store's
recovery, the component's load and the worker's replay included. Repeats --rounds times on the
same data (so later rounds restart a larger store) and prints one line per round and
`RESTART <p50 ms> <max ms>`. Exits non-zero if a restart never answers within 60 s.
"""
import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import time


def start(binary, config, data):
    began = time.monotonic()
    env = dict(os.environ, REVENANT_LOG="warn")
    proc = subprocess.Popen(
        [binary, "serve", "--config", config, "--data", data, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = began + 60
    for line in proc.stdout:
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            return proc, began, (m.group(1), int(m.group(2)))
        if time.monotonic() > deadline:
            break
    proc.kill()
    sys.exit("the server did not start")


def first_answer(addr, began):
    deadline = began + 60
    body = b'{"kind":"restart","detail":"probe"}'
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(*addr, timeout=60)
            conn.request("POST", "/user/probe/activities", body,
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return (time.monotonic() - began) * 1e3
        except OSError:
            pass
    sys.exit("no answer within 60 s of the restart")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("config")
    parser.add_argument("data")
    parser.add_argument("--load-secs", type=int, default=20)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = []
    proc, _, addr = start(args.binary, args.config, args.data)
    for n in range(args.rounds):
        url = f"http://{addr[0]}:{addr[1]}"
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c64", f"-d{args.load_secs + 5}s", "-s", "bench/wrk/activity.lua", url],
            env=dict(os.environ, USERS=str(args.users), PREFIX=f"r{n}-"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.load_secs)  # the load to interrupt, not a wait for a condition
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # wrk would keep hammering the dead port (the new server listens on another).
        wrk.kill()
        wrk.wait()
        proc, began, addr = start(args.binary, args.config, args.data)
        ms = first_answer(addr, began)
        times.append(ms)
        print(f"round {n + 1}: kill -9 after {args.load_secs} s of load, first answer {ms:.0f} ms after exec")
    proc.kill()
    proc.wait()
    print(f"RESTART {statistics.median(times):.0f} {max(times):.0f}")


main()
