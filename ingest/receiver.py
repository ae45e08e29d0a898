"""MQTT receive process: paho's network loop in a process of its own.

Why a process: paho-mqtt is pure Python and its network thread (packet parsing, the
PUBLISH decode, MQTT 5 properties) takes about as much CPU per message as everything
else `pulse ingest` does per message (envelope decode, COPY encoding, psycopg, the alert
engine). In one process they share one GIL, so the receive loop waits for the writer and
the writer for the receive loop. Here the child only receives and forwards raw messages in
batches; the parent (:class:`ReceiverProcess`) decodes, writes and acknowledges. Measured
on the project's 2-core machine: forwarding costs the bare paho loop 0–7% of its rate.

Protocol over a socket pair, frames of a 4-byte big-endian length + msgpack:

* child → parent: ``["m", [[mid, generation, topic, payload], ...]]`` messages;
  ``["c", connected, detail]`` connection state; ``["e", message]`` fatal error.
* parent → child: ``["a", [[mid, generation], ...]]`` PUBACK these; ``["p"]`` pause (stop
  forwarding; the broker keeps what is not acknowledged); ``["s"]`` disconnect and exit.

The child exits when the parent goes away (end of file on the socket): whatever it
forwarded but was not acknowledged is redelivered by the broker to the next session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import structlog

from ingest import metrics
from ingest.writer import BatchWriter
from pulse.errors import UserError

log = structlog.get_logger("pulse.ingest.receiver")

_LEN = struct.Struct("!I")
BATCH = 512  # messages per frame; a frame also goes out every FLUSH_S when the flow is slow
FLUSH_S = 0.002


class _Channel:
    """Length-prefixed msgpack frames on a socket; sends are serialised by a lock."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._file = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder()

    def send(self, obj: Any) -> None:
        data = self._enc.encode(obj)
        with self._send_lock:
            self.sock.sendall(_LEN.pack(len(data)) + data)

    def recv(self) -> Any | None:
        head = self._file.read(4)
        if len(head) < 4:
            return None
        body = self._file.read(_LEN.unpack(head)[0])
        return self._dec.decode(body)


# ------------------------------------------------------------------ the child


def _child(fd: int, config: dict) -> None:
    import paho.mqtt.client as mqtt
    from ingest.mqtt import connect_session, send_pubacks

    # The parent decides when to stop (it must first commit and acknowledge what it took):
    # Ctrl-C or a SIGTERM to the process group must not cut the child off before that.
    # A parent that dies ends the child through end of file on the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = _Channel(socket.socket(fileno=fd))
    state = {"generation": 0, "paused": False}
    buf: list = []
    lock = threading.Lock()
    stop = threading.Event()

    def flush() -> None:
        nonlocal buf
        with lock:
            batch, buf = buf, []
        if batch:
            channel.send(["m", batch])  # blocks while the parent is busy: backpressure to the broker

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            channel.send(["c", False, f"connect refused: {reason_code}"])
            return
        state["generation"] += 1
        client.subscribe(config["subscription"], qos=1)
        channel.send(["c", True, f"session_present={flags.session_present}"])

    def on_disconnect(client, userdata, flags, reason_code, properties):
        channel.send(["c", False, str(reason_code)])

    def on_message(client, userdata, msg):
        if state["paused"]:
            return  # not acknowledged: the broker keeps it for the session
        with lock:
            buf.append((msg.mid if msg.qos else -1, state["generation"], msg.topic, msg.payload))
            full = len(buf) >= BATCH
        if full:
            flush()

    def flusher() -> None:
        while not stop.wait(FLUSH_S):
            flush()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config["client_id"], protocol=mqtt.MQTTv5,
                         manual_ack=True)
    client.on_connect, client.on_disconnect, client.on_message = on_connect, on_disconnect, on_message
    client.reconnect_delay_set(min_delay=0.2, max_delay=5)
    try:
        connect_session(client, config["host"], config["port"], config["session_expiry_s"])
    except UserError as exc:
        channel.send(["e", str(exc)])
        return
    threading.Thread(target=flusher, name="pulse-receiver-flush", daemon=True).start()
    try:
        while True:
            frame = channel.recv()
            if frame is None or frame[0] == "s":  # parent gone, or asked to stop
                break
            if frame[0] == "a":
                mids = [mid for mid, generation in frame[1] if generation == state["generation"] and mid >= 0]
                if mids:
                    send_pubacks(client, mids)
            elif frame[0] == "p":
                state["paused"] = True
    finally:
        stop.set()
        client.disconnect()
        client.loop_stop()


def main() -> None:  # python -m ingest.receiver FD CONFIG_JSON
    _child(int(sys.argv[1]), json.loads(sys.argv[2]))


# ------------------------------------------------------------------ the parent side


class ReceiverProcess:
    """Drop-in for :class:`ingest.mqtt.MqttIngest` whose paho loop runs in a child process.

    A child that dies is started again (same client id, so the same broker session and its
    unacknowledged messages); acks carry the child's epoch so none reaches the wrong child."""

    def __init__(self, url: str, pipeline, writer: BatchWriter, *, client_id: str, share_group: str,
                 topic_filter: str, session_expiry_s: int):
        from pulse.settings import parse_mqtt_url

        host, port = parse_mqtt_url(url)
        self.client_id = client_id
        self.pipeline = pipeline
        self.writer = writer
        self.config = {"host": host, "port": port, "client_id": client_id, "session_expiry_s": session_expiry_s,
                       "subscription": f"$share/{share_group}/{topic_filter}" if share_group else topic_filter}
        self.connected = threading.Event()
        self._epoch = 0
        self._channel: _Channel | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._status: tuple[str, str] | None = None  # the child's last report: ("c"|"e", detail)
        self._status_ready = threading.Event()

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        self._epoch += 1
        self._status_ready.clear()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.receiver", str(child.fileno()), json.dumps(self.config)],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, cwd=os.getcwd())
        child.close()
        self._channel = _Channel(parent)
        self._reader = threading.Thread(target=self._read, args=(self._channel, self._epoch),
                                        name="pulse-receiver-read", daemon=True)
        self._reader.start()

    def start(self) -> None:
        self._spawn()
        if not self._status_ready.wait(15):
            raise UserError(f"the MQTT receive process did not report within 15 s ({self.config['host']})")
        kind, detail = self._status
        if kind == "e":
            self.stop()
            raise UserError(detail)

    def _read(self, channel: _Channel, epoch: int) -> None:
        pipeline, writer = self.pipeline, self.writer
        while True:
            try:
                frame = channel.recv()
            except (OSError, ValueError, msgspec.DecodeError):
                frame = None
            if frame is None:
                break
            if frame[0] == "m":
                for mid, generation, topic, payload in frame[1]:
                    item = pipeline.from_mqtt(topic, payload)
                    if mid >= 0:
                        item.acker = self
                        item.ack_id = (epoch, mid, generation)
                    writer.submit(item)  # blocks while the queue is full: backpressure reaches the child
            elif frame[0] == "c":
                (self.connected.set if frame[1] else self.connected.clear)()
                metrics.MQTT_CONNECTED.set(1 if frame[1] else 0)
                log.info("mqtt connected" if frame[1] else "mqtt disconnected", detail=frame[2])
                self._status = ("c", frame[2])
                self._status_ready.set()
            elif frame[0] == "e":
                self._status = ("e", frame[1])
                self._status_ready.set()
                log.error("mqtt receive process failed", error=frame[1])
        self.connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        if not self._stopping and epoch == self._epoch and (self._status is None or self._status[0] != "e"):
            log.error("mqtt receive process exited; starting it again")
            time.sleep(0.5)
            if not self._stopping:
                self._spawn()

    def ack_many(self, ids: list[tuple[int, int, int]]) -> None:
        epoch, channel = self._epoch, self._channel
        acks = [(mid, generation) for e, mid, generation in ids if e == epoch]
        if acks:
            self._tell(channel, ["a", acks])

    def _tell(self, channel: _Channel | None, frame: list) -> None:
        if channel is not None:
            try:
                channel.send(frame)
            except OSError:
                pass  # the child is gone: the broker redelivers what it had, the writer deduplicates

    def pause(self) -> None:
        self._stopping = True
        self._tell(self._channel, ["p"])

    def stop(self) -> None:
        self._stopping = True
        self._tell(self._channel, ["s"])
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._channel is not None:
            self._channel.sock.close()
        if self._reader is not None:
            self._reader.join(5)
        self.connected.clear()


if __name__ == "__main__":
    main()
