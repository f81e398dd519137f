"""Benchmark: Setup → Manage Users for an organization with 50,000 users, in PostgreSQL.

Creates (once; later runs reuse it) an organization with 50,000 users in the database
named by DATABASE_URL (default: a caregate_bench_manage_users database on 127.0.0.1),
then times through Django's test client, signed in as the organization's administrator:
the first page of the list, a search, and a page deep in the list. Prints the median of
each, the query plans of the search and the deep page, and whether each median is under
the 100 ms target.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/caregate_bench_manage_users \
     .venv/bin/python bench/manage_users.py [--users 50000] [--runs 30]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/caregate_bench_manage_users"
TARGET_MS = 100.0
ORG_NAME = "Bench Manage Users Clinic"
LAST_NAMES = ["Duck", "Smith", "Nguyen", "Garcia", "Okafor", "Kowalski", "Ivanova", "Brown"]
FIRST_NAMES = ["Daisey", "Pat", "Lee", "Maria", "Chen", "Amal", "Jonas", "Ruth", "Omar"]


def setup_django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "caregate.settings")
    os.environ.setdefault("CAREGATE_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    """Create the benchmark database if it does not exist (connect to "postgres")."""
    import psycopg

    base, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def populate(count: int):
    """The organization, its administrator and ``count`` - 1 other users (bulk_create)."""
    from django.contrib.auth.hashers import make_password

    from caregate.accounts.models import Organization, User
    from caregate.accounts.npi import npi_check_digit

    org = Organization.objects.filter(name=ORG_NAME).first()
    if org is not None and org.users.count() == count:
        return org, org.users.get(username="bench.admin")
    if org is not None:
        org.users.all().delete()
    else:
        base = "198765432"
        org = Organization(name=ORG_NAME, npi=base + npi_check_digit(base))
        org.set_registration_code("BENCH-CODE")
        org.save()
    # One real hash copied to every row: hashing 50,000 passwords would take minutes and
    # measure nothing the list does.
    password = make_password("Bench-Password-2026!")
    admin = User(
        username="bench.admin",
        email="bench.admin@bench.example",
        first_name="Bench",
        last_name="Admin",
        organization=org,
        is_org_admin=True,
        mfa_method="email",
        password=password,
    )
    users = [admin]
    for n in range(1, count):
        users.append(
            User(
                username=f"bench.user{n:05d}",
                email=f"bench.user{n:05d}@bench.example",
                first_name=FIRST_NAMES[n % len(FIRST_NAMES)],
                last_name=f"{LAST_NAMES[n % len(LAST_NAMES)]}{n:05d}",
                organization=org,
                mfa_method="email" if n % 3 else "phone",
                phone_number="" if n % 3 else "+12025550143",
                password=password,
            )
        )
    User.objects.bulk_create(users, batch_size=2000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_user")
    return org, User.objects.get(username="bench.admin")


def signed_in_client(admin):
    """A test client whose session is a signed-in administrator's (as sign_in() leaves it)."""
    from django.test import Client

    from caregate.accounts.terms import accept, current_terms
    from caregate.flows import keys

    terms = current_terms()
    if terms is not None:
        accept(admin, terms, "127.0.0.1")
    client = Client()
    client.force_login(admin)
    session = client.session
    now = int(time.time())
    session[keys.AUTH_TIME] = now
    session[keys.LAST_SEEN] = now
    session.save()
    return client


def median_ms(client, url: str, runs: int, expect: str) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        assert expect in response.content.decode(), (url, expect)
    return statistics.median(timings)


def plans(admin, query: str, deep_page: int) -> dict[str, str]:
    from caregate.portal import manage_users

    users = manage_users._org_users(admin)
    searched = manage_users.search(users, query).order_by(*manage_users.SEARCH_ORDER)
    offset = (deep_page - 1) * manage_users.PER_PAGE
    ordered = users.order_by(*manage_users.LIST_ORDER)
    return {
        "search": searched[: manage_users.PER_PAGE].explain(analyze=True),
        "search count": manage_users.search(users, query).explain(analyze=True),
        "deep page": ordered[offset : offset + manage_users.PER_PAGE].explain(analyze=True),
        "count": users.explain(analyze=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("the benchmark is for PostgreSQL")
    ensure_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # "testserver" allowed, mail kept in memory
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    _, admin = populate(args.users)
    print(f"{args.users} users ready in {time.perf_counter() - started:.1f} s")
    client = signed_in_client(admin)
    deep_page = (args.users // 25) - 3
    cases = [
        ("list, first page", "/setup/users/", "Manage Users"),
        ("search 'smith0' (last name prefix)", "/setup/users/?q=smith0", "Smith0"),
        ("search 'bench.user4999' (username)", "/setup/users/?q=bench.user4999", "bench.user4999"),
        ("search 'Daisey Duck' (full name)", "/setup/users/?q=Daisey+Duck", "Duck"),
        (f"list, page {deep_page}", f"/setup/users/?page={deep_page}", f"Page {deep_page}"),
    ]
    for label, url, expect in cases:
        client.get(url)  # warm the caches once
        median = median_ms(client, url, args.runs, expect)
        verdict = "OK" if median < TARGET_MS else "OVER TARGET"
        print(f"{label:40s} median {median:7.1f} ms  ({verdict}, target {TARGET_MS:.0f} ms)")
    for label, plan in plans(admin, "smith0", deep_page).items():
        print(f"\n--- plan: {label}\n{plan}")


if __name__ == "__main__":
    main()
