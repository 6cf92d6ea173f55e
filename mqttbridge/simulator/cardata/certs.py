"""A throw-away CA and server certificate for ``--stream-tls``, made with the ``openssl`` command.

BMW's broker speaks TLS with a public CA; the simulator's CA file is printed so the bridge can be
pointed at it (account key ``stream_ca``). The server certificate names ``localhost`` and ``127.0.0.1``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from ...errors import MqttBridgeError

logger = logging.getLogger(__name__)

__all__ = ["CertError", "make_server_cert"]

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


class CertError(MqttBridgeError):
    """The certificates could not be made (no openssl, or it failed)."""


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise CertError("--stream-tls needs the openssl command; install openssl")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def make_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) in ``directory``."""
    ca, ca_key = directory / "stream-ca.crt", directory / "stream-ca.key"
    cert, key, csr, ext = (directory / f"stream-server.{s}" for s in ("crt", "key", "csr", "ext"))
    _openssl(
        "req", "-x509", *_EC, "-keyout", str(ca_key), "-out", str(ca), "-days", "30",
        "-subj", "/CN=mqttbridge CarData simulator CA", "-config", "/dev/null",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-new", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost", "-config", "/dev/null"
    )
    ext.write_text(_LEAF_EXT)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "30", "-extfile", str(ext),
    )  # fmt: skip
    logger.debug("stream certificates made in %s", directory)
    return ca, cert, key
