#!/bin/bash
# MedShield host install for Debian, Ubuntu and JetPack: a venv per release under /opt/medshield, a
# `current` symlink, /usr/bin/medshield, the systemd units, sysusers.d and tmpfiles.d entries.
#
#   install.sh install WHEEL [--find-links DIR] [--python PY] [--extra SPEC]...   install or upgrade
#   install.sh rollback                                                          back to the previous release
#   install.sh uninstall [--purge]                                               remove (--purge: config + state too)
#   install.sh status                                                            releases and the current one
# Global options (before the action): --root DIR installs into DIR (a chroot or image root; systemctl is
# not called), --no-start does not (re)start the gateway.
#
# Configuration (/etc/medshield) and state (/var/lib/medshield) are never replaced by an upgrade; a release
# is switched by one atomic rename of the `current` symlink, and the previous release is kept for rollback.
set -euo pipefail

ROOT=""
START=1
KEEP_RELEASES=3
PREFIX=/opt/medshield
UNIT_DIR=/usr/lib/systemd/system

die() { echo "install.sh: $*" >&2; exit 2; }
log() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2%/}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "no action (install, rollback, uninstall, status); see --help"
ACTION="$1"; shift
[ "$(id -u)" = 0 ] || die "run as root"

live() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

pick_python() {
  local py
  for py in "$@" python3 python3.13 python3.12 python3.11; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  die "Python 3.11 or later with venv is needed (Debian 12: apt-get install python3-venv; Ubuntu 22.04 / JetPack 6: apt-get install python3.11 python3.11-venv)"
}

# The release that `current` points to, as a name under releases/ (empty when none).
current_release() { [ -L "$ROOT$PREFIX/current" ] && basename "$(readlink "$ROOT$PREFIX/current")" || true; }

switch_to() {
  # Atomic: a new symlink under a temporary name, renamed over `current`.
  ln -sfn "releases/$1" "$ROOT$PREFIX/.current.new"
  mv -T "$ROOT$PREFIX/.current.new" "$ROOT$PREFIX/current"
}

install_system_files() {
  local share="$ROOT$PREFIX/current/share/medshield"
  install -d -m 0755 "$ROOT/usr/bin" "$ROOT$UNIT_DIR" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
  ln -sfn "../..$PREFIX/current/bin/medshield" "$ROOT/usr/bin/medshield"
  install -m 0644 "$share/systemd/medshield.service" "$share/systemd/medshield-build-engines.service" "$ROOT$UNIT_DIR/"
  install -m 0644 "$share/host/sysusers.conf" "$ROOT/usr/lib/sysusers.d/medshield.conf"
  install -m 0644 "$share/host/tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/medshield.conf"
  if [ -n "$ROOT" ]; then
    install -d -m 0755 "$ROOT/etc"
    # With --root the configuration files are still named by their path on this system.
    systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/medshield.conf"
    systemd-tmpfiles --root="$ROOT" --create "$ROOT/usr/lib/tmpfiles.d/medshield.conf"
  else
    systemd-sysusers /usr/lib/sysusers.d/medshield.conf
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/medshield.conf
  fi
  # An admin's configuration is never overwritten; the example only seeds a fresh install.
  # The group as the target's /etc/group has it (with --root, not this system's).
  local gid
  gid="$(awk -F: '$1 == "medshield" { print $3 }' "$ROOT/etc/group")"
  [ -n "$gid" ] || die "systemd-sysusers did not create the medshield group"
  if [ ! -e "$ROOT/etc/medshield/gateway.toml" ]; then
    install -m 0640 -o 0 -g "$gid" "$share/gateway.toml" "$ROOT/etc/medshield/gateway.toml"
    log "wrote /etc/medshield/gateway.toml (edit it, then: medshield check-config /etc/medshield/gateway.toml)"
  fi
  install -m 0644 "$share/gateway.toml" "$ROOT/etc/medshield/gateway.toml.example"
}

prune_releases() {
  local keep current
  current="$(current_release)"
  keep=$(ls -1t "$ROOT$PREFIX/releases" | head -n "$KEEP_RELEASES")
  for r in $(ls -1 "$ROOT$PREFIX/releases"); do
    if [ "$r" != "$current" ] && ! grep -qx "$r" <<<"$keep"; then rm -rf "${ROOT:?}$PREFIX/releases/$r"; fi
  done
}

restart_units() {
  live || return 0
  systemctl daemon-reload
  [ "$START" = 1 ] || return 0
  if systemctl is-enabled --quiet medshield.service 2>/dev/null; then
    systemctl restart medshield.service
    log "restarted medshield.service"
  else
    log "enable and start it with: systemctl enable --now medshield.service"
  fi
}

do_install() {
  local wheel="" find_links="" python_arg=() extras=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --find-links) find_links="$2"; shift 2 ;;
      --python) python_arg=("$2"); shift 2 ;;
      --extra) extras+=("$2"); shift 2 ;;
      -*) die "unknown option $1" ;;
      *) wheel="$1"; shift ;;
    esac
  done
  [ -n "$wheel" ] && [ -f "$wheel" ] || die "give the medshield wheel file (make wheel builds dist/medshield-*.whl)"
  local py version name dir pip_args=()
  py="$(pick_python "${python_arg[@]}")"
  version="$(basename "$wheel" | cut -d- -f2)"
  name="$version-$(date -u +%Y%m%dT%H%M%SZ)"
  dir="$ROOT$PREFIX/releases/$name"
  [ -n "$find_links" ] && pip_args+=(--no-index --find-links "$find_links")
  install -d -m 0755 "$ROOT$PREFIX/releases"
  log "creating $PREFIX/releases/$name with $py"
  "$py" -m venv "$dir"
  if ! "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" "$wheel" "${extras[@]}"; then
    rm -rf "$dir"
    die "pip could not install $wheel; the current release is unchanged"
  fi
  # A release that cannot load its own models never becomes current.
  if ! "$dir/bin/medshield" models list >/dev/null; then
    rm -rf "$dir"
    die "the new release failed its self-check (medshield models list); the current release is unchanged"
  fi
  local previous
  previous="$(current_release)"
  switch_to "$name"
  [ -n "$previous" ] && echo "$previous" > "$ROOT$PREFIX/previous"
  install_system_files
  prune_releases
  log "medshield $version is current (${previous:+previous: $previous; }rollback: install.sh rollback)"
  restart_units
}

do_rollback() {
  local previous current
  [ -f "$ROOT$PREFIX/previous" ] || die "no previous release recorded"
  previous="$(cat "$ROOT$PREFIX/previous")"
  [ -d "$ROOT$PREFIX/releases/$previous" ] || die "previous release $previous is gone"
  current="$(current_release)"
  switch_to "$previous"
  echo "$current" > "$ROOT$PREFIX/previous"
  install_system_files
  log "rolled back to $previous"
  restart_units
}

do_uninstall() {
  local purge=0
  [ "${1:-}" = "--purge" ] && purge=1
  if live; then
    systemctl disable --now medshield.service medshield-build-engines.service 2>/dev/null || true
  fi
  rm -f "$ROOT/usr/bin/medshield" "$ROOT$UNIT_DIR/medshield.service" "$ROOT$UNIT_DIR/medshield-build-engines.service" \
    "$ROOT/usr/lib/sysusers.d/medshield.conf" "$ROOT/usr/lib/tmpfiles.d/medshield.conf"
  rm -rf "${ROOT:?}$PREFIX" 2>/dev/null || rm -rf "$ROOT$PREFIX"
  live && systemctl daemon-reload
  if [ "$purge" = 1 ]; then
    rm -rf "$ROOT/etc/medshield" "$ROOT/var/lib/medshield"
    log "removed MedShield, its configuration and its state (the medshield user stays, as Debian does)"
  else
    log "removed MedShield; kept /etc/medshield and /var/lib/medshield (uninstall --purge removes them)"
  fi
}

do_status() {
  local current
  current="$(current_release)"
  [ -n "$current" ] || { echo "not installed"; return 1; }
  for r in $(ls -1 "$ROOT$PREFIX/releases"); do
    if [ "$r" = "$current" ]; then echo "* $r"; else echo "  $r"; fi
  done
}

case "$ACTION" in
  install|upgrade) do_install "$@" ;;
  rollback) do_rollback ;;
  uninstall) do_uninstall "$@" ;;
  status) do_status ;;
  *) die "unknown action $ACTION" ;;
esac
