"""The container image is built and run, not only read (issue 20 item 8): `scripts/build-image --local-base`
builds deploy/Containerfile on a Debian base bootstrapped here (no container registry is reachable), and podman
runs it as the Kubernetes Deployment says: the image's ENTRYPOINT with the Deployment's args, its securityContext
(the image's own non-root user, read-only root, no capabilities) and its volumes, in front of a real origin on
loopback for a real TLS client (host networking, so nothing but loopback is used)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import tomllib

import pytest

from tests.certs import Authority
from tests.helpers import REPO, Origin, free_port, http_status, request, tls_context
from tests.tools import require
from tests.unit.test_deploy import manifests, run_args

# a cold build bootstraps Debian and builds the wheels (minutes); later ones reuse both (scripts/build-image)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

# What podman needs on machines like this one (a VM without systemd whose hard limits podman may not raise):
# runc, cgroupfs, and no default ulimits. Given through CONTAINERS_CONF, so no file of the system is changed.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> str:
    r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {r.returncode}\n{r.stderr[-4000:]}")
    return r.stdout


def containerfile(instruction: str) -> list[str]:
    """An exec-form (JSON) instruction of deploy/Containerfile."""
    text = (REPO / "deploy" / "Containerfile").read_text()
    return json.loads(re.search(rf"^{instruction} (\[.+\])$", text, re.M).group(1))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    require("podman", "podman")
    require("runc", "runc")
    require("mmdebstrap", "mmdebstrap")
    if os.geteuid() != 0:
        require("newuidmap", "uidmap")  # mmdebstrap's unshare mode and rootless podman map ids with it
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture(scope="module")
def image(engine, tmp_path_factory):
    tag = f"localhost/privproxy-test:{secrets.token_hex(4)}"
    out = tmp_path_factory.mktemp("build") / "build.txt"
    with out.open("wb") as f:
        rc = subprocess.run([str(REPO / "scripts" / "build-image"), "--local-base", tag], env=engine,
                            stdout=f, stderr=subprocess.STDOUT, timeout=1400).returncode
    assert rc == 0, out.read_text(errors="replace")[-6000:]
    yield tag
    podman(engine, "rmi", "--force", tag, check=False)


@pytest.fixture
def origin_app():
    o = Origin(responses={"/account": (200, [("Set-Cookie", "session=abc; Path=/; HttpOnly")], b"account page")})
    yield o
    o.close()


def logs(env: dict[str, str], name: str) -> str:
    r = subprocess.run(["podman", "logs", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    return r.stdout[-6000:]


def test_the_image_runs_the_deployment_as_written(engine, image, origin_app, tmp_path):
    docs = manifests()
    dep, cm, secret = docs["Deployment"], docs["ConfigMap"], docs["Secret"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    config = json.loads(podman(engine, "image", "inspect", image))[0]["Config"]

    # the image is deploy/Containerfile's, and the Deployment runs its ENTRYPOINT with args in place of its CMD
    assert config["Entrypoint"] == containerfile("ENTRYPOINT") == ["privproxy"]
    assert config["Cmd"] == containerfile("CMD")
    assert "command" not in c, "the Deployment would replace the image's ENTRYPOINT"
    assert run_args(containerfile("CMD")).func.__module__ == "privproxy.cli.demo"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert c["image"].rsplit(":", 1)[1] == version  # the manifest names the release the image is built from
    # the image's own user is the one the pod's securityContext asks for, and not root
    user, group = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    assert config["User"] == f"{user}:{group}" and user != 0

    # the container's environment as the kubelet makes it: the downward API and the Secret's variables
    pod_name = "privproxy-7f9c4-x2k8q"
    assert c["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    env = {key: secrets.token_hex(32) for key in secret["stringData"]}
    for e in c.get("env", []):  # env wins over envFrom, as in Kubernetes
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            assert e["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, e
            env[e["name"]] = pod_name

    # the args as written, with $(VAR) expanded and only the addresses moved onto loopback
    https, metrics = free_port(), free_port()
    moved = {"--listen": f"127.0.0.1:{https}", "--metrics": f"127.0.0.1:{metrics}", "--upstream": origin_app.url}
    args, seen = [], set()
    for a in c["args"]:
        a = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)
        flag = a.split("=", 1)[0]
        if flag in moved:
            a, seen = f"{flag}={moved[flag]}", seen | {flag}
        args.append(a)
    assert seen == set(moved), "the Deployment's args no longer carry --listen=, --metrics= and --upstream="

    # the volumes: the ConfigMap's files, the TLS Secret's tls.crt/tls.key, emptyDirs as empty host directories
    authority = Authority()
    ca = authority.root_pem(tmp_path / "root.pem")
    volumes = {v["name"]: v for v in pod["volumes"]}
    run = ["run", "--detach", "--network=host", "--name", f"privproxy-test-{secrets.token_hex(4)}"]
    for m in c["volumeMounts"]:
        host = tmp_path / "volumes" / m["name"]
        host.mkdir(parents=True)
        v = volumes[m["name"]]
        if "configMap" in v:
            for key, text in cm["data"].items():
                (host / key).write_text(text)
        elif "secret" in v:
            authority.issue("localhost").write(host / "tls.crt", host / "tls.key")
            for f in host.iterdir():
                f.chmod(v["secret"]["defaultMode"])
        else:
            assert "emptyDir" in v, m["name"]
        # U: owned by the container's user, as fsGroup makes the pod's volumes its group's
        run += ["--volume", f"{host}:{m['mountPath']}:{'ro,' if m.get('readOnly') else ''}U"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    run += ["--read-only", "--read-only-tmpfs=false",  # no tmpfs podman would add: only the volumes are writable
            "--cap-drop=all", "--security-opt=no-new-privileges"]
    for k, v in env.items():
        run += ["--env", f"{k}={v}"]
    name = run[run.index("--name") + 1]

    podman(engine, *run, image, *args)
    try:
        # the Deployment's own readiness probe, on its metrics port
        probe = c["readinessProbe"]["httpGet"]
        assert probe["port"] == "metrics"
        deadline = time.monotonic() + 60
        while http_status(f"http://127.0.0.1:{metrics}{probe['path']}") != 200:
            running = podman(engine, "inspect", "--format", "{{.State.Running}}", name).strip()
            if running != "true" or time.monotonic() > deadline:
                pytest.fail("the container did not become ready:\n" + logs(engine, name))
            time.sleep(0.2)

        # runs as the image's non-root user, without capabilities
        status_lines = podman(engine, "exec", name, "cat", "/proc/1/status")
        uids = re.search(r"^Uid:\s+(.+)$", status_lines, re.M).group(1).split()
        gids = re.search(r"^Gid:\s+(.+)$", status_lines, re.M).group(1).split()
        assert uids == [str(user)] * 4 and gids == [str(group)] * 4
        assert re.search(r"^CapEff:\s+0+$", status_lines, re.M)
        assert "privproxy" in podman(engine, "exec", name, "cat", "/proc/1/cmdline")

        # the root filesystem is read-only: only the volumes are written
        for path in ("/opt/privproxy/x", "/etc/privproxy/x", "/var/log/privproxy-x"):
            r = subprocess.run(["podman", "exec", name, "python3", "-c", f"open({path!r}, 'w')"], env=engine,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r.stderr)

        # HTTPS with HSTS for a real TLS client, to the real origin, which sees the visitor's address truncated
        tls = tls_context(ca)
        r = request(https, "/account?gclid=click-123&page=2", tls=tls, headers={"Accept": "text/html"})
        assert r.status == 200 and r.body == b"account page"
        hsts = r.header("strict-transport-security")
        assert hsts and int(re.match(r"max-age=(\d+)", hsts).group(1)) >= 31536000
        assert "secure" in r.header("set-cookie").lower()
        seen_by_origin = origin_app.last()
        assert seen_by_origin.path.startswith("/account?")
        assert seen_by_origin.headers["x-forwarded-for"] == ["127.9.8.0"]
        # plain HTTP on the same port only redirects to HTTPS, and never reaches the origin
        before = len(origin_app.requests)
        r = request(https, "/account")
        assert r.status in (301, 308) and r.header("location").startswith("https://")
        assert len(origin_app.requests) == before

        # SIGTERM (what the kubelet sends) stops it cleanly, and the access log in the logs volume is complete
        podman(engine, "stop", "--time", str(pod["terminationGracePeriodSeconds"]), name, timeout=90)
        assert podman(engine, "inspect", "--format", "{{.State.ExitCode}}", name).strip() == "0"
        log_dir = run_args(args).log_dir
        host_logs = next(tmp_path / "volumes" / m["name"] for m in c["volumeMounts"] if m["mountPath"] == log_dir)
        records = [json.loads(line) for line in (host_logs / "access.jsonl").read_text().splitlines()]
        assert [r["instance"] for r in records] == [pod_name, pod_name]
        assert {r["client"] for r in records} == {"127.9.8.0"}
        assert not any("click-123" in json.dumps(r) for r in records)
    finally:
        podman(engine, "rm", "--force", name, check=False)


def test_the_local_base_is_debians_and_the_image_checks_its_shipped_rules(engine, image):
    run = ["podman", "run", "--rm", "--network=none", "--read-only"]
    # --local-base: Debian trixie, and privproxy's interpreter is the one of Debian's python3 package
    script = '. /etc/os-release && echo "$VERSION_CODENAME" && dpkg -S "$(readlink -f "$(command -v python3)")"'
    out = subprocess.run([*run, "--entrypoint", "sh", image, "-c", script], env=engine, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    codename, owner = out.stdout.splitlines()
    assert codename == "trixie" and re.fullmatch(r"python3\.\d+-minimal(:\w+)?: /usr/bin/python3\.\d+", owner)
    # the entrypoint is privproxy, and the image's shipped rules load (the build refuses otherwise too)
    out = subprocess.run([*run, image, "check", "/etc/privproxy/filters.yaml"], env=engine, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "/etc/privproxy/filters.yaml: OK" in out.stdout + out.stderr
