"""Benchmark: sign-in step times with 1,000 and with 1,000,000 users in PostgreSQL.

Creates two databases of its own side by side: caregate_bench_scale_small with ``--small``
users, and caregate_bench_scale_large with the same plus users added with COPY (one
precomputed Argon2id hash on every row) up to ``--large``: one organization of
``--org-users`` (Manage Users' case) and the rest, like the small one's, in organizations
of 1,000. Then it times each request of the email login through Django's test client,
in-process, one sign-in on each database in turn (so the shared machine's load falls on
both alike), each a different user (on the large one from across the table, never the
large organization), and prints each step's median at both sizes and the ratio (target:
no step slower), then Manage Users of the large organization (list, searches; target
under 100 ms each). Drops both databases unless --keep.

Run: .venv/bin/python bench/scale.py [--large 1000000] [--runs 15] [--keep]
(about 2-4 minutes at the defaults on this machine, most of it COPY and its indexes).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _common as c

SMALL_DB = "caregate_bench_scale_small"
LARGE_DB = "caregate_bench_scale_large"
BIG_ORG = "Bench Scale Large Clinic"
TARGET_MS = 100.0


def setup_django(args: argparse.Namespace, database: str) -> None:
    sys.path.insert(0, str(c.ROOT))
    env = c.caregate_env(
        smtp_port=25, var_dir=args.var_dir,
        database_url=f"{c.PSQL_BASE}/{database}", redis_url=args.redis_url,
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
    # Organizations of 1,000 at both sizes, so a per-organization count weighs the same.
    orgs = make_orgs([f"Bench Scale Clinic {i}" for i in range((count + 999) // 1000)])
    copier.copy(user_rows(0, count, orgs, 1000))


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

    use_database(LARGE_DB)
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


def use_database(name: str) -> None:
    """Point Django's default connection at another database (and connect, untimed)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name
    connection.ensure_connection()


def interleaved_medians(args: argparse.Namespace, rng: random.Random) -> dict[str, dict]:
    """Each step's median at both sizes, one sign-in on each in turn (same load on both)."""
    last = args.large - 2
    first = args.small + args.org_users  # outside the large organization
    count = args.runs + args.warmup
    picks = {
        SMALL_DB: rng.sample(range(args.small), count),
        LARGE_DB: [last, *rng.sample(range(first, last), count - 1)],  # the newest one too
    }
    timings: dict[str, dict[str, list[float]]] = {SMALL_DB: {}, LARGE_DB: {}}
    for i in range(count):
        for name in (SMALL_DB, LARGE_DB):
            use_database(name)
            for step, values in time_signins([picks[name][i]]).items():
                if i >= args.warmup:
                    timings[name].setdefault(step, []).extend(values)
    return {
        name: {step: statistics.median(v) for step, v in steps.items()}
        for name, steps in timings.items()
    }


def build(args: argparse.Namespace, copier_hash: str) -> float:
    """Both databases: the small one, and the large one (small + COPY); seconds of COPY."""
    use_database(SMALL_DB)
    populate_small(UserCopier(copier_hash), args.small)
    analyze()
    use_database(LARGE_DB)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    copier = UserCopier(copier_hash)
    populate_small(copier, args.small)
    t = time.perf_counter()
    populate_large(copier, args.small, args.large, args.org_users)
    copied = time.perf_counter() - t
    analyze()
    print(f"COPY of {args.large - args.small:,} users: {copied:.1f} s "
          f"(+ ANALYZE {time.perf_counter() - t - copied:.1f} s)")  # fmt: skip
    return copied


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
    args.var_dir = c.temp_dir("caregate-bench-scale-")
    if args.large < args.small + args.org_users:
        parser.error("--large must hold --small and --org-users")
    started = time.perf_counter()
    print(f"scale {c.stamp()}: {args.small:,} then "
          f"{args.large:,} users in PostgreSQL, median of {args.runs} sign-ins per size, "
          f"in-process test client")  # fmt: skip
    for name in (SMALL_DB, LARGE_DB):
        c.recreate_database(name)
    c.flush_redis(args.redis_url)
    try:
        setup_django(args, SMALL_DB)
        from django.contrib.auth.hashers import make_password

        build(args, make_password(c.PASSWORD))
        medians = interleaved_medians(args, random.Random(10))
        small, large = medians[SMALL_DB], medians[LARGE_DB]
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
        shutil.rmtree(args.var_dir, ignore_errors=True)
        if not args.keep:
            for name in (SMALL_DB, LARGE_DB):
                c.drop_database(name)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
