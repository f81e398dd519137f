#!/usr/bin/env bash
# Caregate as in production: gunicorn (deploy/gunicorn.conf.py) and the task worker.
#   deploy/serve.sh           production settings from the environment (make serve)
#   deploy/serve.sh --local   safe stand-ins for trying it on this machine over plain http
#                             on loopback (make serve-local)
# Environment: PY (the virtualenv's python), PORT (8000), CAREGATE_BIND (127.0.0.1:$PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
export PORT=${PORT:-8000}
VAR=${CAREGATE_VAR_DIR:-var}
mkdir -p "$VAR"

if [ "${1:-}" = "--local" ]; then
  # A key kept in var/, so sessions, codes and the audit chain survive a restart.
  key_file="$VAR/serve-local-secret-key"
  if [ ! -s "$key_file" ]; then
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(64))' > "$key_file")
  fi
  export CAREGATE_SECRET_KEY=${CAREGATE_SECRET_KEY:-$(cat "$key_file")}
  export CAREGATE_ALLOWED_HOSTS=${CAREGATE_ALLOWED_HOSTS:-127.0.0.1,localhost}
  # Production requires an https origin; here emailed links say https:// though the
  # server speaks http (open them with http://).
  export CAREGATE_PUBLIC_BASE_URL=${CAREGATE_PUBLIC_BASE_URL:-https://127.0.0.1:$PORT}
  export CAREGATE_SSL_REDIRECT=false
  export CAREGATE_HSTS_SECONDS=0  # never pin HSTS on 127.0.0.1 in the browser
  export CAREGATE_EMAIL_BACKEND=${CAREGATE_EMAIL_BACKEND:-console}  # codes print below
  export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/caregate}
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
  export CAREGATE_BIND=127.0.0.1:$PORT  # loopback only: no TLS in front
fi

missing=()
for name in CAREGATE_SECRET_KEY CAREGATE_ALLOWED_HOSTS CAREGATE_PUBLIC_BASE_URL DATABASE_URL REDIS_URL; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  cat >&2 <<TEXT
make serve runs Caregate in production mode (gunicorn + the task worker). Missing: ${missing[*]}

  CAREGATE_SECRET_KEY       50+ random characters: $PY -c 'import secrets; print(secrets.token_urlsafe(64))'
  CAREGATE_ALLOWED_HOSTS    the public host name(s), e.g. portal.example.org
  CAREGATE_PUBLIC_BASE_URL  the https:// origin users reach, e.g. https://portal.example.org
  DATABASE_URL              PostgreSQL, e.g. postgres://caregate@db.internal:5432/caregate
  REDIS_URL                 e.g. redis://redis.internal:6379/0 (cache, sessions, rate limits)
Behind a TLS proxy also CAREGATE_BEHIND_TLS_PROXY=true and CAREGATE_TRUSTED_PROXY_COUNT=1;
mail: EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS...; phone: TWILIO_* (README, docs/deployment.md).

To try it on this machine over http on 127.0.0.1 (local key, codes on the console):
  make serve-local
TEXT
  exit 2
fi

export CAREGATE_ENV=production
# Metrics of every process (the gunicorn workers and the task worker) are summed from here;
# a fresh directory per start, as prometheus-client requires.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$VAR/prometheus}
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# Settings are checked here: production refuses unsafe values (caregate/security/checks.py).
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput --verbosity 0

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT

# django-tasks-db's db_worker exits on any database error but "locked" (e.g. while
# PostgreSQL restarts): start it again after a pause instead of ending the deployment.
# It ends for good only when it stops cleanly (asked to) or is told to stop here.
worker_loop() {
  local child
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
  while :; do
    # A queued delivery wakes the worker at once (PostgreSQL NOTIFY:
    # caregate/delivery/wakeup.py); the timed look is the fallback, for retries queued to
    # run later. Polling every 0.1 s instead cost 23 ms of worker CPU a second, idle.
    "$PY" manage.py db_worker --interval "${CAREGATE_TASK_POLL_SECONDS:-1}" &
    child=$!
    wait "$child" && exit 0
    echo "task worker ended (status $?); starting it again in 2 s" >&2
    sleep 2 &
    wait $!
  done
}

if "$PY" manage.py help db_worker >/dev/null 2>&1; then
  worker_loop &
  pids+=($!)
  echo "task worker: manage.py db_worker (restarted if it fails; pid $!)"
else
  echo "no task worker: manage.py db_worker is not installed (django-tasks-db)"
fi
"$BIN/gunicorn" --config deploy/gunicorn.conf.py caregate.wsgi:application &
pids+=($!)
echo "Caregate (production mode) on http://${CAREGATE_BIND:-127.0.0.1:$PORT}/ for $CAREGATE_PUBLIC_BASE_URL"

# One process ending ends the other: a deployment without its worker is not running.
status=0
wait -n || status=$?
stop
exit "$status"
