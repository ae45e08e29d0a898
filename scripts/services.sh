#!/usr/bin/env bash
# Make every service Pulse needs available on loopback, idempotently:
#   * PostgreSQL (15 on Debian 12, whatever Debian ships elsewhere) with TimescaleDB,
#   * Mosquitto 2 with persistence and an unbounded per-client queue.
# Uses what is installed and running; installs from Debian packages otherwise; builds
# TimescaleDB from Debian's own source package where no binary package exists.
# Run as root (or with sudo available). Safe to run again and again.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
    log "apt-get install ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- PostgreSQL
apt_install postgresql postgresql-contrib
PG_MAJOR=$(ls /usr/lib/postgresql | sort -n | tail -1)
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONF=/etc/postgresql/$PG_MAJOR/main/postgresql.conf
[ -f "$PG_CONF" ] || $SUDO pg_createcluster "$PG_MAJOR" main >/dev/null

as_postgres() { if [ -n "$SUDO" ]; then sudo -u postgres "$@"; else runuser -u postgres -- "$@"; fi; }
pg_running() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p 5432; }
psql_admin() { as_postgres psql -qAt -v ON_ERROR_STOP=1 "$@"; }
pg_restart() {
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main restart \
        || $SUDO pg_ctlcluster "$PG_MAJOR" main restart
}
pg_start() {
    pg_running && return 0
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start \
        || $SUDO pg_ctlcluster "$PG_MAJOR" main start
}

timescale_installed() { [ -f "/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control" ]; }

build_timescale_from_source() {
    # Debian 12 has no TimescaleDB package; Debian 13 ships one built Apache-only.
    # Build that very source package against our server, with a private apt source
    # list so the system's sources are left alone.
    local work=/var/cache/pulse/timescaledb
    local lists=/var/cache/pulse/apt-lists
    $SUDO mkdir -p "$work" "$lists/partial"
    apt_install "postgresql-server-dev-$PG_MAJOR" cmake gcc make dpkg-dev libssl-dev
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        | $SUDO tee "$work/trixie-src.list" >/dev/null
    local aptopts=(-o "Dir::Etc::SourceList=$work/trixie-src.list" -o "Dir::Etc::SourceParts=/dev/null"
                   -o "Dir::State::Lists=$lists" -o "APT::Sandbox::User=root")
    log "fetching TimescaleDB source package (Debian trixie)"
    $SUDO apt-get "${aptopts[@]}" update -qq
    (cd "$work" && $SUDO apt-get "${aptopts[@]}" source --download-only -qq timescaledb)
    local dsc
    dsc=$(ls -t "$work"/timescaledb_*.dsc | head -1)
    local src="$work/src"
    $SUDO rm -rf "$src"
    $SUDO dpkg-source -x --no-check "$dsc" "$src" >/dev/null
    log "building TimescaleDB (Apache-only) for PostgreSQL $PG_MAJOR — about a minute"
    (cd "$src" && $SUDO ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$PG_BIN/pg_config" >/dev/null \
        && $SUDO make -C build -j"$(nproc)" install >/dev/null)
}

if ! timescale_installed; then
    # A binary package first (Debian 13+), the source build otherwise.
    if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
    if apt-cache show "postgresql-$PG_MAJOR-timescaledb" >/dev/null 2>&1; then
        apt_install "postgresql-$PG_MAJOR-timescaledb"
    else
        build_timescale_from_source
    fi
fi

pg_start
for _ in $(seq 30); do pg_running && break; sleep 0.5; done
if ! grep -Eq "^\s*shared_preload_libraries\s*=.*timescaledb" "$PG_CONF"; then
    log "enabling timescaledb in shared_preload_libraries"
    echo "shared_preload_libraries = 'timescaledb'    # added by pulse scripts/services.sh" \
        | $SUDO tee -a "$PG_CONF" >/dev/null
    echo "timescaledb.telemetry_level = off" | $SUDO tee -a "$PG_CONF" >/dev/null
fi
if ! psql_admin -c 'show shared_preload_libraries' | grep -q timescaledb; then
    log "restarting PostgreSQL to load timescaledb"
    pg_restart
fi
for _ in $(seq 30); do pg_running && break; sleep 0.5; done
pg_running || { log "PostgreSQL did not come up"; exit 1; }
# A local development role: pulse/pulse over loopback works with trust and with
# scram (Debian's default). Superuser because CREATE EXTENSION timescaledb needs it.
psql_admin -c "select 1 from pg_roles where rolname='pulse'" | grep -q 1 \
    || psql_admin -c "create role pulse login superuser password 'pulse'"
for db in pulse pulse_test; do
    psql_admin -c "select 1 from pg_database where datname='$db'" | grep -q 1 \
        || psql_admin -c "create database $db owner pulse"
done
log "PostgreSQL $PG_MAJOR with TimescaleDB $(psql_admin -c \
    "select default_version from pg_available_extensions where name='timescaledb'") on 127.0.0.1:5432 (postgresql://pulse:pulse@127.0.0.1:5432/pulse)"

# ---------------------------------------------------------------- Mosquitto
apt_install mosquitto mosquitto-clients
MQ_CONF=/etc/mosquitto/mosquitto.conf
MQ_DROPIN=/etc/mosquitto/conf.d/pulse.conf
$SUDO mkdir -p /etc/mosquitto/conf.d /var/lib/mosquitto /run/mosquitto
$SUDO chown mosquitto: /var/lib/mosquitto /run/mosquitto 2>/dev/null || true
changed=0
if ! grep -Eq '^\s*include_dir\s+/etc/mosquitto/conf.d' "$MQ_CONF"; then
    echo "include_dir /etc/mosquitto/conf.d" | $SUDO tee -a "$MQ_CONF" >/dev/null
    changed=1
fi
if ! grep -Eq '^\s*listener\s' "$MQ_CONF"; then
    echo "listener 1883 127.0.0.1" | $SUDO tee -a "$MQ_CONF" >/dev/null
    echo "allow_anonymous true" | $SUDO tee -a "$MQ_CONF" >/dev/null
    changed=1
fi
# The broker's default max_queued_messages (1000) silently drops a backlog for a stopped
# ingest worker or a slow QoS-1 subscriber; persistence keeps it across broker restarts.
DROPIN_TEXT="# managed by pulse scripts/services.sh
max_queued_messages 0
max_queued_bytes 1073741824
max_inflight_messages 10000
persistent_client_expiration 7d
autosave_interval 30"
grep -Eq '^\s*persistence\s+true' "$MQ_CONF" || DROPIN_TEXT="$DROPIN_TEXT
persistence true
persistence_location /var/lib/mosquitto/"
if [ ! -f "$MQ_DROPIN" ] || [ "$(cat "$MQ_DROPIN")" != "$DROPIN_TEXT" ]; then
    printf '%s\n' "$DROPIN_TEXT" | $SUDO tee "$MQ_DROPIN" >/dev/null
    changed=1
fi
mq_pid() { pgrep -x mosquitto | head -1; }
if [ -n "$(mq_pid)" ] && [ "$changed" = 1 ]; then
    log "restarting Mosquitto with the Pulse settings"
    $SUDO kill "$(mq_pid)"
    # it saves its persistence file on the way out, which takes a while with a backlog
    for _ in $(seq 600); do [ -z "$(mq_pid)" ] && break; sleep 0.1; done
fi
if [ -z "$(mq_pid)" ]; then
    $SUDO mosquitto -d -c "$MQ_CONF"
fi
for _ in $(seq 50); do
    mosquitto_pub -h 127.0.0.1 -p 1883 -t pulse/health -m ok -q 1 2>/dev/null && break
    sleep 0.1
done
mosquitto_pub -h 127.0.0.1 -p 1883 -t pulse/health -m ok -q 1 \
    || { log "Mosquitto did not come up:"; tail -5 /var/log/mosquitto/mosquitto.log 2>/dev/null; exit 1; }
log "Mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') on 127.0.0.1:1883 (persistence on, unbounded queue)"
