#!/usr/bin/env bash
# Build the tiny VM the QEMU system tests boot: Debian's cloud kernel (unpacked
# with dpkg -x, nothing installed) and a busybox initramfs whose /init loads
# virtio-net, configures eth0 from the kernel command line and gives a shell on
# the serial console (tests/helpers/qemu.py drives it).
#
#   scripts/build-test-vm.sh [OUTDIR]     (default: .cache/testvm, ignored by git)
#
# Needs: apt-get (to download the kernel package), busybox-static and
# qemu-system-x86 (scripts/install-system.sh installs both). Idempotent: an
# existing complete OUTDIR is left alone. Writes OUTDIR/vmlinuz, OUTDIR/initrd.gz,
# OUTDIR/kernel-version and OUTDIR/recipe-version; an OUTDIR built by another
# RECIPE (below) is rebuilt.
set -euo pipefail
# Bump when the image's contents change (init script, modules): an existing
# image with another stamp is rebuilt, so a stale .cache/testvm never survives.
RECIPE=2
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/.cache/testvm}"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/kernel-version" ] \
    && [ "$(cat "$out/recipe-version" 2>/dev/null)" = "$RECIPE" ]; then
  echo "build-test-vm: $out is complete ($(cat "$out/kernel-version"))"
  exit 0
fi
bb=/bin/busybox
[ -x "$bb" ] || bb=/usr/bin/busybox
if ! [ -x "$bb" ] || ! { ldd "$bb" 2>&1 || true; } | grep -q "not a dynamic"; then
  echo "build-test-vm: a static busybox is needed (apt-get install busybox-static)" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt-get download runs as _apt and must write here

# --- the kernel: the package linux-image-cloud-amd64 points to ---------------
meta=linux-image-cloud-amd64
pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg="$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')"
fi
[ -n "$pkg" ] || { echo "build-test-vm: cannot resolve $meta" >&2; exit 2; }
(cd "$work" && { apt-get download -q "$pkg" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get download -q "$pkg" >/dev/null; }; })
dpkg -x "$work"/"$pkg"_*.deb "$work/pkg"
kver="${pkg#linux-image-}"
moddir="$work/pkg/lib/modules/$kver"
[ -d "$moddir" ] || { echo "build-test-vm: no modules for $kver in $pkg" >&2; exit 2; }

# --- modules for virtio-net, in load order (dependencies first) ---------------
declare -A path_of=()
while IFS= read -r ko; do
  name="$(basename "$ko")"; name="${name%.ko}"; name="${name%.ko.xz}"
  path_of["${name//-/_}"]="$ko"
done < <(find "$moddir" -name '*.ko' -o -name '*.ko.xz')
order=()
declare -A seen=()
add_module() {
  local m="${1//-/_}" ko deps dep
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  ko="${path_of[$m]:-}"
  if [ -z "$ko" ]; then  # built into this kernel
    return 0
  fi
  case "$ko" in *.xz) xz -dc "$ko" >"$work/$m.ko"; ko="$work/$m.ko";; esac
  deps="$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -1)"
  for dep in ${deps//,/ }; do add_module "$dep"; done
  order+=("$ko")
}
for m in virtio_pci virtio_net virtio_console; do add_module "$m"; done

# --- the initramfs -------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,modules,usr/bin,usr/sbin}
cp "$bb" "$root/bin/busybox"
i=0
: >"$root/modules/order"
for ko in "${order[@]}"; do
  n="$(printf '%02d' "$i")-$(basename "${ko%.xz}")"
  cp "$ko" "$root/modules/$n"
  echo "$n" >>"$root/modules/order"
  i=$((i + 1))
done
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# vspan test VM: load virtio-net, configure eth0 from the kernel command line
# (vm.ip=ADDR/LEN, optional vm.mtu=N), then a shell on the console.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || mdev -s
mount -t tmpfs tmp /tmp
while read -r m; do insmod "/modules/$m" || echo "VM-MODULE-FAILED $m"; done </modules/order
ip link set lo up
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vm.ip=*) ip_addr="${arg#vm.ip=}" ;;
    vm.mtu=*) mtu="${arg#vm.mtu=}" ;;
  esac
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ "$n" -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
if [ -e /sys/class/net/eth0 ]; then
  [ -n "${mtu:-}" ] && ip link set eth0 mtu "$mtu"
  ip link set eth0 up
  [ -n "${ip_addr:-}" ] && ip addr add "$ip_addr" dev eth0
  echo "VM-READY $(cat /sys/class/net/eth0/address) $(ip -o -4 addr show dev eth0 | awk '{print $4}')"
else
  echo "VM-NO-ETH0"
fi
stty -echo 2>/dev/null
# The command shell is a child of this script, never PID 1 itself, and is not
# interactive: it reads its commands from /dev/console as a script, so busybox
# ash's line editor is never used. (busybox 1.35's interactive ash returns from
# the line editor as if on EOF, and exits, when a background job ends while it
# waits for input; as PID 1 that was "Attempted to kill init!".) A
# non-interactive shell still ends on a syntax error: say so and start another,
# so init never exits.
while :; do
  setsid cttyhack sh /dev/console
  echo "VM-SHELL-EXITED $?"
done
EOF
chmod 755 "$root/init"
mkdir -p "$out"
(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 >"$work/initrd.gz"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.gz" "$out/initrd.gz"
echo "$kver" >"$out/kernel-version"
echo "$RECIPE" >"$out/recipe-version"
echo "build-test-vm: $out ready (kernel $kver, modules: ${#order[@]})"
