"""`otel-llm analyze` as a real process: starts, serves OTLP on loopback, stops cleanly on SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
from otel_llm.processors.rca import generate_case

from otel_llm.analyze import decode_traces, records_to_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_analyze_command_serves_and_stops(tmp_path):
    port = _free_port()
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from otel_llm.cli import main; main()", "analyze", "--http", f"127.0.0.1:{port}", "--grpc", "none",
         "--no-detectors", "--no-console", "--gpu-source", "sim", "--token-file", str(token), "--jsonl", str(tmp_path / "inc.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stderr.read() if proc.poll() is not None else "did not start")
        body = decode_traces(__import__("json").dumps(records_to_json(generate_case(1, traces=3).spans)).encode(),
                             json_payload=True).SerializeToString()
        url = f"http://127.0.0.1:{port}/v1/traces"
        headers = {"content-type": "application/x-protobuf"}
        assert httpx.post(url, content=body, headers=headers).status_code == 401
        assert httpx.post(url, content=body, headers={**headers, "authorization": "Bearer t0ken"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, 130), err  # 130: uvicorn re-raises SIGINT after a clean shutdown
    assert "t0ken" not in err and "OTLP/HTTP 127.0.0.1" in err and "traces_accepted" in err


def test_analyze_command_rejects_bad_settings():
    proc = subprocess.run([sys.executable, "-c", "from otel_llm.cli import main; main()", "analyze", "--http", "4318"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "host:port" in proc.stderr
