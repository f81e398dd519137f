"""Benchmark: sign-in step times with 1,000 and with 1,000,000 users in PostgreSQL.

Creates a database of its own (caregate_bench_scale) with ``--small`` users spread over
organizations of 100, times each request of the email login through Django's test client
in-process (median of ``--runs`` sign-ins, each a different user), then adds users with
COPY (one precomputed Argon2id hash reused) up to ``--large``: one organization of
``--org-users`` (Manage Users' case) and the rest in organizations of 1,000, ANALYZEs, and
times the same steps again, users picked across the whole table. Prints each step's median
at both sizes and the ratio (target: no step slower), then Manage Users of the large
organization (list, searches; target under 100 ms each). Drops the database unless --keep.

Run: .venv/bin/python bench/scale.py [--large 1000000] [--runs 15] [--keep]
(about 3-6 minutes at the defaults on this machine, most of it COPY and its indexes).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _common as c

DB = "caregate_bench_scale"
BIG_ORG = "Bench Scale Large Clinic"
TARGET_MS = 100.0


def setup_django(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(c.ROOT))
    env = c.caregate_env(
        smtp_port=25, var_dir=c.temp_dir("caregate-bench-scale-"),
        database_url=f"{c.PSQL_BASE}/{DB}", redis_url=args.redis_url,
    )  # fmt: skip
    os.environ.clear()
    os.environ.update(env)
    Path(env["CAREGATE_VAR_DIR"], "static").mkdir(parents=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # mail kept in memory, "testserver" allowed
    call_command("migrate", verbosity=0)


def _copy_value(value: object) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


class UserCopier:
    """COPY rows of accounts_user, every column at its default but the ones varied."""

    def __init__(self, password_hash: str) -> None:
        from caregate.accounts.models import User

        template = User(password=password_hash, mfa_method="email")
        now = datetime.datetime.now(datetime.UTC)
        self.columns: list[str] = []
        self.defaults: dict[str, str] = {}
        for f in User._meta.concrete_fields:
            if f.primary_key:
                continue
            value = getattr(template, f.attname)
            if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
                value = now
            self.columns.append(f.column)
            self.defaults[f.column] = _copy_value(value)

    def copy(self, rows: Iterator[dict[str, object]], chunk: int = 50_000) -> int:
        from django.db import connection

        sql = f"COPY accounts_user ({', '.join(self.columns)}) FROM STDIN"
        count = 0
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            buffer = io.StringIO()
            for row in rows:
                values = dict(self.defaults)
                values.update({k: _copy_value(v) for k, v in row.items()})
                buffer.write("\t".join(values[col] for col in self.columns))
                buffer.write("\n")
                count += 1
                if count % chunk == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        return count


def make_orgs(names: list[str]) -> list[int]:
    from caregate.accounts.models import Organization
    from caregate.accounts.npi import npi_check_digit

    orgs = []
    first = Organization.objects.count()
    for name in names:
        base = f"1{first + len(orgs):08d}"
        org = Organization(name=name, npi=base + npi_check_digit(base))
        org.set_registration_code("BENCH-CODE")
        orgs.append(org)
    return [org.pk for org in Organization.objects.bulk_create(orgs)]


def user_rows(start: int, count: int, org_ids: list[int], per_org: int) -> Iterator[dict]:
    from manage_users import FIRST_NAMES, LAST_NAMES

    for n in range(start, start + count):
        yield {
            "username": f"scale{n}",
            "email": f"scale{n}@example.com",
            "first_name": FIRST_NAMES[n % len(FIRST_NAMES)],
            "last_name": f"{LAST_NAMES[n % len(LAST_NAMES)]}{n:07d}",
            "organization_id": org_ids[(n - start) // per_org],
        }


def populate_small(copier: UserCopier, count: int) -> None:
    orgs = make_orgs([f"Bench Scale Clinic {i}" for i in range((count + 99) // 100)])
    copier.copy(user_rows(0, count, orgs, 100))


def populate_large(copier: UserCopier, small: int, large: int, org_users: int) -> None:
    big = make_orgs([BIG_ORG])
    admin = {
        "username": "scale.admin", "email": "scale.admin@example.com", "first_name": "Bench",
        "last_name": "Admin", "organization_id": big[0], "is_org_admin": True,
    }  # fmt: skip
    copier.copy(iter([admin]))
    copier.copy(user_rows(small, org_users - 1, big, org_users))
    rest = large - small - org_users
    orgs = make_orgs([f"Bench Scale Clinic L{i}" for i in range((rest + 999) // 1000)])
    copier.copy(user_rows(small + org_users - 1, rest, orgs, 1000))


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _csrf(response: object) -> str:
    return c.csrf(response.content.decode())


def one_signin(client: object, n: int, timed: object) -> None:
    """One in-process email login of user ``n``, every request timed by ``timed``."""
    from django.core import mail

    mail.outbox.clear()
    page = timed("login page", lambda: client.get("/"))
    start = timed("start", lambda: client.post(
        "/login/start/", {"method": "email", "csrfmiddlewaretoken": _csrf(page)}))  # fmt: skip
    url = start["Location"]
    page = timed("credentials page", lambda: client.get(url))
    data = {"email": f"scale{n}@example.com", "password": c.PASSWORD,
            "csrfmiddlewaretoken": _csrf(page)}  # fmt: skip
    url = timed("password", lambda: client.post(url, data))["Location"]
    token = _csrf(timed("code page", lambda: client.get(url)))
    timed("send code", lambda: client.post(url, {"action": "send", "csrfmiddlewaretoken": token}))
    code = re.search(r"(?<!\d)(\d{6})(?!\d)", mail.outbox[-1].body).group(1)
    timed("verify", lambda: client.post(
        url, {"action": "verify", "code": code, "csrfmiddlewaretoken": token}))  # fmt: skip
    home = timed("continue", lambda: client.post(
        url, {"action": "continue", "csrfmiddlewaretoken": token}))  # fmt: skip
    assert home["Location"].endswith("/home/"), home["Location"]
    timed("home", lambda: client.get(home["Location"]))


def time_signins(numbers: list[int]) -> dict[str, list[float]]:
    """Each step's seconds over one in-process email login per user number."""
    from django.test import Client

    timings: dict[str, list[float]] = {}

    def timed(name: str, send: object) -> object:
        start = time.perf_counter()
        response = send()
        timings.setdefault(name, []).append(time.perf_counter() - start)
        assert response.status_code in (200, 302), (name, response.status_code)
        return response

    for n in numbers:
        one_signin(Client(), n, timed)
    return timings


def step_medians(numbers: list[int], warmup: int) -> dict[str, float]:
    time_signins(numbers[:warmup])
    return {k: statistics.median(v) for k, v in time_signins(numbers[warmup:]).items()}


def manage_users_figures(runs: int) -> list[tuple[str, float]]:
    from manage_users import median_ms, signed_in_client

    from caregate.accounts.models import User

    client = signed_in_client(User.objects.get(username="scale.admin"))
    cases = [
        ("list, first page", "/setup/users/", "Manage Users"),
        ("search 'smith00' (last name prefix)", "/setup/users/?q=smith00", "Smith00"),
        ("search 'scale1049' (username)", "/setup/users/?q=scale1049", "scale1049"),
        ("search 'Daisey Duck' (full name)", "/setup/users/?q=Daisey+Duck", "Duck"),
    ]
    figures = []
    for label, url, expect in cases:
        client.get(url)  # warm the caches once
        figures.append((label, median_ms(client, url, runs, expect)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--org-users", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=15, help="sign-ins timed per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if args.large < args.small + args.org_users:
        parser.error("--large must hold --small and --org-users")
    started = time.perf_counter()
    print(f"scale {datetime.datetime.now():%Y-%m-%d %H:%M}: {args.small:,} then "
          f"{args.large:,} users in PostgreSQL, median of {args.runs} sign-ins per size, "
          f"in-process test client")  # fmt: skip
    c.recreate_database(DB)
    c.flush_redis(args.redis_url)
    try:
        setup_django(args)
        from django.contrib.auth.hashers import make_password

        copier = UserCopier(make_password(c.PASSWORD))
        rng = random.Random(10)
        populate_small(copier, args.small)
        analyze()
        picks = rng.sample(range(args.small), args.runs + args.warmup)
        small = step_medians(picks, args.warmup)
        t = time.perf_counter()
        populate_large(copier, args.small, args.large, args.org_users)
        copied = time.perf_counter() - t
        analyze()
        print(f"COPY of {args.large - args.small:,} users: {copied:.1f} s "
              f"(+ ANALYZE {time.perf_counter() - t - copied:.1f} s)")  # fmt: skip
        last = args.large - 2  # the newest users, and ones from everywhere in between
        picks = rng.sample(range(args.small, last), args.runs + args.warmup - 1)
        picks.append(last)
        large = step_medians(sorted(picks, key=lambda _: rng.random()), args.warmup)
        print(f"\n{'step (median ms)':<20}{args.small:>12,}{args.large:>12,}{'ratio':>8}")
        for step in c.CAREGATE_STEPS:
            ratio = large[step] / small[step]
            flag = "" if ratio < 1.25 else "  slower"
            print(f"{step:<20}{small[step] * 1000:>12.2f}{large[step] * 1000:>12.2f}"
                  f"{ratio:>8.2f}{flag}")  # fmt: skip
        total_s, total_l = sum(small.values()), sum(large.values())
        print(f"{'whole sign-in':<20}{total_s * 1000:>12.2f}{total_l * 1000:>12.2f}"
              f"{total_l / total_s:>8.2f}")  # fmt: skip
        print(f"\nManage Users, organization of {args.org_users:,} users "
              f"(median of {args.runs * 2}; target under {TARGET_MS:.0f} ms)")  # fmt: skip
        for label, value in manage_users_figures(args.runs * 2):
            verdict = "OK" if value < TARGET_MS else "OVER TARGET"
            print(f"  {label:<40}{value:>8.1f} ms  {verdict}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            c.drop_database(DB)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
