#!/usr/bin/env bash
# Run Lightbox on the embedded default: SQLite, Celery's filesystem transport, local files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export SITE_URL=${SITE_URL:-http://localhost:$PORT}
# Browsers allow passkeys on http only for "localhost"; open the demo there to try them.
export WEBAUTHN_ORIGINS=${WEBAUTHN_ORIGINS:-http://localhost:$PORT}

$PY manage.py migrate --noinput -v0
$PY manage.py make_demo_data > var/demo-logins.txt
# -B runs the beat scheduler inside this one worker (nightly integrity re-check); production runs
# `celery -A portal beat` as its own process instead.
.venv/bin/python -m portal.worker -B -Q celery,exports,pixels --schedule var/celerybeat-schedule --loglevel=INFO --concurrency=1 \
  --hostname="lightbox@%h" > var/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

echo
echo "Lightbox is running at http://localhost:$PORT/   (Ctrl-C stops it; the worker logs to var/worker.log)"
echo
cat var/demo-logins.txt
echo
.venv/bin/gunicorn portal.wsgi --bind "$HOST:$PORT" --workers 2 --access-logfile - --log-level warning
