#!/usr/bin/env bash
# Verify the Debian package under a real systemd: a Debian 12 container booted with
# systemd-nspawn installs the .deb, runs rdhost.service, and is checked for what CI's container
# (no systemd as PID 1) cannot show:
#   - the unit starts at boot (enabled by postinst) and `systemctl is-active rdhost` says active;
#   - a system user logs on through PAM (`rdhost view` on the host, over the shared loopback);
#   - the session's processes are in a cgroup below rdhost.service (Delegate=yes), and its PAM
#     session is a logind session (pam_systemd);
#   - a config error stops the service with status 78 and no restart loop
#     (RestartPreventExitStatus=78), and the journal says what to fix.
#
# Not run by CI (minutes; needs root, systemd-nspawn, debootstrap and the package mirror that
# apt uses). Usage, as root, from anywhere in the checkout:
#   packaging/verify-in-nspawn.sh [--deb FILE] [--root DIR] [--port N]
# --deb: a package built already (default: `cargo deb -p rdhost`); --root: where the container's
# file system is kept between runs (default /var/tmp/rdhost-nspawn/bookworm, made with
# debootstrap when missing); --port: the loopback port rdhost listens on inside (default: a
# free one). Exit 0 when every check passed; each check prints "ok: ..." or "FAIL: ...".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
deb=""
root=/var/tmp/rdhost-nspawn/bookworm
port=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) echo "usage: $0 [--deb FILE] [--root DIR] [--port N]" >&2; exit 2 ;;
  esac
done

need() { command -v "$1" >/dev/null || { echo "needs $1 (apt package $2)" >&2; exit 2; }; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
need systemd-nspawn systemd-container
need debootstrap debootstrap
need nsenter util-linux
need python3 python3-minimal

failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The package, and a host-side rdhost to log on with (`rdhost view`).
if [ -z "$deb" ]; then
  (cd "$repo" && cargo deb -p rdhost)
  deb=$(ls -t "${CARGO_TARGET_DIR:-$repo/target}"/debian/rdhost_*.deb | head -1)
fi
[ -f "$deb" ] || { echo "no package at $deb" >&2; exit 2; }
viewer=$(mktemp -d)
dpkg-deb -x "$deb" "$viewer"
viewer_bin="$viewer/usr/bin/rdhost"

# The container's file system: Debian 12 minbase with systemd, from the mirror apt uses here.
if [ ! -x "$root/lib/systemd/systemd" ]; then
  mirror=${MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
  fi
  if [ -z "$mirror" ]; then
    mirror=$(grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$2 !~ /security/ {print $2; exit}')
  fi
  [ -n "$mirror" ] || { echo "no Debian mirror in apt's sources; set MIRROR=URL" >&2; exit 2; }
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libpam0g,libpam-runtime,libpam-systemd,libpam-modules,passwd,login,procps \
    bookworm "$root" "$mirror"
fi

# Commands in the container before it boots (its own namespaces, no init).
# --keep-unit, --register=no: no systemd or machined on the host is needed (nor used).
run_in() { systemd-nspawn --quiet --register=no --keep-unit -D "$root" --pipe "$@" </dev/null; }

# (nspawn mounts a fresh /tmp in the container: the package goes to /var/tmp.)
cp "$deb" "$root/var/tmp/rdhost.deb"
run_in sh -c 'dpkg --purge rdhost >/dev/null 2>&1 || true; dpkg -i /var/tmp/rdhost.deb'
[ -n "$port" ] || port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
config="listen = \"127.0.0.1:$port\""
printf '%s\n' "$config" >"$root/etc/rdhost/rdhost.toml"
user=rdhostverify
password="Verify-$$-pw"
run_in sh -c "userdel -r $user >/dev/null 2>&1 || true; useradd --create-home --shell /bin/sh $user && echo '$user:$password' | chpasswd"

# Boot. The container shares the host's network, so its rdhost listens on our loopback.
log=$(mktemp)
systemd-nspawn --quiet --register=no --keep-unit -b -D "$root" --console=pipe </dev/null >"$log" 2>&1 &
nspawn=$!
cleanup() {
  if [ -n "${init:-}" ]; then nsenter -t "$init" -a systemctl poweroff >/dev/null 2>&1 || true; fi
  for _ in $(seq 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
  kill "$nspawn" 2>/dev/null || true
  rm -rf "$viewer" "$log"
}
trap cleanup EXIT

# The container's PID 1 (nspawn's child); every command inside goes through its namespaces.
init=""
for _ in $(seq 150); do
  init=$(pgrep -P "$nspawn" | head -1 || true)
  [ -n "$init" ] && [ "$(cat /proc/"$init"/comm 2>/dev/null)" = systemd ] && break
  sleep 0.2
done
if [ -z "$init" ]; then
  echo "the container did not boot:" >&2
  cat "$log" >&2
  exit 1
fi
inside() { nsenter -t "$init" -a "$@"; }
state=""
for _ in $(seq 100); do
  state=$(inside systemctl is-system-running --wait 2>/dev/null || true)
  [ -n "$state" ] && break # empty: its bus is not up yet
  sleep 0.2
done
echo "container booted ($state)"

# 1. Started at boot, by the installed, enabled unit.
for _ in $(seq 50); do [ "$(inside systemctl is-active rdhost || true)" = active ] && break; sleep 0.2; done
if [ "$(inside systemctl is-active rdhost || true)" = active ]; then ok "rdhost.service is active after boot"; else
  fail "rdhost.service is not active"; inside systemctl status rdhost --no-pager || true; fi
[ "$(inside systemctl show rdhost -p Delegate --value)" = yes ] && ok "Delegate=yes" || fail "Delegate is not yes"

# 2. A PAM user logs on (the snapshot ends the connection; the session stays, disconnected).
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.2; done
shot=$(mktemp --suffix=.png)
if "$viewer_bin" view "127.0.0.1:$port" --user "$user" --password "$password" --snapshot "$shot" --after-ms 1500 >/dev/null 2>&1; then
  ok "$user logged on through PAM ($(stat -c %s "$shot")-byte snapshot)"
else
  fail "$user could not log on"; inside journalctl -u rdhost --no-pager -n 30 || true
fi
rm -f "$shot"

# 3. The session's processes: in a cgroup of their own below the service's; the PAM session
# registered with logind.
uid=$(inside id -u "$user")
session_pids=$(inside pgrep -u "$uid" -x sh || true)
if [ -z "$session_pids" ]; then fail "no shell of $user runs"; else
  pid=$(echo "$session_pids" | head -1)
  # rdhost makes session cgroups in the cgroup v2 hierarchy ("0::"; on a hybrid host the
  # name=systemd line shows only the service).
  cg=$(inside cat /proc/"$pid"/cgroup | awk -F: '$1 == "0" {print $3}')
  case "$cg" in
    */rdhost.service/?*) ok "the session's shell (pid $pid) is in $cg" ;;
    *) fail "the session's shell (pid $pid) is in ${cg:-?}, not below rdhost.service" ;;
  esac
fi
if inside loginctl list-sessions --no-legend 2>/dev/null | grep -q " $user "; then
  ok "logind has a session of $user (pam_systemd): $(inside loginctl list-sessions --no-legend | grep " $user " | head -1)"
  runtime_dir=$(inside sh -c "tr '\\0' '\\n' < /proc/$pid/environ" | grep '^XDG_RUNTIME_DIR=' || true)
  [ -n "$runtime_dir" ] && ok "the session's shell has pam_systemd's $runtime_dir" || fail "no XDG_RUNTIME_DIR in the session's shell"
else
  fail "logind has no session of $user"; inside loginctl list-sessions --no-pager || true
fi

# 4. A config error: status 78, no restart loop, and the journal names the key.
printf '%s\nlisten_port = 1\n' "$config" >"$root/etc/rdhost/rdhost.toml"
inside systemctl restart rdhost || true
sleep 12 # more than twice RestartSec: a restart loop would have restarted by now
show() { inside systemctl show rdhost -p "$1" --value; }
if [ "$(show ActiveState)" = failed ] && [ "$(show ExecMainStatus)" = 78 ] && [ "$(show NRestarts)" = 0 ]; then
  ok "a bad config: failed with status 78, not restarted (NRestarts=0)"
else
  fail "a bad config: ActiveState=$(show ActiveState) ExecMainStatus=$(show ExecMainStatus) NRestarts=$(show NRestarts)"
fi
if inside journalctl -u rdhost --no-pager | grep -q listen_port; then ok "the journal names listen_port"; else fail "the journal does not name listen_port"; fi

# The fixed config starts again.
printf '%s\n' "$config" >"$root/etc/rdhost/rdhost.toml"
inside systemctl restart rdhost || true
sleep 2
[ "$(inside systemctl is-active rdhost || true)" = active ] && ok "fixed: active again" || fail "not active after the fix"

inside systemctl stop rdhost || true
run_user_left=$(inside loginctl list-sessions --no-legend 2>/dev/null | grep -c " $user " || true)
[ "$run_user_left" = 0 ] && ok "stopping the service closed the logind session" || fail "a logind session of $user outlived the service"

echo "$failures check(s) failed"
[ "$failures" = 0 ]
