"""A real QEMU VM for system tests: Debian's cloud kernel and a busybox initramfs.

``scripts/build-test-vm.sh`` builds ``.cache/testvm/{vmlinuz,initrd.gz}`` (the
fixture ``vm_image`` calls it through :func:`image_problem`, which rebuilds a
missing image or one from an older recipe). The VM boots under TCG in a few
seconds, configures ``eth0`` from ``vm.ip=`` on its kernel command line and
runs a non-interactive shell, reading the serial console, which :class:`TestVM`
drives through QEMU's stdio: :meth:`TestVM.run` sends one command line and
returns its exit status and output.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-test-vm.sh"
IMAGE_DIR = Path(os.environ.get("VSPAN_TEST_VM_DIR", ROOT / ".cache" / "testvm"))
QEMU = "qemu-system-x86_64"
_RC = "__R" "C__"  # the marker after each command (split so an echoed command never matches)


class VMError(RuntimeError):
    """The VM did not boot, a command did not finish or QEMU went away."""

TAIL = 4096  # bytes of console output a VMError quotes


def image_problem() -> str | None:
    """Why the test VM cannot run here (None when it can).

    Always runs the build script: it returns at once when the image is complete
    and was built by the script's current recipe, and rebuilds a missing or stale one.
    """
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (scripts/install-system.sh installs qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), str(IMAGE_DIR)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        return f"cannot build the test VM: {(proc.stderr or proc.stdout).strip()[-400:]}"
    return None


class TestVM:
    """One QEMU process whose virtio-net NIC is the TAP ``tap`` (made by vspan or by QEMU)."""

    __test__ = False  # not a pytest test class

    def __init__(self, tap: str, ip: str, mac: str, *, vnet_hdr: bool = True,
                 queues: int = 1, guest_offloads: bool = True, memory_mb: int = 256,
                 image_dir: Path = IMAGE_DIR) -> None:
        self.tap = tap
        self.ip = ip
        self.mac = mac
        netdev = (f"tap,id=n0,ifname={tap},script=no,downscript=no,"
                  f"vnet_hdr={'on' if vnet_hdr else 'off'}")
        device = f"virtio-net-pci,netdev=n0,mac={mac},romfile="
        if queues > 1:
            netdev += f",queues={queues}"
            device += f",mq=on,vectors={2 * queues + 2}"
        if not guest_offloads:  # the guest negotiates no offloads: QEMU clears the TAP's TSO
            device += (",csum=off,guest_csum=off,gso=off,guest_tso4=off,guest_tso6=off,"
                       "guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,"
                       "host_ecn=off,host_ufo=off")
        self.argv = [
            QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-accel", "tcg", "-m", str(memory_mb), "-smp", "1",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "initrd.gz"),
            "-append", f"console=ttyS0 quiet panic=-1 vm.ip={ip}",
            "-netdev", netdev, "-device", device,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = b""  # everything the console printed
        self._pos = 0

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 180) -> str:
        """Boot; return the VM-READY line (``VM-READY <mac> <addr>``)."""
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        line = self._wait_for(b"VM-READY", timeout)
        time.sleep(0.3)  # let the shell start reading the console
        return line

    def stop(self) -> None:
        """Power off (kill QEMU if it lingers)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._send("poweroff -f\n")
                proc.wait(timeout=10)
            except (OSError, VMError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # stdin still held a line QEMU never read
                    pass
        self.proc = None

    def __enter__(self) -> TestVM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- console -------------------------------------------------------------

    def _status(self) -> str:
        """QEMU's state for an error message: running, or how it exited."""
        if self.proc is None:
            return "QEMU not started"
        try:
            rc = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return "QEMU still running"
        return f"QEMU exited with status {rc}"

    def _drain(self) -> None:
        """Read what the console has ready now (what QEMU printed before it went away)."""
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + 2
        try:
            while time.monotonic() < deadline and select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                self.output += chunk
        except OSError:
            return

    def _failure(self, what: str) -> VMError:
        """A VMError naming ``what``, QEMU's state and the console's last :data:`TAIL` bytes."""
        self._drain()
        return VMError(f"{what} ({self._status()}); last {TAIL} bytes of the console:\n"
                       f"{self.output[-TAIL:].decode(errors='replace')}")

    def _send(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except OSError as e:  # BrokenPipeError: QEMU exited
            raise self._failure(f"cannot write {text[:60]!r} to the VM's console: {e}") from e

    def _read_some(self, deadline: float) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, min(0.2, deadline - time.monotonic())))
        if not ready:
            return self.proc.poll() is None
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self.output += chunk
        return True

    def _wait_for(self, needle: bytes, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.output.find(needle, self._pos)
            if at >= 0:
                end = self.output.find(b"\n", at)
                if end >= 0:
                    self._pos = end + 1
                    return self.output[at:end].decode(errors="replace").strip()
            if not self._read_some(deadline):
                break
        raise self._failure(f"no {needle!r} from the VM within {timeout:g} s")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run one shell command line in the VM; return (exit status, output)."""
        start = len(self.output)
        self._pos = max(self._pos, start)
        self._send(f'{command}\necho "{_RC[:3]}""{_RC[3:]}$?__"\n')
        line = self._wait_for(_RC.encode(), timeout)
        text = self.output[start:].decode(errors="replace")
        body = text[: text.find(_RC)]
        return int(line[len(_RC):].strip("_") or "-1"), body.replace("\r", "")

    def check(self, command: str, timeout: float = 120) -> str:
        """:meth:`run` that raises when the command fails."""
        rc, out = self.run(command, timeout)
        if rc != 0:
            raise VMError(f"{command!r} failed in the VM ({rc}): {out}")
        return out
