"""Email delivery of reports over SMTP: a short summary, the link, and the report attached."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from wattwatch.errors import WattwatchError
from wattwatch.hooks.notifiers import SmtpConfig
from wattwatch.reports.render import Rendered


class DeliveryFailed(WattwatchError):
    code = "delivery_failed"


@dataclass(frozen=True, slots=True)
class SmtpSettings(SmtpConfig):
    """The SMTP server of the alert emails; a report email waits longer for it."""

    timeout_s: float = 20.0


def report_email(
    report: dict[str, Any], recipients: list[str], sender: str, link: str, attachment: Rendered
) -> EmailMessage:
    meta, s = report["report"], report["summary"]
    currency = meta["currency"]
    msg = EmailMessage()
    msg["Subject"] = f"Energy report: {meta['scope']['name']} — {meta['period']['label']}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    lines = [
        f"{meta['scope']['name']}, {meta['period']['label']}",
        "",
        f"Energy: {s['energy_kwh']:,.1f} kWh",
        f"Cost: {s['cost']['total']:,.2f} {currency}",
    ]
    if s["peak"]:
        lines.append(f"Peak demand: {s['peak']['kw']:.1f} kW at {s['peak']['local'][:16]}")
    coverage = report["completeness"]["coverage"]
    if coverage is not None:
        lines.append(f"Data completeness: {coverage * 100:.1f} %")
    lines += ["", "Findings:", *(f"- {f['text']}" for f in report["findings"])]
    lines += ["", f"Full report (log in first): {link}", "", "The report is attached."]
    msg.set_content("\n".join(lines))
    maintype, subtype = attachment.media_type.split(";")[0].split("/")
    msg.add_attachment(
        attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
    )
    return msg


class ReportMailer:
    """Sends report emails; without SMTP settings every send fails with a clear reason."""

    def __init__(self, smtp: SmtpSettings | None) -> None:
        self.smtp = smtp

    @property
    def sender(self) -> str:
        return self.smtp.sender if self.smtp else "wattwatch@localhost"

    async def send(self, msg: EmailMessage) -> list[str]:
        """Send ``msg``; return the recipients the server refused (the others got it)."""
        return await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> list[str]:
        smtp = self.smtp
        if smtp is None:
            raise DeliveryFailed("no SMTP server configured (set WATTWATCH_SMTP_HOST)")
        try:
            with smtp.session() as conn:
                refused = conn.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(f"every recipient was refused: {sorted(exc.recipients)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            # The message of an SMTP error never holds the password; the settings are not logged.
            raise DeliveryFailed(f"SMTP {smtp.host}:{smtp.port}: {exc}") from None
        return sorted(refused)
