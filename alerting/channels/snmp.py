"""SNMP v2c trap: encoded with pysnmp's protocol layer (pysnmp 7), sent over asyncio UDP.
Objects and the notification are defined in docs/PULSE-MIB.txt.

OID tree — 55555 is a PLACEHOLDER private enterprise number, not assigned to us by IANA;
replace it (here and in the MIB) once a real PEN is registered:

  1.3.6.1.4.1.55555            pulseMIB (MODULE-IDENTITY)
  1.3.6.1.4.1.55555.1          pulseAlerting            (= enterprise_oid, configurable)
  1.3.6.1.4.1.55555.1.0.1      pulseAlertNotification   (snmpTrapOID.0)
  1.3.6.1.4.1.55555.1.1.N.0    alert objects (scalars, accessible-for-notify), N below
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Literal

from pydantic import Field, field_validator

from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    ChannelError,
    DeliveryResult,
    Notification,
    SecretRef,
    SendContext,
    format_value,
)

DEFAULT_ENTERPRISE_OID = "1.3.6.1.4.1.55555.1"
NOTIFICATION_SUFFIX = (0, 1)  # pulseAlertNotification
# Column number under <enterprise>.1 → (MIB object name, notification attribute)
OBJECTS: dict[str, int] = {
    "pulseAlertId": 1,
    "pulseAlertSeverity": 2,
    "pulseAlertDevice": 3,
    "pulseAlertRule": 4,
    "pulseAlertState": 5,
    "pulseAlertSummary": 6,
    "pulseAlertValue": 7,
    "pulseAlertTenant": 8,
    "pulseAlertSite": 9,
}
# Enumerations as in the MIB's textual conventions (SNMP has no strings-as-enums; NMS
# filters and colours on these integers).
SEVERITY_CODES = {"info": 1, "warning": 2, "critical": 3}
STATE_CODES = {
    "firing": 1,
    "acknowledged": 2,
    "resolved": 3,
    "flapping": 4,
    "flapping_ended": 5,
    "reminder": 6,
    "test": 7,
}
_OID_RE = re.compile(r"^1\.3\.6\.1\.4\.1(\.\d+)+$")
_DISPLAY_MAX = 255  # DisplayString SIZE (0..255)


class SnmpConfig(ChannelConfigBase):
    type: Literal["snmp"] = "snmp"
    host: str
    port: int = Field(default=162, ge=1, le=65535)
    community: SecretRef | None = None  # None → "public"; community strings are passwords
    enterprise_oid: str = DEFAULT_ENTERPRISE_OID
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("enterprise_oid")
    @classmethod
    def _check_oid(cls, v: str) -> str:
        if not _OID_RE.match(v):
            raise ValueError("must be a dotted OID under 1.3.6.1.4.1 (enterprises)")
        return v


def _clip(s: str) -> str:
    b = s.encode("utf-8")[:_DISPLAY_MAX]
    return b.decode("utf-8", "ignore")


def trap_oid(enterprise_oid: str = DEFAULT_ENTERPRISE_OID) -> str:
    return ".".join([enterprise_oid, *map(str, NOTIFICATION_SUFFIX)])


def object_oid(name: str, enterprise_oid: str = DEFAULT_ENTERPRISE_OID) -> str:
    return f"{enterprise_oid}.1.{OBJECTS[name]}.0"


def trap_varbinds(n: Notification) -> list[tuple[str, str | int]]:
    """(object name, value) in the order of the MIB's OBJECTS clause. Integers are the
    enumerations; everything else is a DisplayString (value too: SNMP has no floats)."""
    return [
        ("pulseAlertId", n.alert_id),
        ("pulseAlertSeverity", SEVERITY_CODES[n.severity]),
        ("pulseAlertDevice", _clip(n.device_id or "")),
        ("pulseAlertRule", _clip(n.rule_name)),
        ("pulseAlertState", STATE_CODES[n.event]),
        ("pulseAlertSummary", _clip(n.summary)),
        ("pulseAlertValue", "" if n.value is None else format_value(n.value)),
        ("pulseAlertTenant", _clip(n.tenant_id)),
        ("pulseAlertSite", _clip(n.site_id or "")),
    ]


_START = time.monotonic()


def encode_trap(n: Notification, community: str, enterprise_oid: str = DEFAULT_ENTERPRISE_OID) -> bytes:
    """BER-encoded SNMPv2c Trap-PDU message (RFC 3416 §4.2.6) for ``n``."""
    # pysnmp's protocol layer, not hlapi.send_notification: hlapi resolves every varbind
    # through a MIB view, and when pysmi is installed pysnmp attaches a MIB compiler that
    # costs seconds per engine (and may try to fetch MIBs over the network). Our OIDs are
    # fixed and numeric, so there is nothing to resolve.
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    varbinds = [
        # sysUpTime.0 then snmpTrapOID.0 must come first (RFC 3416 §4.2.6).
        (v2c.apiTrapPDU.sysUpTime, v2c.TimeTicks(int((time.monotonic() - _START) * 100) % 2**32)),
        (v2c.apiTrapPDU.snmpTrapOID, v2c.ObjectIdentifier(trap_oid(enterprise_oid))),
    ]
    for name, value in trap_varbinds(n):
        oid = v2c.ObjectIdentifier(object_oid(name, enterprise_oid))
        varbinds.append((oid, v2c.Integer32(value) if isinstance(value, int) else v2c.OctetString(value.encode())))
    v2c.apiTrapPDU.set_varbinds(pdu, varbinds)
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


class SnmpTrapChannel(Channel):
    type = "snmp"
    Config = SnmpConfig
    config: SnmpConfig

    def describe(self) -> str:
        return f"snmp v2c trap to {self.config.host}:{self.config.port}"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        cfg = self.config
        community = ctx.secret(cfg.community) if cfg.community else "public"
        data = encode_trap(n, community, cfg.enterprise_oid)
        loop = asyncio.get_running_loop()
        try:
            # remote_addr resolves the host (v4 or v6) without blocking the loop.
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(cfg.host, cfg.port)
            )
        except socket.gaierror as exc:  # DNS may be down, or a typo: the worker's retries decide
            raise ChannelError(f"cannot resolve trap receiver {cfg.host}: {exc.strerror}") from None
        except OSError as exc:
            raise ChannelError(f"cannot send trap to {cfg.host}:{cfg.port}: {exc}") from None
        try:
            transport.sendto(data)
        finally:
            transport.close()
        # A v2c trap is unconfirmed: "ok" means it left this host, not that it arrived.
        return DeliveryResult(ok=True)
