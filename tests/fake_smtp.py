"""A small real SMTP server on 127.0.0.1 for the reset mailer's tests: it records what it is sent.

It offers STARTTLS or not, speaks TLS from the first byte (smtps) or not, with a certificate
the test made (``certificates``), and accepts any AUTH and any mail.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Certificates:
    ca: Path  # the test CA's certificate: point SSL_CERT_FILE at it to trust `trusted`
    trusted: tuple[Path, Path]  # (cert, key) for 127.0.0.1, signed by the CA
    self_signed: tuple[Path, Path]  # (cert, key) for evil.example, signed by itself


def certificates(directory: Path) -> Certificates:
    """Make the certificates with the openssl command (the caller skips when it is missing)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    quick = ("-newkey", "rsa:2048", "-nodes", "-days", "2")
    openssl("req", "-x509", *quick, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Test CA")
    openssl("req", *quick, "-keyout", "ok.key", "-out", "ok.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "ok.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "ok.pem", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    openssl("req", "-x509", *quick, "-keyout", "evil.key", "-out", "evil.pem", "-subj", "/CN=evil.example")
    return Certificates(
        directory / "ca.pem",
        (directory / "ok.pem", directory / "ok.key"),
        (directory / "evil.pem", directory / "evil.key"),
    )


@dataclass
class FakeSmtp:
    starttls: bool = True
    implicit_tls: bool = False
    certificate: tuple[Path, Path] | None = None
    received: list[tuple[bool, str]] = field(default_factory=list)  # (over TLS, line)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if self.certificate is not None:
            self.context.load_cert_chain(*map(str, self.certificate))
        threading.Thread(target=self._serve, daemon=True).start()

    def lines(self) -> str:
        return "\n".join(line for _, line in self.received)

    def close(self) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        tls = self.implicit_tls
        try:
            if tls:
                connection = self.context.wrap_socket(connection, server_side=True)
            reader = connection.makefile("rb")
            connection.sendall(b"220 fake ESMTP\r\n")
            while line := reader.readline(65536):
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                self.received.append((tls, text))
                verb = text.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    offer = b"250-STARTTLS\r\n" if self.starttls and not tls else b""
                    connection.sendall(b"250-fake\r\n" + offer + b"250 AUTH PLAIN LOGIN\r\n")
                elif verb == "STARTTLS":
                    connection.sendall(b"220 go ahead\r\n")
                    connection = self.context.wrap_socket(connection, server_side=True)
                    reader, tls = connection.makefile("rb"), True
                elif verb == "AUTH":
                    connection.sendall(b"235 ok\r\n")
                elif verb == "DATA":
                    connection.sendall(b"354 go on\r\n")
                    while (body := reader.readline(65536)) not in (b".\r\n", b""):
                        self.received.append((tls, body.decode("utf-8", "replace").rstrip("\r\n")))
                    connection.sendall(b"250 queued\r\n")
                elif verb == "QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                else:
                    connection.sendall(b"250 ok\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            connection.close()
