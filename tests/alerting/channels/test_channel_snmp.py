"""SNMP v2c trap channel against a real UDP trap receiver on loopback, decoded by pysnmp."""

from __future__ import annotations

import glob
import asyncio
import socket
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder
from pysnmp.proto import api

from alerting.channels import build_channel
from alerting.channels.snmp import OBJECTS, SEVERITY_CODES, STATE_CODES

ENT = "1.3.6.1.4.1.55555.1"
MIB = Path(__file__).resolve().parents[3] / "docs" / "PULSE-MIB.txt"


@pytest.fixture
def trap_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    yield sock
    sock.close()


def receive_trap(sock) -> tuple[int, str, str, list[tuple[str, object]]]:
    """(version, community, pdu type, [(oid, value)]) of the next datagram."""
    data, _ = sock.recvfrom(65535)
    version = int(api.decodeMessageVersion(data))
    pmod = api.PROTOCOL_MODULES[version]
    msg, rest = decoder.decode(data, asn1Spec=pmod.Message())
    assert rest == b""
    pdu = pmod.apiMessage.get_pdu(msg)
    vbs = [(str(oid), val) for oid, val in pmod.apiPDU.get_varbinds(pdu)]
    return version, str(pmod.apiMessage.get_community(msg)), type(pdu).__name__, vbs


def test_trap_varbinds_arrive(trap_receiver, monkeypatch, make_notification):
    monkeypatch.setenv("T_SNMP_COMMUNITY", "n0c-community")
    port = trap_receiver.getsockname()[1]
    ch = build_channel("snmp", {"host": "127.0.0.1", "port": port, "community": {"env": "T_SNMP_COMMUNITY"}})
    n = make_notification(event="acknowledged", severity="warning", value=81.5)
    res = asyncio.run(ch.send(n))
    assert res.ok, res

    version, community, pdu_type, vbs = receive_trap(trap_receiver)
    assert version == api.SNMP_VERSION_2C and community == "n0c-community" and pdu_type == "SNMPv2TrapPDU"
    # RFC 3416: sysUpTime.0 then snmpTrapOID.0 come first, once each.
    assert [o for o, _ in vbs[:2]] == ["1.3.6.1.2.1.1.3.0", "1.3.6.1.6.3.1.1.4.1.0"]
    assert sum(o == "1.3.6.1.2.1.1.3.0" for o, _ in vbs) == 1
    assert str(vbs[1][1]) == f"{ENT}.0.1"
    got = {o: v for o, v in vbs[2:]}

    def val(name):
        return got[f"{ENT}.1.{OBJECTS[name]}.0"]

    assert bytes(val("pulseAlertId")).decode() == n.alert_id
    assert int(val("pulseAlertSeverity")) == SEVERITY_CODES["warning"] == 2
    assert bytes(val("pulseAlertDevice")).decode() == "dev-17"
    assert bytes(val("pulseAlertRule")).decode() == "Temperature high"
    assert int(val("pulseAlertState")) == STATE_CODES["acknowledged"] == 2
    assert bytes(val("pulseAlertSummary")).decode() == n.summary
    assert bytes(val("pulseAlertValue")).decode() == "81.5"
    assert bytes(val("pulseAlertTenant")).decode() == "acme"
    assert bytes(val("pulseAlertSite")).decode() == "plant-a"


def test_pysnmp_notification_receiver_accepts_trap_and_checks_community(monkeypatch, make_notification):
    """A full pysnmp SNMP engine (RFC 3413 notification receiver) as the NMS: it only
    delivers a trap whose community it knows, and hands over the varbinds."""
    from tests.alerting.channels.receivers import free_port
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import ntfrcv

    monkeypatch.setenv("T_SNMP_COMMUNITY", "nms-secret")
    port = free_port()

    async def scenario():
        snmp_engine = engine.SnmpEngine()
        config.add_transport(snmp_engine, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode(("127.0.0.1", port)))
        config.add_v1_system(snmp_engine, "pulse-area", "nms-secret")
        got: asyncio.Queue = asyncio.Queue()

        def on_trap(_engine, _ref, _ctx_engine_id, _ctx_name, var_binds, _cb_ctx):
            got.put_nowait([(str(o), v) for o, v in var_binds])

        receiver = ntfrcv.NotificationReceiver(snmp_engine, on_trap)
        try:
            good = build_channel("snmp", {"host": "127.0.0.1", "port": port, "community": {"env": "T_SNMP_COMMUNITY"}})
            bad = build_channel("snmp", {"host": "127.0.0.1", "port": port})  # "public": unknown to the NMS
            assert (await bad.send(make_notification(summary="wrong community"))).ok  # fire-and-forget
            n = make_notification(severity="info", event="resolved")
            assert (await good.send(n)).ok
            vbs = await asyncio.wait_for(got.get(), 3)
            await asyncio.sleep(0.2)
            assert got.empty()  # the wrong-community trap was dropped by the engine
            return n, vbs
        finally:
            receiver.close(snmp_engine)
            snmp_engine.close_dispatcher()

    n, vbs = asyncio.run(scenario())
    got = {o: v for o, v in vbs}
    assert str(got["1.3.6.1.6.3.1.1.4.1.0"]) == f"{ENT}.0.1"
    assert bytes(got[f"{ENT}.1.1.0"]).decode() == n.alert_id
    assert int(got[f"{ENT}.1.2.0"]) == SEVERITY_CODES["info"]
    assert int(got[f"{ENT}.1.5.0"]) == STATE_CODES["resolved"]


def test_fleet_alert_long_summary_and_default_community(trap_receiver, make_notification):
    port = trap_receiver.getsockname()[1]
    ch = build_channel("snmp", {"host": "127.0.0.1", "port": port, "enterprise_oid": "1.3.6.1.4.1.99999.7"})
    n = make_notification(device_id=None, value=None, summary="é" * 300)
    assert asyncio.run(ch.send(n)).ok
    _, community, _, vbs = receive_trap(trap_receiver)
    got = {o: v for o, v in vbs}
    assert community == "public"
    assert str(got["1.3.6.1.6.3.1.1.4.1.0"]) == "1.3.6.1.4.1.99999.7.0.1"
    summary = bytes(got["1.3.6.1.4.1.99999.7.1.6.0"])
    assert len(summary) <= 255 and summary.decode("utf-8") == "é" * 127  # clipped on a character boundary
    assert bytes(got["1.3.6.1.4.1.99999.7.1.3.0"]) == b"" and bytes(got["1.3.6.1.4.1.99999.7.1.7.0"]) == b""


def test_unresolvable_host_is_a_failure_not_an_exception(make_notification):
    ch = build_channel("snmp", {"host": "no-such-host.invalid", "timeout_s": 2})
    res = asyncio.run(ch.send(make_notification()))
    assert not res.ok and res.error


def test_enterprise_oid_validated():
    from alerting.channels import ChannelConfigError

    with pytest.raises(ChannelConfigError, match="enterprise_oid"):
        build_channel("snmp", {"host": "h", "enterprise_oid": "1.3.6.1.2.1"})


def test_mib_declares_the_objects_the_channel_sends():
    """The MIB and the code must agree on names, numbers and enumerations."""
    text = MIB.read_text()
    assert "enterprises 55555" in text and "PLACEHOLDER" in text
    for name, col in OBJECTS.items():
        assert f"::= {{ pulseAlertObjects {col} }}" in text.split(f"{name} OBJECT-TYPE", 1)[1].split("\n\n")[0]
    for sev, code in SEVERITY_CODES.items():
        assert f"{sev}({code})" in text
    for state, code in STATE_CODES.items():
        assert f"{state.replace('_e', 'E')}({code})" in text
    assert "pulseAlertNotification NOTIFICATION-TYPE" in text


SYSTEM_MIB_DIRS = ["/usr/share/snmp/mibs", "/usr/share/mibs/ietf", "/var/lib/mibs/ietf",
                   *sorted(glob.glob("/usr/lib/erlang/lib/snmp-*/mibs"))]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pysmi-generated code uses camelCase APIs
def test_mib_compiles_with_pysmi(tmp_path):
    """Syntactic validity: compile with pysmi (test-only dependency) and load the result
    into pysnmp's MIB view; the OIDs must be the ones the channel uses."""
    pytest.importorskip("pysmi")
    from pysmi.codegen import PySnmpCodeGen
    from pysmi.compiler import MibCompiler
    from pysmi.parser import SmiV2Parser
    from pysmi.reader import FileReader
    from pysmi.searcher import StubSearcher
    from pysmi.writer import PyFileWriter
    from pysnmp.smi import builder, view

    compiler = MibCompiler(SmiV2Parser(), PySnmpCodeGen(), PyFileWriter(str(tmp_path)))
    # pysmi parses the IETF base modules (SNMPv2-SMI/TC/CONF) our MIB imports; use a copy
    # installed on the machine (net-snmp, libsmi or Erlang's snmp application ship them).
    base_dirs = [d for d in SYSTEM_MIB_DIRS if any(Path(d).glob("SNMPv2-SMI*"))]
    if not base_dirs:
        pytest.skip("no IETF base MIBs (SNMPv2-SMI) installed on this machine")
    compiler.add_sources(FileReader(str(MIB.parent)), *(FileReader(d) for d in base_dirs))
    compiler.add_searchers(StubSearcher(*PySnmpCodeGen.baseMibs))
    results = compiler.compile("PULSE-MIB", rebuild=True)
    assert results["PULSE-MIB"] == "compiled", results

    mb = builder.MibBuilder()
    mb.add_mib_sources(builder.DirMibSource(str(tmp_path)))
    mb.load_modules("PULSE-MIB")
    mv = view.MibViewController(mb)
    (notif,) = mb.import_symbols("PULSE-MIB", "pulseAlertNotification")
    assert ".".join(map(str, notif.getName())) == f"{ENT}.0.1"
    for name, col in OBJECTS.items():
        (obj,) = mb.import_symbols("PULSE-MIB", name)
        assert ".".join(map(str, obj.getName())) == f"{ENT}.1.{col}"
        assert mv.get_node_name(obj.getName())[1][-1] == name
    objects = [o[1] for o in notif.getObjects()]
    assert objects == list(OBJECTS)
