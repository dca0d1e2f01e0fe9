"""Debian's pebble (a test ACME CA) and pebble-challtestsrv (its DNS, answering every name with 127.0.0.1), on
loopback, validating for real: HTTP-01 and TLS-ALPN-01 go to `validation_port` on 127.0.0.1, where the test's
privproxy listens. No PEBBLE_VA_ALWAYS_VALID; PEBBLE_VA_NOSLEEP only skips pebble's random 0-15 s wait before it
validates."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.certs import Authority
from tests.helpers import free_port, stop_process
from tests.tools import require


class Pebble:
    """`start=False`: the directory URL and the CA file for --acme-ca are known, pebble starts with `start()`."""

    def __init__(self, tmp: Path, validation_port: int, validity: int | None = None, env: dict[str, str] | None = None,
                 start: bool = True) -> None:
        self._pebble = require("pebble", "pebble")
        self._challtestsrv = require("pebble-challtestsrv", "pebble")
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        # pebble's own HTTPS certificate, from a CA of the test's: privproxy trusts it with --acme-ca
        self.tls_ca = Authority("pebble-tls")
        issued = self.tls_ca.issue("localhost")
        issued.write(tmp / "pebble-cert.pem", tmp / "pebble-key.pem")
        self.ca_file = self.tls_ca.root_pem(tmp / "pebble-tls-root.pem")
        self.port, self.management, dns, dns_management = free_port(), free_port(), free_port(), free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(tmp / "pebble-cert.pem"), "privateKey": str(tmp / "pebble-key.pem"),
            "httpPort": validation_port, "tlsPort": validation_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        if validity is not None:
            config["pebble"]["certificateValidityPeriod"] = validity
        (tmp / "pebble.json").write_text(json.dumps(config))
        self.dns_log, self.log_path = tmp / "challtestsrv.log", tmp / "pebble.log"
        self.directory = f"https://localhost:{self.port}/dir"
        self.root = tmp / "pebble-root.pem"  # the root pebble issues under (new at every start)
        self._dns_ports, self._env = (dns, dns_management), env
        self.proc: subprocess.Popen[bytes] | None = None
        self.dns: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        dns, dns_management = self._dns_ports
        # challtestsrv only as the DNS server: its own challenge servers off, IPv4 loopback for every name, no AAAA
        self.dns = subprocess.Popen(
            [self._challtestsrv, "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{dns_management}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=open(self.dns_log, "wb"), stderr=subprocess.STDOUT)
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", **(self._env or {})}
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
        self.proc = subprocess.Popen(
            [self._pebble, "-config", str(self.tmp / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        self._wait()
        self.root.write_bytes(self.get("/roots/0"))

    def _wait(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited:\n{self.log()}")
            try:
                urllib.request.urlopen(self.directory, context=self.tls(), timeout=2).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pebble did not start:\n{self.log()}")

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def get(self, path: str) -> bytes:
        url = f"https://localhost:{self.management}{path}"
        return urllib.request.urlopen(url, context=self.tls(), timeout=5).read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def validations(self) -> list[str]:
        """The challenges pebble validated (its log lines `authz ... set VALID by completed challenge ...`)."""
        return re.findall(r"authz \S+ set VALID by completed challenge (\S+)", self.log())

    def stop(self) -> None:
        for p in (self.proc, self.dns):
            if p is not None:
                stop_process(p, 5)
