"""Benchmark: server CPU per complete email login, in Argon2id verifies, beside a reference site.

Starts three gunicorn servers on 127.0.0.1 and signs in through every request of each one's
email login (password + emailed code), one login at a time:

- Caregate in production mode on PostgreSQL + Redis (``--prod-workers`` workers);
- Caregate's SQLite default (development mode, DEBUG off, 1 worker);
- the reference site under bench/peer/ (Django + django-two-factor-auth's email method,
  SQLite, 1 worker) from its own virtualenv, bench/peer/.venv (created on first use).

Codes arrive at an SMTP sink inside the driver, so no request of the driver's is counted
but the login's own. CPU is utime + stime from /proc/<pid>/stat of gunicorn's master and
workers; for production also PostgreSQL's and Redis's processes. The logins run in blocks
interleaved across the three servers so the machine's background load falls on all alike,
and one Argon2id verify (the app's hasher and settings) is measured before and after.
Prints CPU per login in ms and in verifies, the ratio to the reference, the per-step
split (median wall, mean server CPU) and SQL queries per step (in-process, test client).

Run: `make bench` or .venv/bin/python bench/login_cost.py [--logins 30] [--help]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import _common as c

PROD_DB = "caregate_bench_login_cost"


@dataclass
class Target:
    key: str
    label: str
    server: c.Server
    login: Callable[[int, c.LoginTimer], None]
    steps: list[str]
    meters: dict[str, c.CpuMeter]  # "server" first; the rest are the database and cache
    query_cmd: tuple[list[str], dict[str, str]]
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, summed over the logins
    step_cpu: dict[str, list[float]] = field(default_factory=dict)
    step_db_cpu: dict[str, list[float]] = field(default_factory=dict)
    step_wall: dict[str, list[float]] = field(default_factory=dict)
    wall: list[float] = field(default_factory=list)
    driver_cpu: float = 0.0
    logins: int = 0
    queries: dict[str, int] = field(default_factory=dict)
    floor: float | None = None  # server CPU of one GET /healthz, seconds (Caregate only)


def probe(target: Target) -> Callable[[str], Callable[[], None]]:
    """Wrap each request with reads of the server's (and database's) CPU."""
    server = target.meters["server"]
    ours = target.meters.get("postgres (this database)")
    cache = target.meters.get("redis")

    def around(step: str) -> Callable[[], None]:
        s0 = server.read()
        d0 = (ours.read() + cache.read()) if ours else 0.0

        def done() -> None:
            target.step_cpu.setdefault(step, []).append(server.read() - s0)
            if ours:
                d1 = ours.read() + cache.read()
                target.step_db_cpu.setdefault(step, []).append(d1 - d0)

        return done

    return around


def run_block(target: Target, first_user: int, count: int) -> None:
    for meter in target.meters.values():
        meter.refresh()
    before = {name: meter.read() for name, meter in target.meters.items()}
    driver = c.self_cpu()
    for n in range(count):
        timer = c.LoginTimer(around=probe(target))
        start = time.perf_counter()
        target.login(first_user + n, timer)
        target.wall.append(time.perf_counter() - start)
        for step, seconds in timer.wall.items():
            target.step_wall.setdefault(step, []).append(seconds)
    target.driver_cpu += c.self_cpu() - driver
    for meter in target.meters.values():
        meter.refresh()  # a backend that appeared meanwhile counts from zero
    for name, meter in target.meters.items():
        target.cpu[name] = target.cpu.get(name, 0.0) + meter.read() - before[name]
    target.logins += count


def start_targets(
    args: argparse.Namespace, sink: c.SmtpSink, users: int, targets: list[Target]
) -> None:
    """Start each server, appending it to ``targets`` at once (so a failure stops it too)."""
    qc = str(c.BENCH / "_query_counts.py")
    wanted = set(args.targets.split(","))
    if "prod" in wanted:
        c.recreate_database(PROD_DB)
        c.flush_redis(args.redis_url)
        env = c.caregate_env(
            smtp_port=sink.port,
            var_dir=c.temp_dir("caregate-bench-prod-"),
            database_url=f"{c.PSQL_BASE}/{PROD_DB}",
            redis_url=args.redis_url,
            production=True,
        )
        c.prepare_caregate(env, users)
        server = c.start_gunicorn(
            "prod",
            c.venv_gunicorn(),
            "caregate.wsgi",
            env,
            c.ROOT,
            args.prod_workers,
            production=True,
            ready_path="/healthz",
        )
        server.var_dir = Path(env["CAREGATE_VAR_DIR"])
        server.worker = c.start_task_worker(env, args.task_interval)
        worker_pids = (server.worker.pid,) if server.worker else ()
        ours, everything = c.postgres_meters(PROD_DB)
        meters = {
            "server": c.server_meter(server.process.pid, *worker_pids),
            "postgres (this database)": ours,
            "postgres (all processes)": everything,
            "redis": c.redis_meter(),
        }
        if server.worker is not None:
            meters["delivery worker"] = c.CpuMeter(lambda w=server.worker.pid: c.children_of(w))
        targets.append(
            Target(
                "prod",
                f"Caregate production, PostgreSQL+Redis, {args.prod_workers} workers",
                server,
                lambda n, t, s=server: c.caregate_login(s, sink, f"bench{n}@example.com", t),
                c.CAREGATE_STEPS,
                meters,
                ([sys.executable, qc, "caregate"], env),
            )
        )
    if "sqlite" in wanted:
        env = c.caregate_env(smtp_port=sink.port, var_dir=c.temp_dir("caregate-bench-sqlite-"))
        c.prepare_caregate(env, users)
        server = c.start_gunicorn(
            "sqlite", c.venv_gunicorn(), "caregate.wsgi", env, c.ROOT, 1, ready_path="/healthz"
        )
        server.var_dir = Path(env["CAREGATE_VAR_DIR"])
        targets.append(
            Target(
                "sqlite",
                "Caregate SQLite default, 1 worker",
                server,
                lambda n, t, s=server: c.caregate_login(s, sink, f"bench{n}@example.com", t),
                c.CAREGATE_STEPS,
                {"server": c.server_meter(server.process.pid)},
                ([sys.executable, qc, "caregate"], env),
            )
        )
    if "peer" in wanted:
        c.ensure_peer_venv()
        var_dir = c.temp_dir("caregate-bench-peer-")
        env = c.peer_env(smtp_port=sink.port, var_dir=var_dir)
        c.prepare_peer(env, users)
        gunicorn = c.peer_python().parent / "gunicorn"
        server = c.start_gunicorn(
            "peer", gunicorn, "peer_site.wsgi", env, c.PEER, 1, ready_path="/account/login/"
        )
        server.var_dir = var_dir
        targets.append(
            Target(
                "peer",
                "django-two-factor-auth site, SQLite, 1 worker",
                server,
                lambda n, t, s=server: c.peer_login(s, sink, n, t),
                c.PEER_STEPS,
                {"server": c.server_meter(server.process.pid)},
                ([str(c.peer_python()), qc, "peer"], env),
            )
        )
    return targets


def measure_floor(target: Target, requests_count: int = 300) -> None:
    """Server CPU of a request that does nothing: GET /healthz reads no row and renders no
    template, so it is gunicorn, Django's handler and the whole middleware stack alone.
    Nine of them are the least any nine-request login can cost on this stack."""
    session = c.browser(target.server)
    for _ in range(50):
        session.get(target.server.base + "/healthz")
    meter = target.meters["server"]
    meter.refresh()
    before = meter.read()
    for _ in range(requests_count):
        session.get(target.server.base + "/healthz")
    target.floor = (meter.read() - before) / requests_count


def count_queries(target: Target, first_user: int) -> None:
    command, env = target.query_cmd
    out = subprocess.run(
        [*command, str(first_user)],
        env=env,
        cwd=c.ROOT if target.key != "peer" else c.PEER,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        print(f"{target.key}: counting queries failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return
    target.queries = json.loads(out.stdout.strip().splitlines()[-1])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(targets: list[Target], argon2: c.Argon2Figure, before: float, after: float) -> None:
    verify = argon2.cpu
    print(
        f"one Argon2id verify ({argon2.params}): {ms(verify)} ms CPU, median of "
        f"before {ms(before)} / after {ms(after)}; wall {ms(argon2.wall)} ms"
    )
    print()
    width = 30
    print(f"{'per complete login':<{width}}" + "".join(f"{t.key:>14}" for t in targets))
    rows: list[tuple[str, Callable[[Target], str]]] = [
        ("requests", lambda t: str(len(t.steps))),
        ("logins measured", lambda t: str(t.logins)),
        ("server CPU ms", lambda t: ms(t.cpu["server"] / t.logins)),
        ("  in Argon2id verifies", lambda t: f"{t.cpu['server'] / t.logins / verify:.2f}"),
        ("  of it, delivery worker", lambda t: _db(t, "delivery worker")),
        ("  hash share", lambda t: f"{verify * t.logins / t.cpu['server']:.2f}"),
        ("PostgreSQL CPU ms (this db)", lambda t: _db(t, "postgres (this database)")),
        ("PostgreSQL CPU ms (all)", lambda t: _db(t, "postgres (all processes)")),
        ("Redis CPU ms (whole server)", lambda t: _db(t, "redis")),
        ("  db+cache in verifies", lambda t: _db_verifies(t, verify)),
        ("wall ms (median)", lambda t: ms(c.median(t.wall))),
        ("driver CPU ms", lambda t: ms(t.driver_cpu / t.logins)),
    ]
    for label, cell in rows:
        print(f"{label:<{width}}" + "".join(f"{cell(t):>14}" for t in targets))
    by_key = {t.key: t for t in targets}
    peer = by_key.get("peer")
    print()
    for t in targets:
        if peer is not None and t is not peer:
            ratio = (t.cpu["server"] / t.logins) / (peer.cpu["server"] / peer.logins)
            print(
                f"server CPU per login, {t.key} / peer: {ratio:.2f}x "
                f"(peer / {t.key}: {1 / ratio:.2f}x)"
            )
    print()
    for t in targets:
        if t.server.worker is not None:
            print(f"({t.key}: server CPU includes the background-delivery worker, db_worker)")
    for t in targets:
        print(
            f"{t.label}: per step (median wall ms, mean server CPU ms"
            f"{', mean db+cache CPU ms' if t.step_db_cpu else ''}, SQL queries)"
        )
        for step in t.steps:
            line = (
                f"  {step:<18}{ms(c.median(t.step_wall[step])):>8}"
                f"{ms(sum(t.step_cpu[step]) / len(t.step_cpu[step])):>8}"
            )
            if t.step_db_cpu:
                line += f"{ms(sum(t.step_db_cpu[step]) / len(t.step_db_cpu[step])):>8}"
            line += f"{t.queries.get(step, '?'):>6}"
            print(line)
        print(
            f"  {'total':<18}{'':>8}{'':>8}"
            + ("" if not t.step_db_cpu else f"{'':>8}")
            + f"{sum(t.queries.values()):>6}"
        )
    print()
    print("targets (issue #10):")
    if "sqlite" in by_key:
        v = by_key["sqlite"].cpu["server"] / by_key["sqlite"].logins / verify
        print(f"  SQLite default: {v:.2f} verifies per login (target at most 1.9)")
    if "prod" in by_key:
        t = by_key["prod"]
        worker = t.cpu["server"] / t.logins / verify
        db = (t.cpu["postgres (this database)"] + t.cpu["redis"]) / t.logins / verify
        print(
            f"  production: {worker:.2f} verifies of worker CPU (target at most 2.3), "
            f"{db:.2f} of PostgreSQL (this db) + Redis (target at most 0.4)"
        )
    if peer is not None and "sqlite" in by_key:
        t = by_key["sqlite"]
        ratio = (peer.cpu["server"] / peer.logins) / (t.cpu["server"] / t.logins)
        print(f"  peer / SQLite default: {ratio:.2f}x (target at least 1.4)")
    if "sqlite" in by_key and by_key["sqlite"].floor is not None:
        budgets(by_key["sqlite"], peer, verify)


def budgets(t: Target, peer: Target | None, verify: float) -> None:
    """What each CPU target leaves for the screens' own work, once the password's hash and
    nine requests that do nothing are paid: the arithmetic behind the targets, in one run."""
    floor = t.floor or 0.0
    used = t.cpu["server"] / t.logins - verify - len(t.steps) * floor
    print()
    print(
        f"what the targets leave for the {len(t.steps)} screens' own work (SQLite default), "
        f"after one verify ({ms(verify)} ms) and {len(t.steps)} x GET /healthz "
        f"({ms(floor)} ms each: gunicorn, Django, the middleware):"
    )
    print(f"  used today: {ms(used)} ms")
    goals = [("at most 1.9 verifies", 1.9 * verify)]
    if peer is not None:
        goals.append(("peer / SQLite at least 1.4x", peer.cpu["server"] / peer.logins / 1.4))
    for label, allowed in goals:
        left = allowed - verify - len(t.steps) * floor
        print(f"  {label}: {ms(allowed)} ms a login, {ms(left)} ms left for the screens")


def _db(t: Target, name: str) -> str:
    return ms(t.cpu[name] / t.logins) if name in t.cpu else "-"


def _db_verifies(t: Target, verify: float) -> str:
    if "redis" not in t.cpu:
        return "-"
    return f"{(t.cpu['postgres (this database)'] + t.cpu['redis']) / t.logins / verify:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=30, help="measured logins per server")
    parser.add_argument("--blocks", type=int, default=3, help="interleaved blocks per server")
    parser.add_argument("--warmup", type=int, default=4, help="unmeasured logins per server")
    parser.add_argument("--prod-workers", type=int, default=2)
    parser.add_argument(
        "--targets", default="prod,sqlite,peer", help="comma-separated subset of prod,sqlite,peer"
    )
    parser.add_argument(
        "--task-interval",
        type=float,
        default=None,
        help="db_worker's polling interval (its default: 1 s)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()
    per_block = max(1, args.logins // args.blocks)
    users = args.warmup + per_block * args.blocks + 5
    started = time.perf_counter()
    print(
        f"login_cost {c.stamp()}: {per_block * args.blocks} "
        f"logins per server in {args.blocks} interleaved blocks, {args.warmup} warm-up"
    )
    with c.SmtpSink() as sink:
        targets: list[Target] = []
        scratch = c.temp_dir("caregate-bench-argon2-")
        try:
            start_targets(args, sink, users, targets)
            # Caregate's own hasher and settings (a SQLite database of its own if only the
            # reference site runs: the hasher needs no rows).
            argon2_env = targets[0].query_cmd[1] if targets[0].key != "peer" else None
            argon2_env = argon2_env or c.caregate_env(smtp_port=sink.port, var_dir=scratch)
            first = c.argon2_verify(argon2_env)
            for t in targets:
                for n in range(args.warmup):
                    t.login(n, c.LoginTimer())
            for block in range(args.blocks):
                for t in targets:
                    run_block(t, args.warmup + block * per_block, per_block)
            for t in targets:
                if t.key != "peer":
                    measure_floor(t)
            last = c.argon2_verify(argon2_env)
            for t in targets:
                # The counting process runs the queue itself: a background worker still
                # polling the same database could take the send first (the code then goes
                # to the SMTP sink, not to the counter's outbox).
                if t.server.worker is not None:
                    t.server.worker.terminate()
                    t.server.worker.wait(timeout=30)
                count_queries(t, users - 4)
        finally:
            for t in targets:
                t.server.stop()
                if t.server.var_dir:
                    shutil.rmtree(t.server.var_dir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            if not args.keep and "prod" in args.targets:
                c.drop_database(PROD_DB)
    mean = c.Argon2Figure((first.cpu + last.cpu) / 2, (first.wall + last.wall) / 2, first.params)
    report(targets, mean, first.cpu, last.cpu)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
