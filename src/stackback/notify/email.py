"""E-mail over SMTP (stdlib smtplib): STARTTLS unless switched off, login when configured."""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from stackback.alerts import Route
from stackback.notify import SendResult
from stackback.notify.retry import Backoff, Permanent, with_retries


@dataclass
class EmailChannel:
    route: Route
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    """A CA bundle to trust for STARTTLS (default: the system's)."""
    timeout: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] | None = None

    def message(self, body: Mapping[str, Any], subject: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        lines = [subject, "", str(body.get("detail") or ""), ""]
        lines += [f"{key}: {value}" for key, value in sorted(body.items()) if value is not None]
        lines += ["", json.dumps(body, sort_keys=True, indent=2)]
        message.set_content("\n".join(lines))
        return message

    def send(self, body: Mapping[str, Any], subject: str) -> SendResult:
        message = self.message(body, subject)

        def attempt() -> str:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    context = ssl.create_default_context(cafile=self.ca_file)
                    smtp.starttls(context=context)
                    smtp.ehlo()
                try:
                    if self.username:
                        smtp.login(self.username, self.password or "")
                    refused = smtp.send_message(message)
                except smtplib.SMTPRecipientsRefused as error:
                    raise Permanent(
                        f"every recipient refused: {sorted(error.recipients)}"
                    ) from None
                except smtplib.SMTPResponseException as error:
                    if error.smtp_code >= 500:  # 4xx is the server's "try again later"
                        raise Permanent(f"SMTP {error.smtp_code}: {error.smtp_error!r}") from None
                    raise
                if refused:
                    return f"sent; refused by {sorted(refused)}"
                return "sent"

        if self.sleep is None:
            return with_retries(attempt, self.backoff)
        return with_retries(attempt, self.backoff, sleep=self.sleep)

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []
