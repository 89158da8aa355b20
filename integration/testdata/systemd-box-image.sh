#!/usr/bin/env bash
# Builds the image the systemd tests boot: Debian bookworm minbase with
# systemd as PID 1, dbus and a user session, imported with `docker import`
# (no registry needed). The approach and the tag are those of the
# workplace's tools/systemd-box, so an image either builds is reused.
#
# usage: systemd-box-image.sh IMAGE     (MIRROR overrides the Debian mirror)
set -euo pipefail
IMAGE=${1:?usage: systemd-box-image.sh IMAGE}
mirror=${MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
  awk '/^[[:space:]]*#/ {next}
       /^URIs:/ {for (i=2;i<=NF;i++) print $i}
       /^deb[[:space:]]/ {for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; break}}' |
  grep -E '/debian/?$' | head -1)}
[ -n "$mirror" ] || { echo "systemd-box-image: no Debian mirror in /etc/apt/sources.list*; set MIRROR" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "systemd-box-image: debootstrap is missing and this is not root" >&2; exit 1; }
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,procps,ca-certificates \
  bookworm "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -3 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/*.bin "$work"/root/var/cache/apt/archives/*.deb
: > "$work/root/etc/machine-id"
tar -C "$work/root" -c . | docker import -c 'CMD ["/sbin/init"]' - "$IMAGE" > /dev/null
