#!/usr/bin/env bash
# Create or refresh the development environment: a virtualenv (.venv) holding every waferscope
# part installed editable plus the test tools. A warm re-run (nothing changed) takes a second.
#   PYTHON=python3.11        interpreter to use (3.11 or newer)
#   WAFERSCOPE_VENV=.venv    where the environment lives
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${WAFERSCOPE_VENV:-.venv}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY=$candidate
      break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup: Python 3.11 or newer is required (apt-get install python3.11 python3.11-venv)" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: $*" >&2
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
  else
    echo "setup: please install these system packages: $*" >&2
    return 1
  fi
}

# Stop and disable a service a package has just started or enabled (systemd or SysV init).
quiet_service() {
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable "$1" >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then $SUDO systemctl stop "$1" >/dev/null 2>&1 || true; fi
  fi
  if [ ! -d /run/systemd/system ] && [ -x "/etc/init.d/$1" ]; then
    $SUDO "/etc/init.d/$1" stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      $SUDO update-rc.d "$1" disable >/dev/null 2>&1 || true
    fi
  fi
}

# System packages the tests and the demo use: an MQTT broker, a headless browser, rsync, promtool.
#   WAFERSCOPE_SKIP_SYSTEM=1 skips this step (e.g. on a machine without apt).
if [ "${WAFERSCOPE_SKIP_SYSTEM:-0}" != "1" ]; then
  missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  # rsync: the Ansible roles copy the release with it (tests/provision)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || echo "setup: continuing without ${missing[*]}" >&2
  fi
  # pgvector: the hub's similar-wafer search on PostgreSQL (docs/hub.md). Only where a PostgreSQL
  # server is installed; the package is postgresql-<major>-pgvector (Debian 13, the PGDG
  # repository). Without it the hub uses its in-memory index and the pgvector tests skip.
  if command -v pg_config >/dev/null 2>&1; then
    pg_major=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    if [ ! -f "$(pg_config --sharedir)/extension/vector.control" ]; then
      apt_install "postgresql-${pg_major}-pgvector" \
        || echo "setup: continuing without pgvector (similar search stays in memory)" >&2
    fi
  fi
  # promtool checks the alert rules (tests/monitoring); it ships in Debian's prometheus package.
  # Only the tool is wanted: no recommends (node exporter), and the Prometheus server the package
  # starts and enables is stopped and disabled, so nothing of ours listens on port 9090.
  prom=()
  command -v promtool >/dev/null 2>&1 || prom+=(prometheus)
  if [ ${#prom[@]} -gt 0 ]; then
    if apt_install --no-install-recommends "${prom[@]}"; then
      quiet_service prometheus
    else
      echo "setup: continuing without promtool (tests/monitoring skips those checks)" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-venv"
    "$PY" -m venv "$VENV"
  fi
fi

inputs=(constraints.txt requirements-dev.txt protocols/pyproject.toml edge/pyproject.toml
        hub/pyproject.toml trainer/pyproject.toml appliance/pyproject.toml scripts/setup.sh)
digest=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
stamp="$VENV/.waferscope-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  echo "setup: environment up to date ($VENV)"
  exit 0
fi

echo "setup: installing waferscope parts and tools into $VENV (first run takes a few minutes)"
# (the grep drops pip's warnings about local mirror folders that lack a package)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c constraints.txt -r requirements-dev.txt \
  -e ./protocols -e "./edge[federated]" -e "./hub[s3]" -e "./trainer[federated]" -e ./appliance \
  2> >(grep -v "^WARNING: Location " >&2)
# Flower without its declared dependencies: flwr 1.42 pins protobuf<7 (and older typer, rich,
# fastapi, uvicorn), which this workspace cannot satisfy; the trainer's [federated] extra lists
# the rest of what it needs (docs/federated.md explains, tests/federated checks it runs).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  -c constraints.txt flwr \
  2> >(grep -v "^WARNING: Location " >&2)
echo "$digest" > "$stamp"
echo "setup: done"
