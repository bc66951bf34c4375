#!/usr/bin/env bash
# Install what bench/bench_switch.py's peers need and CI does not: Open vSwitch's
# userspace tools (ovsdb-server, ovs-vswitchd, ovs-vsctl, ovs-appctl) from Debian,
# plus ethtool (offloads off for the OVS netdev peer).
#
# The bench starts and stops OVS itself, by hand, in a private run directory; the
# Debian service is never started here (no systemd, no kernel module needed).
# Idempotent; needs root. Run: sudo bash bench/setup.sh
set -euo pipefail
PKGS=(openvswitch-switch openvswitch-common ethtool iproute2 iperf3 netsniff-ng iputils-ping)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "bench/setup.sh: all packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/setup.sh: needs root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the package's maintainer scripts from starting the service (it would load the
# kernel module and run a system-wide ovsdb-server): a policy-rc.d that says "no",
# only while we install, and only if the machine has none of its own.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "bench/setup.sh: installed ${missing[*]}"
