#!/usr/bin/env bash
# make test's pytest: two processes at once, one per core of the CI machine. The browser
# tests (Chromium, a live server, the test identity provider: much of their time is
# waiting) run beside the rest, each with a test database and a Redis db of its own, so
# neither sees the other's rows, sessions or rate-limit counters. Both logs are printed at
# the end, each with its 15 slowest tests (to see where a slow host's time went); the run
# fails if either half fails.
#
#   DATABASE_URL=postgres://…/caregate REDIS_URL=redis://…/15 tests/run_parallel.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?}" "${REDIS_URL:?}"
PYTEST=${PYTEST:-.venv/bin/pytest}
logs=$(mktemp -d)
redis_base=${REDIS_URL%/*}
redis_db=${REDIS_URL##*/}

DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" \
  "$PYTEST" -p no:cacheprovider --durations=15 "$@" tests/browser >"$logs/browser.log" 2>&1 &
browser=$!
DATABASE_URL="${DATABASE_URL}_rest" REDIS_URL="$redis_base/$((redis_db - 1))" \
  "$PYTEST" -p no:cacheprovider --durations=15 "$@" --ignore=tests/browser tests >"$logs/rest.log" 2>&1 &
rest=$!

wait "$browser"; browser_status=$?
wait "$rest"; rest_status=$?
echo "=== pytest tests/browser (exit $browser_status)"; cat "$logs/browser.log"
echo "=== pytest the other tests (exit $rest_status)"; cat "$logs/rest.log"
rm -rf "$logs"
[ "$browser_status" -eq 0 ] && [ "$rest_status" -eq 0 ]
