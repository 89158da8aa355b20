#!/usr/bin/env bash
# Builds the image the systemd tests boot: Debian bookworm minbase with
# systemd as PID 1, dbus and a user session, imported with `docker import`
# (no registry needed). The approach and the tag are those of the
# workplace's tools/systemd-box, so an image either builds is reused.
#
# usage: systemd-box-image.sh IMAGE     (MIRROR overrides the Debian mirror)
set -euo pipefail
IMAGE=${1:?usage: systemd-box-image.sh IMAGE}
die() { echo "systemd-box-image: $*" >&2; exit 1; }
# Any other step that fails says which line, never a silent exit 1.
trap 'die "line $LINENO failed: $BASH_COMMAND"' ERR
# The first Debian mirror apt knows; a sources file that is absent (many
# machines have only debian.sources) is no failure.
mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^[[:space:]]*#/ {next}
         /^URIs:/ {for (i=2;i<=NF;i++) print $i}
         /^deb[[:space:]]/ {for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; break}}' |
    grep -E '/debian/?$' | head -1 || true
}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mirror=${MIRROR:-$(mirror)}
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*; set MIRROR"
if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || die "debootstrap is missing and this is not root"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } > "$work/apt.log" 2>&1 ||
    die "apt-get install debootstrap failed: $(tail -2 "$work/apt.log")"
fi
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,procps,ca-certificates \
  bookworm "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  die "debootstrap from $mirror failed: $(tail -3 "$work/debootstrap.log")"
rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/*.bin "$work"/root/var/cache/apt/archives/*.deb
: > "$work/root/etc/machine-id"
tar -C "$work/root" -c . | docker import -c 'CMD ["/sbin/init"]' - "$IMAGE" > /dev/null
