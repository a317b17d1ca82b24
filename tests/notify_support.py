"""What the Alertmanager tests share: a recording HTTP receiver standing in for the webhooks and
WeCom, the repository's Alertmanager config with shortened timings, a real Alertmanager run by
``scripts/services.sh`` (a single instance or a member of an HA cluster), and a publisher to the
``alerts`` topic."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT, free_port

AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SERVICES = ROOT / "scripts" / "services.sh"
LEASE = {"SPCWATCH_ALERTMANAGER_RESEND_SECONDS": "1", "SPCWATCH_ALERTMANAGER_LEASE_SECONDS": "120"}
"""Re-sent every second; a lease longer than a SIGKILLed member's session timeout (the restart's rebalance)."""


class Receiver:
    """Records every POST (path, JSON); answers like WeCom's robot and application APIs."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # WeCom application API: the access token first
                self._answer({"errcode": 0, "errmsg": "ok", "access_token": "test-token", "expires_in": 7200})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.posts.append((self.path, json.loads(body)))
                self._answer({"errcode": 0, "errmsg": "ok"})

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, prefix: str) -> list[Any]:
        with self.lock:
            return [body for path, body in self.posts if path.startswith(prefix)]

    def webhook_alerts(self, receiver: str) -> list[dict[str, Any]]:
        """Every alert of every Alertmanager webhook notification to ``receiver``."""
        return [a for body in self.of(f"/am/{receiver}") for a in body["alerts"]]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60.0, debug: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{debug()}", pytrace=False)


def am_test_config(receiver_port: int, bridge_port: int) -> str:
    """The repository's config, timings shortened; each webhook goes to the recording receiver
    and to the bridge; WeCom's application API is the receiver too."""
    text = AM_CONFIG.read_text()
    text = text.replace("group_wait: 30s", "group_wait: 200ms").replace("group_interval: 5m", "group_interval: 1s")
    text = text.replace("https://qyapi.weixin.qq.com/cgi-bin/", f"http://127.0.0.1:{receiver_port}/cgi-bin/")
    text = text.replace("templates/*.tmpl", str(AM_CONFIG.parent / "templates" / "*.tmpl"))
    text, n = re.subn(
        r'( +)- url: "http://127\.0\.0\.1:9097/robot/([a-z-]+)"\n((?:\1  .*\n)*)',
        lambda m: (f'{m[1]}- url: "http://127.0.0.1:{receiver_port}/am/{m[2]}"\n{m[3]}'
                   f'{m[1]}- url: "http://127.0.0.1:{bridge_port}/robot/{m[2]}"\n{m[3]}'), text)
    assert n == 10, "every receiver of deploy/alertmanager/alertmanager.yml has one bridge webhook"
    return text


class Alertmanager:
    """A real Alertmanager run by ``scripts/services.sh up alertmanager`` in a run dir of its own;
    with ``cluster_port`` a member of an HA cluster gossiping with ``peers`` (their gossip addresses)."""

    def __init__(self, run_dir: Path, config: Path, cluster_port: int | None = None,
                 peers: tuple[str, ...] = (), args: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gossip = f"127.0.0.1:{cluster_port}" if cluster_port else ""
        self.env = {**os.environ, "SPCWATCH_RUN_DIR": str(run_dir), "SPCWATCH_ALERTMANAGER_PORT": str(self.port),
                    "SPCWATCH_ALERTMANAGER_CONFIG": str(config),
                    "SPCWATCH_ALERTMANAGER_CLUSTER_PORT": str(cluster_port or ""),
                    "SPCWATCH_ALERTMANAGER_PEERS": ",".join(peers), "SPCWATCH_ALERTMANAGER_ARGS": args}

    def services(self, command: str) -> str:
        done = subprocess.run([str(SERVICES), command, "alertmanager"], env=self.env, capture_output=True,
                              text=True, timeout=90)
        assert done.returncode == 0, f"services.sh {command} alertmanager:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def api(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/v2{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self.api(f"/alerts?filter=alert_id%3D%22{alert_id}%22")
        return found[0] if found else None


def publish(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(topic, orjson.dumps(event), key=event["alert_id"].encode())
        finally:
            await producer.stop()

    asyncio.run(run())
