"""Benchmark: the saturation curve of complete email sign-ins, open-loop, under gunicorn.

Starts Caregate under gunicorn (production mode on PostgreSQL + Redis by default, or the
SQLite default with ``--stack sqlite``) and offers sign-ins at fixed rates: a scheduler
starts sign-in i at t0 + i/rate on a thread pool large enough never to wait for earlier
ones, and the first step's latency counts from the planned start, so queueing shows. Each
sign-in is the email login's nine requests (codes reach an SMTP sink in the driver). The
rates sweep from light load up (x ``--step``) until the achieved rate falls behind the
offered one at two rates in a row; the highest achieved rate is the saturation rate, and
half of it is offered once more to print the p95 of every step that does not hash (target:
under 15 ms).
For each rate: achieved rate, p50/p95/p99 per step, errors, and the CPU of the server
(gunicorn + delivery worker), of PostgreSQL and Redis, and of the load generator itself,
each from /proc, in cores (1.00 = one core busy). ``--pin`` puts the driver on CPU 1 and
the server's processes on CPU 0 (the shared databases stay unpinned).

Each step's latency is read twice: by the driver (from the planned start of the sign-in's
step, so it includes the driver's own queueing: its threads share one GIL and the same
two cores) and by the server (gunicorn's access log: the request's time in the worker,
from the parsed request to the written response, named by the X-Bench-Step header the
driver sends). The difference is the load generator and the accept queue.

Run: `make bench` or .venv/bin/python bench/signin_throughput.py [--help]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import _common as c

DB = "caregate_bench_throughput"


@dataclass
class RateResult:
    offered: float
    achieved: float
    done: int
    errors: dict[str, int]
    steps: dict[str, list[float]]
    whole: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # cores
    served: dict[str, list[float]] = field(default_factory=dict)  # server-side seconds


def served_times(log: Path, offset: int) -> tuple[dict[str, list[float]], int]:
    """Per step, the worker's time of each request logged after ``offset`` (bytes)."""
    times: dict[str, list[float]] = {}
    with log.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    for line in data.decode("utf-8", "replace").splitlines():
        micros, _, step = line.partition(" ")
        if step and step != "-" and micros.isdigit():
            times.setdefault(step, []).append(int(micros) / 1e6)
    return times, offset + len(data)


def run_rate(args: argparse.Namespace, server: c.Server, sink: c.SmtpSink, meters: dict,
             rate: float, first_user: int) -> RateResult:  # fmt: skip
    count = max(2, round(rate * args.duration))
    steps: dict[str, list[float]] = {}
    whole: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    finished: list[float] = []

    def one(n: int, planned: float) -> None:
        timer = c.LoginTimer(first_start=planned)
        user = (first_user + n) % args.users
        try:
            c.caregate_login(server, sink, f"bench{user}@example.com", timer)
        except (c.StepFailed, TimeoutError, AssertionError) as error:
            with lock:
                errors[str(error)] = errors.get(str(error), 0) + 1
            return
        end = time.perf_counter()
        with lock:
            whole.append(end - planned)
            finished.append(end)
            for step, seconds in timer.wall.items():
                steps.setdefault(step, []).append(seconds)

    for meter in meters.values():
        meter.refresh()
    before = {name: meter.read() for name, meter in meters.items()}
    log_start = server.access_log.stat().st_size
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        t0 = time.perf_counter() + 0.05
        for n in range(count):
            planned = t0 + n / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, n, planned)
    for meter in meters.values():
        meter.refresh()
    # Completions per second between the first and the last one: at light load they follow
    # the arrivals, past saturation the server's pace (the sign-in's own length drops out).
    span = max(finished) - min(finished) if len(finished) > 1 else 0.0
    achieved = (len(finished) - 1) / span if span else 0.0
    result = RateResult(rate, achieved, len(whole), errors, steps, whole)
    wall = time.perf_counter() - t0
    result.cpu = {name: (meter.read() - before[name]) / wall for name, meter in meters.items()}
    time.sleep(0.2)  # the last lines reach the log
    result.served, _ = served_times(server.access_log, log_start)
    return result


def fmt_ms(values: list[float], q: float) -> str:
    return f"{c.percentile(values, q) * 1000:.0f}" if values else "-"


def print_result(r: RateResult) -> None:
    errors = sum(r.errors.values())
    cpu = "  ".join(f"{name} {value:.2f}" for name, value in r.cpu.items())
    print(f"\noffered {r.offered:.1f}/s  achieved {r.achieved:.1f}/s  done {r.done}  "
          f"errors {errors}  CPU cores: {cpu}")  # fmt: skip
    for reason, n in sorted(r.errors.items()):
        print(f"  error x{n}: {reason}")
    print(f"  {'':<18}{'driver-side':^24}{'server-side':^24}")
    print(f"  {'step':<18}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")  # fmt: skip
    for step in [*c.CAREGATE_STEPS, "whole sign-in"]:
        values = r.whole if step == "whole sign-in" else r.steps.get(step, [])
        served = r.served.get(step, [])
        print(f"  {step:<18}{fmt_ms(values, 0.5):>8}{fmt_ms(values, 0.95):>8}"
              f"{fmt_ms(values, 0.99):>8}{fmt_ms(served, 0.5):>8}{fmt_ms(served, 0.95):>8}"
              f"{fmt_ms(served, 0.99):>8}")  # fmt: skip


def start_server(args: argparse.Namespace, sink: c.SmtpSink) -> tuple[c.Server, dict]:
    production = args.stack == "prod"
    var_dir = c.temp_dir("caregate-bench-throughput-")
    if production:
        c.recreate_database(DB)
        c.flush_redis(args.redis_url)
        env = c.caregate_env(
            smtp_port=sink.port, var_dir=var_dir, production=True,
            database_url=f"{c.PSQL_BASE}/{DB}", redis_url=args.redis_url,
        )  # fmt: skip
    else:
        env = c.caregate_env(smtp_port=sink.port, var_dir=var_dir)
    c.prepare_caregate(env, args.users)
    access_log = var_dir / "access.log"
    access_log.touch()
    server = c.start_gunicorn(
        args.stack, c.venv_gunicorn(), "caregate.wsgi", env, c.ROOT, args.workers,
        production=production, ready_path="/healthz",
        extra=("--backlog", "2048", "--access-logfile", str(access_log),
               "--access-logformat", f"%(D)s %({{{c.STEP_HEADER.lower()}}}i)s"),
    )  # fmt: skip
    server.var_dir = var_dir
    server.access_log = access_log
    if production:
        server.worker = c.start_task_worker(env, args.task_interval)
    worker_pids = (server.worker.pid,) if server.worker else ()
    meters = {"server": c.server_meter(server.process.pid, *worker_pids)}
    if production:
        ours, everything = c.postgres_meters(DB)
        meters.update({"postgres(db)": ours, "postgres(all)": everything})
        meters["redis"] = c.redis_meter()
    meters["driver"] = c.CpuMeter(lambda: [os.getpid()])
    if args.pin:
        for pid in meters["server"].pids:
            os.sched_setaffinity(pid, {0})
        for tid in os.listdir("/proc/self/task"):  # every thread, the SMTP sink's too
            os.sched_setaffinity(int(tid), {1})
    return server, meters


def summary(results: list[RateResult], saturation: float, half: RateResult) -> None:
    print("\n=== summary (latency from each sign-in's planned start; ms)")
    print(f"{'offered/s':>10}{'achieved/s':>11}{'errors':>7}{'whole p50':>10}{'p95':>7}"
          f"{'p99':>7}{'server':>8}{'driver':>8}")  # fmt: skip
    for r in results:
        print(f"{r.offered:>10.1f}{r.achieved:>11.1f}{sum(r.errors.values()):>7}"
              f"{fmt_ms(r.whole, 0.5):>10}{fmt_ms(r.whole, 0.95):>7}{fmt_ms(r.whole, 0.99):>7}"
              f"{r.cpu['server']:>8.2f}{r.cpu['driver']:>8.2f}")  # fmt: skip
    print(f"\nsaturation: {saturation:.1f} sign-ins per second (highest achieved rate)")
    print(f"at half of it ({half.offered:.1f}/s offered, {half.achieved:.1f}/s achieved, "
          f"{sum(half.errors.values())} errors): p95 of each step that does not hash "
          f"(target under 15 ms), as the driver and as the server saw it")  # fmt: skip
    print(f"  {'step':<18}{'driver':>9}{'':<6}{'server':>9}")
    for step in c.CAREGATE_STEPS:
        cells = []
        for values in (half.steps.get(step, []), half.served.get(step, [])):
            verdict = ""
            if values and step not in c.HASHING_STEPS:
                verdict = "OK" if c.percentile(values, 0.95) < 0.015 else "over"
            cells.append(f"{fmt_ms(values, 0.95):>6} ms {verdict:<5}")
        mark = "" if step not in c.HASHING_STEPS else " (hashes: not in the target)"
        print(f"  {step:<18}{cells[0]}{cells[1]}{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=["prod", "sqlite"], default="prod")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--start-rate", type=float, default=2.0, help="sign-ins per second")
    parser.add_argument("--step", type=float, default=1.5, help="factor between rates")
    parser.add_argument("--max-rate", type=float, default=60.0)
    parser.add_argument("--rates", default="", help="comma-separated rates instead of a sweep")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of arrivals per rate")
    parser.add_argument("--threads", type=int, default=256, help="driver's thread pool")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--pin", action="store_true", help="driver on CPU 1, server on CPU 0")
    parser.add_argument("--task-interval", type=float, default=None,
                        help="db_worker's polling interval (its default: 1 s)")  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"signin_throughput {c.stamp()}: stack={args.stack} "
          f"workers={args.workers} duration={args.duration:g}s per rate, open loop, "
          f"pinned={'yes' if args.pin else 'no'}, {os.cpu_count()} CPUs")  # fmt: skip
    results: list[RateResult] = []
    with c.SmtpSink() as sink:
        server, meters = start_server(args, sink)
        try:
            for n in range(3):
                c.caregate_login(server, sink, f"bench{n}@example.com", c.LoginTimer())
            user = 3
            fixed = [float(r) for r in args.rates.split(",") if r]
            rate = fixed.pop(0) if fixed else args.start_rate
            behind = 0
            while True:
                result = run_rate(args, server, sink, meters, rate, user)
                user += result.done + sum(result.errors.values())
                results.append(result)
                print_result(result)
                if fixed:
                    rate = fixed.pop(0)
                    continue
                # Two rates in a row behind the offered one: one alone may be the shared
                # machine's other work.
                behind = behind + 1 if result.achieved < 0.9 * rate or result.errors else 0
                if args.rates or behind >= 2 or rate * args.step > args.max_rate:
                    break
                rate *= args.step
            saturation = max(r.achieved for r in results)
            half = run_rate(args, server, sink, meters, saturation / 2, user)
        finally:
            server.stop()
            shutil.rmtree(server.var_dir, ignore_errors=True)
            if args.stack == "prod" and not args.keep:
                c.drop_database(DB)
    summary(results, saturation, half)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
