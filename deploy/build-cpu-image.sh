#!/bin/bash
# Builds the CPU image (deploy/Dockerfile.cpu) where no registry can be reached, and runs the demo in it:
# the base is a Debian 12 root made by debootstrap from Debian's packages (the one tests/deploy caches),
# the builder is buildah from Debian. Needs root.
#   build-cpu-image.sh WHEEL ROOTFS WHEELHOUSE
set -euo pipefail
wheel="$1"; rootfs="$2"; wheelhouse="$3"
here="$(cd "$(dirname "$0")" && pwd)"
command -v buildah >/dev/null || { echo "buildah missing (apt-get install buildah)" >&2; exit 2; }
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"; [ -n "${base_ctr:-}" ] && buildah rm "$base_ctr" >/dev/null 2>&1; [ -n "${run_ctr:-}" ] && buildah rm "$run_ctr" >/dev/null 2>&1; true' EXIT

# The base image: the debootstrap root as one layer.
base_ctr="$(buildah from scratch)"
mnt="$(buildah mount "$base_ctr")"
cp -a "$rootfs"/. "$mnt"/
buildah umount "$base_ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$base_ctr"
buildah commit --quiet "$base_ctr" localhost/medshield-base:debian12 >/dev/null

# The build context: the wheel and its dependency wheels (the image build installs offline as well).
mkdir -p "$ctx/dist"
cp "$wheel" "$wheelhouse"/*.whl "$ctx/dist/"
buildah bud --quiet --format docker --isolation chroot --network host --layers=false \
  --build-arg BASE=localhost/medshield-base:debian12 --build-arg PIP_NO_INDEX=1 -f "$here/Dockerfile.cpu" -t localhost/medshield:cpu "$ctx"

# The demo inside the image, as its user (not root).
run_ctr="$(buildah from localhost/medshield:cpu)"
buildah run --isolation chroot --network host "$run_ctr" -- medshield models list
buildah run --isolation chroot --network host "$run_ctr" -- medshield demo --generated 1
