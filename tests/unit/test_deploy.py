"""The deployment files in deploy/ checked offline: Kubernetes manifests against the API schemas
(kubernetes-validate) and against each other, the container build file, the systemd unit and HAProxy configs.
Arguments are parsed by privproxy's own command-line parser, so a renamed flag breaks the test, not a rollout."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from privproxy import policy
from privproxy.cli import build_parser
from tests.helpers import REPO
from tests.tools import require

K8S = REPO / "deploy" / "kubernetes"
K8S_VERSION = "1.33.0"  # the oldest API the manifests promise to work with (native preStop sleep: 1.30+)

# The part of the Prometheus Operator's PodMonitor API (monitoring.coreos.com/v1) the manifest uses.
PODMONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {
                    "type": "object", "additionalProperties": {"type": "string"}}}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scheme": {"enum": ["http", "https"]}}}},
            },
        },
    },
}


# The part of the Prometheus Operator's PrometheusRule API (monitoring.coreos.com/v1) the manifest uses, as the
# operator's CRD declares it (example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml, v0.82),
# stricter in one way: a field the CRD does not know is an error here, where the API server would silently prune it.
DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUSRULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"labels": STRINGS}},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["groups"],
            "properties": {"groups": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"],
                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                        "properties": {
                            "alert": {"type": "string"}, "record": {"type": "string"},
                            "expr": {"type": ["string", "integer"]},
                            "for": {"type": "string", "pattern": DURATION},
                            "keep_firing_for": {"type": "string", "minLength": 1, "pattern": DURATION},
                            "labels": STRINGS, "annotations": STRINGS,
                        }}},
                }}}},
        },
    },
}
RULES_FILE = REPO / "dashboards" / "alerts" / "privproxy.rules.yml"


def manifests() -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def run_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_manifest_validates_against_the_kubernetes_api():
    docs = manifests()
    assert set(docs) == {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                         "PodDisruptionBudget", "PodMonitor", "PrometheusRule"}
    for kind, doc in docs.items():
        if kind == "PodMonitor":
            jsonschema.validate(doc, PODMONITOR)
        elif kind == "PrometheusRule":
            jsonschema.validate(doc, PROMETHEUSRULE)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_validator_catches_a_broken_manifest():
    # the check above can fail: a misspelt field is refused under strict validation
    dep = manifests()["Deployment"]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_manifests_agree_with_each_other_and_with_privproxy():
    docs = manifests()
    dep, svc, hpa, pdb, pm, cm, secret = (docs[k] for k in (
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodMonitor", "ConfigMap",
        "Secret"))
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (dep["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"], pm["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep["metadata"]["name"]}
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    assert "metrics" not in {p["targetPort"] for p in svc["spec"]["ports"]}  # C15: metrics are not public
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}

    # the container's arguments are ones `privproxy` accepts, and point where the volumes are mounted
    args = run_args([a.replace("$(POD_NAME)", "privproxy-abc12") for a in c["args"]])
    assert args.func.__module__ == "privproxy.cli.run"
    assert args.require_secrets and args.instance == "privproxy-abc12"
    assert int(args.metrics.rsplit(":", 1)[1]) == ports["metrics"]
    assert int(args.listen[0].rsplit(":", 1)[1]) == ports["https"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(mounts) == set(volumes)
    assert args.config == mounts["config"] + "/filters.yaml"
    assert not any("subPath" in m for m in c["volumeMounts"])  # subPath mounts never see ConfigMap updates
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    # cert-manager's Secret as it is: its keys tls.crt and tls.key, mounted whole (kubelet updates reach the pod)
    assert args.cert == [mounts["tls"] + "/tls.crt"] and args.key == [mounts["tls"] + "/tls.key"]
    assert volumes["tls"]["secret"]["secretName"] and volumes["tls"]["secret"]["defaultMode"] == 0o440
    assert args.log_dir == mounts["logs"] and args.confdir.startswith(mounts["tmp"])
    assert c["securityContext"]["readOnlyRootFilesystem"] is True  # so every written path is a volume
    assert c["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]

    # the ConfigMap carries the shipped rules, which load, and the Secret names the variables they read
    assert cm["data"]["filters.yaml"] == (REPO / "filters.yaml").read_text(), "run scripts/sync-deploy"
    tmp = K8S / "configmap.yaml"
    p = policy.from_text(cm["data"]["filters.yaml"], str(tmp))
    wanted = {p.pseudonyms.secret_env, *(k.env for k in p.consent.keys)}
    assert wanted == set(secret["stringData"])
    assert all(v == "" for v in secret["stringData"].values())  # no usable key is shipped


def test_the_prometheusrule_is_the_alert_rules_file(tmp_path):
    rule = manifests()["PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text()), "run scripts/sync-deploy"
    assert rule["metadata"]["labels"].items() <= manifests()["Deployment"]["metadata"]["labels"].items()
    # what the operator hands Prometheus is a rule file of these groups: promtool checks it as Prometheus would
    promtool = require("promtool", "prometheus")
    embedded = tmp_path / "embedded.rules.yml"
    embedded.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([promtool, "check", "rules", str(embedded)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_scripts_sync_deploy_writes_what_is_shipped(tmp_path):
    for rel in ("scripts/sync-deploy", "filters.yaml", "dashboards/alerts/privproxy.rules.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    subprocess.run(["bash", str(tmp_path / "scripts" / "sync-deploy")], check=True, capture_output=True, timeout=30)
    for name in ("configmap.yaml", "prometheusrule.yaml"):
        assert (tmp_path / "deploy" / "kubernetes" / name).read_text() == (K8S / name).read_text(), \
            f"deploy/kubernetes/{name} is stale: run scripts/sync-deploy"


@pytest.mark.parametrize("broken", [
    lambda r: r["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}),
    lambda r: r["spec"]["groups"][0]["rules"][0].update({"annotation": {}}),  # misspelt: the API would drop it
    lambda r: r["spec"]["groups"][0].pop("name"),
    lambda r: r["spec"]["groups"][0]["rules"][0]["labels"].update({"severity": 1}),
    lambda r: r["spec"]["groups"][0]["rules"][0].update({"record": "x"}),  # alert and record
])
def test_the_prometheusrule_schema_catches_a_broken_rule(broken):
    rule = manifests()["PrometheusRule"]
    broken(rule)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, PROMETHEUSRULE)


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"] if "alert" in r]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_every_alert_waits_and_links_its_runbook_in_the_readme():
    readme = (REPO / "README.md").read_text()
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", readme, re.M)}
    rules = alert_rules()
    assert len(rules) >= 14
    for rule in rules:
        assert "for" in rule and re.fullmatch(r"[0-9]+[smhd]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "README.md" and anchor == rule["alert"].lower(), url
        assert anchor in anchors, f"{url}: README.md has no such section"
    wanted = {"PrivproxyCertificateExpiringSoon", "PrivproxyHigh5xxShare", "PrivproxyUpstreamSlow",
              "PrivproxyReportOnlyMode", "PrivproxyPseudonymKeyEphemeral", "PrivproxyScrapeMissing"}
    assert wanted <= {r["alert"] for r in rules}


def test_no_rule_depends_on_the_scrape_job_name():
    """The Prometheus Operator names the job of the shipped PodMonitor `<namespace>/<name>`; a static scrape config
    names it as the operator likes. Rules may group by job, never select one."""
    pm = manifests()["PodMonitor"]
    assert "jobLabel" not in pm["spec"]  # so the job is `<namespace>/privproxy`: the e2e test scrapes it so too
    for rule in alert_rules():
        assert not re.search(r"\bjob\s*(=|!=|=~|!~)", rule["expr"]), rule["alert"]
        assert "job=" not in rule["expr"].replace(" ", ""), rule["alert"]


def test_container_file_copies_what_exists_and_runs_privproxy_commands():
    text = (REPO / "deploy" / "Containerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (REPO / src).exists(), src
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", text, re.M).group(1))
    assert entry == ["privproxy"]
    args = run_args(cmd)
    assert args.func.__module__ == "privproxy.cli.demo" and args.listen == ["0.0.0.0:8443"]
    assert re.search(r"^USER 10001", text, re.M)  # never root
    assert "privproxy check filters.yaml" in text  # the build refuses invalid shipped rules


def unit_exec_start(unit: str, instance: str, env: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: %i, ${VAR} as one word, $VAR split on whitespace."""
    line = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    words = []
    for w in shlex.split(line.replace("%i", instance)):
        if m := re.fullmatch(r"\$(\w+)", w):
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w))
    return words


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_systemd_unit_verifies_and_its_command_line_parses(tmp_path):
    unit = (REPO / "deploy" / "systemd" / "privproxy@.service").read_text()
    words = unit_exec_start(unit, "web-1", env_file(REPO / "deploy" / "systemd" / "web-1.env"))
    assert words[0] == "/opt/privproxy/bin/privproxy"
    args = run_args(words[1:])
    assert args.instance == "web-1" and args.require_secrets and args.trusted_proxy == ["127.0.0.1/32"]
    assert args.log_dir == "/var/log/privproxy/web-1"
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                   "KillSignal=SIGTERM", "LogsDirectory=privproxy/%i", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert option in unit
    analyze = require("systemd-analyze", "systemd")
    exe = shutil.which("privproxy") or str(Path(__import__("sys").executable).with_name("privproxy"))
    local = tmp_path / "privproxy@.service"
    local.write_text(unit.replace("/opt/privproxy/bin/privproxy", exe))
    r = subprocess.run([analyze, "verify", str(tmp_path / "privproxy@web-1.service")], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr  # unknown keys are only warnings: none allowed
    local.write_text(unit.replace("/opt/privproxy/bin/privproxy", exe).replace("UMask=0027", "UMask=0027\nBogus=1"))
    r = subprocess.run([analyze, "verify", str(tmp_path / "privproxy@web-1.service")], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert "Bogus" in r.stderr  # and the check above would have seen it


@pytest.mark.parametrize("name", ["haproxy.cfg", "haproxy-tls-passthrough.cfg"])
def test_haproxy_configs_are_valid(tmp_path, name):
    exe = require("haproxy", "haproxy")
    text = (REPO / "deploy" / "haproxy" / name).read_text()
    pem = tmp_path / "combined.pem"
    from tests.certs import make_self_signed
    make_self_signed(pem, "localhost")
    cfg = tmp_path / name
    cfg.write_text(text.replace("/etc/haproxy/certs/combined.pem", str(pem)))
    r = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # instances of the systemd example env file are the servers HAProxy balances to
    env = env_file(REPO / "deploy" / "systemd" / "web-1.env")
    if name == "haproxy.cfg":
        assert f"server web-1 {env['PRIVPROXY_LISTEN']} check port {env['PRIVPROXY_METRICS'].rsplit(':', 1)[1]}" \
            in text


def readme_section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(title)
    return readme[start:readme.index("\n## ", start)]


def test_the_readme_recipe_for_shared_linked_logs_is_valid_and_fits_the_deployment():
    """README, Member consent: a ReadWriteMany claim, a directory per pod, one dsr request over all of them."""
    recipe = readme_section("**Kubernetes: where linked logs live.**")
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", recipe, re.S)]
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"PersistentVolumeClaim", "CronJob"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pvc = by_kind["PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # the two edits the recipe describes, applied to the shipped Deployment: still valid, and what privproxy accepts
    dep = manifests()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (logs,) = [v for v in pod["volumes"] if v["name"] == "logs"]
    logs.pop("emptyDir")
    logs["persistentVolumeClaim"] = {"claimName": pvc["metadata"]["name"]}
    c = pod["containers"][0]
    assert "--log-dir=/var/log/privproxy" in c["args"]
    c["args"] = ["--log-dir=/var/log/privproxy/$(POD_NAME)" if a == "--log-dir=/var/log/privproxy" else a
                 for a in c["args"]]
    assert "`--log-dir=/var/log/privproxy` becomes `--log-dir=/var/log/privproxy/$(POD_NAME)`" in recipe
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    args = run_args([a.replace("$(POD_NAME)", "privproxy-7d9f-abc12") for a in c["args"]])
    assert args.log_dir == "/var/log/privproxy/privproxy-7d9f-abc12"
    assert any(e["name"] == "POD_NAME" for e in c["env"])
    # the commands given parse, and cover every pod's directory through the pattern
    commands = re.findall(r"^kubectl exec deploy/privproxy -- (privproxy dsr [^\n>]*)", recipe.replace("\\\n", " "),
                          re.M)
    assert len(commands) == 2
    for cmd in commands:
        words = shlex.split(cmd)
        dsr_args = run_args(words[1:])
        assert dsr_args.log_dir == ["/var/log/privproxy/*"] and dsr_args.config == args.config
    cron = by_kind["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
