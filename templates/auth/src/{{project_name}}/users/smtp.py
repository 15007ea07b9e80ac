"""Sending a mail through ``SMTP_URL``, encrypted and to the right server, or not at all.

A reset mail carries a link that signs in as its user, and the login carries the mail
account's password, so both go only over TLS whose certificate chain and host name are
checked against the system's CA store (``SSL_CERT_FILE`` points at another bundle):

- ``smtps://user:password@host:465``: TLS from the first byte;
- ``smtp://user:password@host:587``: STARTTLS, required; a server that does not offer it
  (or a man in the middle that strips it) gets neither the password nor the mail;
- ``smtp://127.0.0.1:1025?tls=off``: clear text, for a development mail catcher on this
  machine only (the host must be a loopback address or ``localhost``).

smtplib alone would send in clear text when STARTTLS is missing and would accept any
certificate: hence this module.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit


class MailRefused(Exception):
    """The mail was not sent because the channel is not safe; the message says why, without a secret."""


def send_by_smtp(url: str, mail: EmailMessage, timeout: float = 10.0) -> None:
    """Send ``mail`` through the server of ``url``, or raise :class:`MailRefused` before sending a secret."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    where = f"{host}:{parts.port or (465 if parts.scheme == 'smtps' else 25)}"
    if parts.scheme not in ("smtp", "smtps"):
        raise MailRefused(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme or 'nothing'}://")
    clear_text = parse_qs(parts.query).get("tls") == ["off"]
    if clear_text and (parts.scheme == "smtps" or not _is_local(host)):
        raise MailRefused(f"tls=off is only for a mail catcher on this machine, not {where}")
    context = ssl.create_default_context()
    try:
        if parts.scheme == "smtps":
            server: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
        with server:
            server.ehlo()
            if parts.scheme == "smtp" and not clear_text:
                if not server.has_extn("starttls"):
                    raise MailRefused(f"the SMTP server at {where} does not offer STARTTLS")
                server.starttls(context=context)
                server.ehlo()
            if parts.username:
                server.login(unquote(parts.username), unquote(parts.password or ""))
            server.send_message(mail)
    except ssl.SSLCertVerificationError as exc:
        problem = exc.verify_message
        raise MailRefused(f"the certificate of the SMTP server at {where} is not trusted ({problem})") from None
    except ssl.SSLError as exc:
        raise MailRefused(f"TLS with the SMTP server at {where} failed ({exc.reason or type(exc).__name__})") from None


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
