#!/bin/bash
# Builds what tests/deploy/test_systemd_unit.py boots with systemd-nspawn (systemd as PID 1): a Debian 12
# root from Debian's packages (debootstrap), and a wheelhouse of the gateway's dependencies so the install
# inside it needs no network.
#   make_root.sh DIR PYTHON      (DIR: the cache, e.g. /var/cache/medshield-test; PYTHON runs pip download)
# Each part is rebuilt only when what it comes from changes (this script; the dependency list).
set -euo pipefail
dir="$1"; python="$2"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$dir"
# Several test runs on one machine share the cache: one builds, the others wait and then find it current.
exec 9>"$dir/.lock"
flock 9

# What the root is made of; a change here (not an edited comment) rebuilds it.
suite=bookworm
packages=systemd,systemd-sysv,dbus,python3,python3-venv,mosquitto,libgomp1,ca-certificates
root_stamp="$(echo "minbase $suite $packages mask-mosquitto" | sha256sum | cut -c1-16)"
if [ "$(cat "$dir/rootfs.stamp" 2>/dev/null)" != "$root_stamp" ] || [ ! -x "$dir/rootfs/usr/lib/systemd/systemd" ]; then
  rm -rf "$dir/rootfs.new"
  # What a Debian 12 host has after `apt-get install python3-venv mosquitto`; systemd-sysv makes systemd PID 1.
  debootstrap --variant=minbase --include="$packages" "$suite" "$dir/rootfs.new" http://deb.debian.org/debian
  # The distribution's broker would take port 1883; the gateway under test starts its embedded one.
  chroot "$dir/rootfs.new" systemctl mask mosquitto.service
  echo medshield-test > "$dir/rootfs.new/etc/hostname"
  rm -rf "$dir/rootfs"
  mv "$dir/rootfs.new" "$dir/rootfs"
  echo "$root_stamp" > "$dir/rootfs.stamp"
fi

mapfile -t deps < <("$python" -c 'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"], sep="\n")' "$repo/pyproject.toml")
wheels_stamp="$(printf '%s\n' "${deps[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$dir/wheels.stamp" 2>/dev/null)" != "$wheels_stamp" ]; then
  rm -rf "$dir/wheels.new"
  # For the container's interpreter: Debian 12's CPython 3.11 on x86-64 (glibc 2.36).
  "$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir/wheels.new" "${deps[@]}"
  rm -rf "$dir/wheels"
  mv "$dir/wheels.new" "$dir/wheels"
  echo "$wheels_stamp" > "$dir/wheels.stamp"
fi
