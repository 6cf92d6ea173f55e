"""Test certificates made with the ``openssl`` command, and brokers with TLS or a password file.

Everything lives in a temporary directory and listens on loopback only. The server certificate names
``localhost`` and nothing else (no IP address), so connecting to ``127.0.0.1`` is a host name mismatch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .mqtt_helpers import Mosquitto, free_port, wait_until

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}"""


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl") or "openssl"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args[:2])} failed: {done.stderr[-2000:]}")


@dataclass(frozen=True)
class CertAuthority:
    """A self-signed CA that can sign leaf certificates."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> CertAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        _openssl(
            "req",
            "-x509",
            *EC_KEY,
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN=mqttbridge test {name}",
            "-config",
            "/dev/null",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        return cls(cert, key)

    def issue(self, directory: Path, name: str, *, server: bool, dns: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A leaf certificate and its key; ``dns`` are its only subject alternative names."""
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
        san = f"subjectAltName = {', '.join(f'DNS:{d}' for d in dns)}\n" if dns else ""
        ext.write_text(_LEAF_EXT.format(usage="serverAuth" if server else "clientAuth", san=san))
        _openssl(
            "req",
            "-new",
            *EC_KEY,
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={name}",
            "-config",
            "/dev/null",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.cert),
            "-CAkey",
            str(self.key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            "2",
            "-sha256",
            "-extfile",
            str(ext),
        )
        return cert, key


@dataclass(frozen=True)
class Pki:
    """The broker's CA with its server certificate (``localhost`` only), a client certificate, and an
    unrelated CA that signed none of them."""

    ca: CertAuthority
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: CertAuthority

    @classmethod
    def create(cls, directory: Path) -> Pki:
        ca = CertAuthority.create(directory, "ca")
        server_cert, server_key = ca.issue(directory, "server", server=True, dns=("localhost",))
        client_cert, client_key = ca.issue(directory, "client", server=False)
        other = CertAuthority.create(directory, "other-ca")
        return cls(ca, server_cert, server_key, client_cert, client_key, other)


class Broker(Mosquitto):
    """A mosquitto whose whole configuration is ours: ``port`` is a plain, anonymous listener for
    observers, ``secure_port`` the listener under test (TLS or password)."""

    def __init__(self, workdir: Path, secure_listener: str, *, per_listener_settings: bool = False):
        super().__init__(workdir)
        self.secure_port = free_port()
        head = "per_listener_settings true\n" if per_listener_settings else ""
        if os.geteuid() == 0:  # as root mosquitto would switch to its own user, who cannot read tmp files
            head += "user root\n"
        self.conf.write_text(
            f"{head}persistence false\nlog_type all\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"listener {self.secure_port} 127.0.0.1\n{secure_listener}"
        )

    def start(self) -> None:
        super().start()
        wait_until(self._secure_accepts, 10, f"mosquitto on port {self.secure_port}")

    def _secure_accepts(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:  # e.g. a certificate it could not load
            raise AssertionError(f"mosquitto exited: {self.log_text()[-2000:]}")
        if " running" not in self.log_text():  # logged once every listener and certificate is loaded
            return False
        try:
            socket.create_connection(("127.0.0.1", self.secure_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def tls_broker(workdir: Path, pki: Pki, *, require_certificate: bool = False) -> Broker:
    listener = (
        f"cafile {pki.ca.cert}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"require_certificate {'true' if require_certificate else 'false'}\n"
    )
    return Broker(workdir, listener)


def password_broker(workdir: Path, users: dict[str, str], *, pki: Pki | None = None) -> Broker:
    """A listener that takes only these users (with ``pki``: over TLS); the plain one stays anonymous
    (per-listener settings)."""
    password_file = workdir / "passwords"
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for index, (user, password) in enumerate(users.items()):
        create = ("-c",) if index == 0 else ()
        subprocess.run(
            [binary, *create, "-b", str(password_file), user, password], check=True, capture_output=True, timeout=30
        )
    password_file.chmod(0o600)
    tls = f"cafile {pki.ca.cert}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n" if pki else ""
    return Broker(workdir, f"{tls}allow_anonymous false\npassword_file {password_file}\n", per_listener_settings=True)
