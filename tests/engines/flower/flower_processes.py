"""Real Flower processes for the deployment tests: SuperLink, SuperNodes, ``flwr run``.

Every process starts in its own session (its process group id is its pid) with its output in a
log file; `Processes.stop_all` ends each one by that pid (SIGTERM, then SIGKILL to its group after
a bounded wait), which also ends the SuperExec and ClientApp processes it started. Every wait
here has a deadline. Certificates and SuperNode keys are generated with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, ok: Callable[[], bool], timeout: float, every: float = 0.25) -> None:
    """Poll ``ok`` until it holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def flower_env(home: Path) -> dict[str, str]:
    """The environment of every Flower process: no telemetry, a private FLWR_HOME."""
    env = dict(os.environ)
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_HOME=str(home), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Processes:
    """The processes a test started, each with its log file."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, cwd=self.folder, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL the process and its group at once (a site that crashes)."""
        proc = self.procs[name]
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)  # whatever it started, even if it already exited
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the group a process started with start_new_session has the process's pid
    except (ProcessLookupError, PermissionError):
        pass


# ----- certificates and keys ---------------------------------------------------------------------
def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1/localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pfedkit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return paths


def make_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """(private key, public key) of a SuperNode: EC P-384 in OpenSSH format, as Flower wants."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    private.chmod(0o600)
    return private, public


def write_connection(home: Path, port: int, ca: Path | None = None) -> None:
    """``FLWR_HOME/config.toml`` with one SuperLink connection, ``local`` (the default)."""
    home.mkdir(parents=True, exist_ok=True)
    tls = f'root-certificates = "{ca}"' if ca is not None else "insecure = true"
    (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
                                      f'address = "127.0.0.1:{port}"\n{tls}\n')


# ----- the commands (docs/deploy.md gives the same ones; test_flower_deploy_doc checks) ----------------
def superlink_args(port: int, tls: tuple[Path, Path, Path] | None = None) -> list[str]:
    """SuperLink on 127.0.0.1:port; with ``tls`` = (CA, certificate, key): TLS and SuperNode auth."""
    if tls is None:
        secure = ["--insecure"]
    else:
        ca, cert, key = tls
        secure = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                  "--enable-supernode-auth"]
    return ["flower-superlink", *secure, "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(port)]


def supernode_args(link_port: int, node_config: str, ca: Path | None = None, key: Path | None = None,
                   *extra: str) -> list[str]:
    """A SuperNode of the SuperLink at 127.0.0.1:link_port; with ``ca``: TLS, and ``key`` its auth key."""
    secure = ["--insecure"] if ca is None else ["--root-certificates", str(ca)]
    if key is not None:
        secure += ["--auth-supernode-private-key", str(key)]
    return ["flower-supernode", *secure, "--superlink", f"127.0.0.1:{link_port}", "--port", str(free_port()),
            "--node-config", node_config, *extra]


def register_args(public_key: Path) -> list[str]:
    return ["flwr", "supernode", "register", str(public_key), "local"]


def submit_args(app: Path) -> list[str]:
    return ["flwr", "run", str(app), "local", "--stream"]
