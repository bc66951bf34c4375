#!/usr/bin/env bash
# Install the Debian packages vspan's demo, tests and benchmarks use.
# Idempotent; needs root. Safe to run on a fresh Debian 12 machine.
set -euo pipefail
# qemu-system-x86 and busybox-static: the test VM (scripts/build-test-vm.sh);
# util-linux (setpriv): unprivileged TAP attach tests; openssl: the API's TLS test;
# chromium, chromium-driver: the web console test in a headless browser (Selenium)
PKGS=(iproute2 iputils-ping tcpdump tshark iperf3 netsniff-ng ethtool procps psmisc
      python3-venv nftables qemu-system-x86 busybox-static util-linux
      etcd-server curl openssl chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: all Debian packages present"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
