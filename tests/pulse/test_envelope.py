from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse import envelope
from pulse.envelope import EnvelopeError, Reason

NOW = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def dec(obj, **kw):
    payload = obj if isinstance(obj, bytes) else msgspec.json.encode(obj)
    return envelope.decode(payload, now=NOW, **kw)


def base(**over):
    body = {"v": 1, "device_id": "pump-0001", "ts": "2026-11-28T13:59:00.123Z", "seq": 42, "msg_id": "m-1",
            "metrics": {"temp_c": 21.5, "pressure_bar": 1.2}, "tags": {"fw": "1.4.2"}}
    body.update(over)
    return body


def test_valid_envelope_decodes_to_utc():
    tel = dec(base())
    assert tel.device_id == "pump-0001"
    assert tel.ts == datetime(2026, 11, 28, 13, 59, 0, 123000, tzinfo=UTC)
    assert tel.metrics == {"temp_c": 21.5, "pressure_bar": 1.2}
    assert (tel.seq, tel.msg_id, tel.tags) == (42, "m-1", {"fw": "1.4.2"})


def test_epoch_milliseconds_offsets_and_booleans():
    ms = int((NOW - timedelta(minutes=1)).timestamp() * 1000)
    assert dec(base(ts=ms)).ts == NOW - timedelta(minutes=1)
    assert dec(base(ts="2026-11-28T15:00:00+02:00")).ts == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert dec(base(ts="2026-11-28T13:00:00")).ts.tzinfo is UTC  # naive is taken as UTC
    assert dec(base(metrics={"on": True, "off": False, "n": 3})).metrics == {"on": 1.0, "off": 0.0, "n": 3.0}


@pytest.mark.parametrize("body, reason", [
    (b"{not json", Reason.BAD_JSON),
    (b"", Reason.BAD_JSON),
    (b"[1,2]", Reason.SCHEMA),
    (base(v=2), Reason.UNSUPPORTED_VERSION),
    ({"v": 7, "whatever": True}, Reason.UNSUPPORTED_VERSION),
    ({"v": "1", "device_id": "d", "ts": 1, "metrics": {"a": 1}}, Reason.SCHEMA),
    (base(metrics={}), Reason.SCHEMA),
    (base(metrics={"a": "high"}), Reason.SCHEMA),
    (base(metrics={"bad name!": 1}), Reason.SCHEMA),
    (base(device_id="a/b"), Reason.SCHEMA),
    (base(device_id=""), Reason.SCHEMA),
    (b'{"v":1,"device_id":"d","ts":"2026-11-28T13:00:00Z","metrics":{"a":1e400}}', Reason.NON_FINITE),
    (base(ts="2026-11-28T14:10:00Z"), Reason.CLOCK_IN_FUTURE),
    (base(ts=0), Reason.CLOCK_INVALID),
    (base(ts="1970-01-01T00:00:00Z"), Reason.CLOCK_INVALID),
    (base(ts=1e300), Reason.CLOCK_INVALID),
    (base(ts="yesterday"), Reason.SCHEMA),
    ({"device_id": "d"}, Reason.SCHEMA),
])
def test_rejections_carry_a_reason(body, reason):
    with pytest.raises(EnvelopeError) as info:
        dec(body)
    assert info.value.reason is reason
    assert info.value.detail


def test_clock_skew_is_configurable():
    body = base(ts="2026-11-28T14:10:00Z")
    assert dec(body, max_skew_s=3600).ts.hour == 14


def test_split_body_single_array_ndjson_and_pretty():
    one = msgspec.json.encode(base())
    assert envelope.split_body(one) == [one]
    assert len(envelope.split_body(b"[" + one + b"," + one + b"]")) == 2
    assert len(envelope.split_body(one + b"\n" + one + b"\n\n")) == 2
    pretty = b'{\n  "v": 1,\n  "device_id": "x",\n  "ts": 1, "metrics": {"a": 1}\n}'
    assert envelope.split_body(pretty) == [pretty]
    assert len(envelope.split_body(one + b"\n" + one, "application/x-ndjson")) == 2
    with pytest.raises(EnvelopeError) as info:
        envelope.split_body(b"[1, 2")
    assert info.value.reason is Reason.BAD_JSON


def test_encode_round_trips():
    payload = envelope.encode("d1", NOW, {"a": 1.5}, seq=3, msg_id="x", tags={"k": "v"})
    tel = envelope.decode(payload, now=NOW)
    assert (tel.device_id, tel.ts, tel.metrics, tel.seq, tel.msg_id, tel.tags) == ("d1", NOW, {"a": 1.5}, 3, "x", {"k": "v"})


def test_json_schema_describes_required_fields():
    schema = envelope.json_schema()
    assert schema["required"] == ["v", "device_id", "ts", "metrics"]
    assert schema["properties"]["v"] == {"const": 1, "description": "envelope version"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    json_values.map(msgspec.json.encode),
    st.fixed_dictionaries({"v": st.one_of(st.just(1), json_values), "device_id": json_values, "ts": json_values,
                           "metrics": st.one_of(json_values, st.dictionaries(st.text(max_size=12),
                                                                             json_values, max_size=4))},
                          optional={"seq": json_values, "msg_id": json_values, "tags": json_values}
                          ).map(msgspec.json.encode),
))
def test_fuzz_decoder_never_crashes(payload):
    """Any input either decodes to valid telemetry or raises EnvelopeError with a reason."""
    try:
        tel = envelope.decode(payload, now=NOW)
    except EnvelopeError as err:
        assert isinstance(err.reason, Reason) and err.detail
    else:
        assert tel.metrics and all(isinstance(v, float) for v in tel.metrics.values())
        assert tel.ts.tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_split_body_never_crashes(body):
    try:
        parts = envelope.split_body(body)
    except EnvelopeError as err:
        assert err.reason is Reason.BAD_JSON
    else:
        assert all(isinstance(p, bytes) for p in parts)


def test_published_schema_file_matches_the_decoder():
    import json

    from tests.helpers import REPO

    published = json.loads((REPO / "docs" / "envelope-v1.schema.json").read_text())
    assert published == envelope.json_schema()
