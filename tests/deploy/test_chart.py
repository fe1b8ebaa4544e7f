"""The Helm chart: lint, render, validate against the Kubernetes API schemas, and check the
properties the chart promises (least privilege, probes, values passed through, one source of
truth for the config, the alerts and the dashboard)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.agent_process import pktpath_bin
from tests.deploy.conftest import DEPLOY, require_tool
from tests.deploy.helm import CHART, HelmError, Rendered, lint, template

# Non-default values touching every switch of values.yaml.
CUSTOM: dict[str, Any] = {
    "fullnameOverride": "pp",
    "image": {"repository": "registry.example/net/pktpath", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "config": {
        "metrics": {"listen": "[::]:9100"},
        "drops": {"max_series": 1048576},
        "probes": {"exclude": ["consume_skb"]},
        "filter": {
            "src": ["10.0.0.0/8"],
            "ports": [53, "8000-8080"],
            "protocols": ["tcp", 132],
            "interfaces": ["eth0"],
        },
        "sampling": {"one_in": 2147483647, "max_tracked": 1048576, "ring_buffer_kb": 4096},
        "kubernetes": {"pod_labels": True, "max_pods": 100000, "expire_seconds": 0},
        "logging": {"level": "debug", "format": "text"},
        "traces": {
            "exporter": "otlp",
            "endpoint": "http://${NODE_IP}:4317",
            "protocol": "grpc",
            "service_name": "pktpath-${NODE_NAME}",
        },
    },
    "otel": {
        "tracesExporter": "otlp",
        "endpoint": "http://$(NODE_IP):4318",
        "protocol": "http/protobuf",
        "serviceName": "pktpath-prod",
        "resourceAttributes": {"deployment.environment": "prod", "k8s.cluster.name": "edge-1"},
        "headersSecret": {"name": "otlp-auth", "key": "headers"},
    },
    "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_COMPRESSION", "value": "gzip"}],
    "capabilities": {"netnsInterfaceNames": False, "legacyKernel": True, "extra": ["SYS_PTRACE", "SYSLOG"]},
    "hostPID": True,
    "hostNetwork": True,
    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/pktpath.json"},
    "appArmorProfile": {"type": "Unconfined"},
    "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "probes": {
        "liveness": {"periodSeconds": 7},
        "readiness": {"failureThreshold": 9},
        "startup": {"failureThreshold": 11},
    },
    "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
    "nodeSelector": {"kubernetes.io/os": "linux", "net.example/pktpath": "yes"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
                        ]
                    }
                ]
            }
        }
    },
    "priorityClassName": "system-node-critical",
    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%"}},
    "terminationGracePeriodSeconds": 45,
    "podAnnotations": {"example.com/team": "network"},
    "podLabels": {"team": "network"},
    "serviceAccount": {"create": True, "name": "pktpath-agent", "annotations": {"example.com/sa": "yes"}},
    "service": {"headless": True, "port": 9100, "annotations": {"example.com/svc": "yes"}, "labels": {"tier": "obs"}},
    "serviceMonitor": {
        "enabled": True,
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus-stack"},
        "interval": "15s",
        "scrapeTimeout": "5s",
        "relabelings": [{"targetLabel": "cluster", "replacement": "edge-1"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
    },
    "prometheusRule": {
        "enabled": True,
        "labels": {"release": "kube-prometheus-stack"},
        "runbookBaseURL": "https://git.example.com/net/pktpath/blob/v0.1.0/",
    },
    "grafanaDashboard": {"enabled": True, "namespace": "grafana", "annotations": {"grafana_folder": "Network"}},
}

# Both ends of the range of Kubernetes releases the chart supports (Chart.yaml kubeVersion >= 1.25;
# appArmorProfile, set in CUSTOM, is a 1.30 field).
DEFAULT_KUBE_VERSIONS = ("1.25.0", "1.37.0")
CUSTOM_KUBE_VERSIONS = ("1.30.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def default() -> Rendered:
    return template()


@pytest.fixture(scope="module")
def custom() -> Rendered:
    return template(CUSTOM, release="edge", namespace="net-observability")


def container(r: Rendered) -> dict[str, Any]:
    containers = r.one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


# --- helm lint / template ------------------------------------------------------------------------


def test_lint_default_values() -> None:
    lint()


def test_lint_custom_values() -> None:
    lint(CUSTOM)


def test_default_renders_the_core_objects_only(default: Rendered) -> None:
    kinds = sorted(d["kind"] for d in default.docs)
    assert kinds == ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"]
    assert all(d["metadata"].get("namespace") in (None, "monitoring") for d in default.docs)


def test_custom_renders_the_optional_objects(custom: Rendered) -> None:
    kinds = sorted(d["kind"] for d in custom.docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "DaemonSet",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


# --- Kubernetes API schemas ------------------------------------------------------------------------


def kubernetes_validate(tmp_path: Path, r: Rendered, version: str) -> str:
    """`kubernetes-validate --strict` (unknown fields are errors) on the non-CRD objects."""
    manifest = tmp_path / f"rendered-{version}.yaml"
    manifest.write_text(r.yaml({d["kind"] for d in r.docs} - CRD_KINDS))
    cli = Path(sys.executable).with_name("kubernetes-validate")
    proc = subprocess.run([str(cli), "--strict", "-k", version, str(manifest)], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize("version", DEFAULT_KUBE_VERSIONS)
def test_default_objects_are_valid_kubernetes(tmp_path: Path, default: Rendered, version: str) -> None:
    out = kubernetes_validate(tmp_path, default, version)
    assert out.count("passed for resource") == len(default.docs), out


@pytest.mark.parametrize("version", CUSTOM_KUBE_VERSIONS)
def test_custom_objects_are_valid_kubernetes(tmp_path: Path, custom: Rendered, version: str) -> None:
    out = kubernetes_validate(tmp_path, custom, version)
    assert out.count("passed for resource") == len([d for d in custom.docs if d["kind"] not in CRD_KINDS]), out


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path, default: Rendered) -> None:
    """Control: the validation above would notice a misspelled field."""
    broken = copy.deepcopy(default)
    container(broken)["securityContext"]["privilegd"] = False
    with pytest.raises(AssertionError, match="privilegd"):
        kubernetes_validate(tmp_path, broken, "1.30.0")


# The CRDs' own schemas are not in kubernetes-validate; these check the structure the chart
# relies on (field names and types of monitoring.coreos.com/v1 that are used here).
RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
}
DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
OBJECT = ["apiVersion", "kind", "metadata", "spec"]
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": OBJECT,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": RELABEL},
                            "metricRelabelings": {"type": "array", "items": RELABEL},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": OBJECT,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": DURATION,
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def test_service_monitor_structure(custom: Rendered) -> None:
    sm, svc = custom.one("ServiceMonitor"), custom.one("Service")
    jsonschema.validate(sm, SERVICE_MONITOR)
    # It selects the chart's Service, by a port name and a job label the Service has.
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    assert {p["name"] for p in svc["spec"]["ports"]} >= {e["port"] for e in sm["spec"]["endpoints"]}
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "pktpath"  # job="pktpath", as the alerts expect
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = sm["spec"]["endpoints"][0]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    targets = [r.get("targetLabel") for r in endpoint["relabelings"]]
    assert targets[:3] == ["node", "agent_namespace", "agent_pod"]  # chart's own first, user's after
    assert {"action": "labeldrop", "regex": "namespace|pod"} in endpoint["relabelings"]
    assert endpoint["relabelings"][-1] == {"targetLabel": "cluster", "replacement": "edge-1"}
    assert endpoint["metricRelabelings"] == CUSTOM["serviceMonitor"]["metricRelabelings"]


def test_service_monitor_can_keep_target_pod_labels() -> None:
    values = {"serviceMonitor": {"enabled": True, "renameTargetPodLabels": False}}
    relabelings = template(values).one("ServiceMonitor")["spec"]["endpoints"][0]["relabelings"]
    assert [r["targetLabel"] for r in relabelings] == ["node"]


def test_prometheus_rule_is_alerts_yaml(tmp_path: Path, custom: Rendered) -> None:
    rule = custom.one("PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE)
    source = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    expected = json.loads(
        json.dumps(source).replace(
            'runbook_url": "docs/', 'runbook_url": "https://git.example.com/net/pktpath/blob/v0.1.0/docs/'
        )
    )
    assert rule["spec"] == expected
    # Prometheus' own check of the rule file the operator will generate from it.
    rules_file = tmp_path / "rule.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    promtool = require_tool("promtool", "prometheus")
    proc = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_rule_follows_the_job_name() -> None:
    """The ServiceMonitor names the job after the chart; `up` rules must select that name."""
    r = template(
        {"nameOverride": "dropwatch", "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
    )
    exprs = [rule["expr"] for g in r.one("PrometheusRule")["spec"]["groups"] for rule in g["rules"]]
    up_rules = [e for e in exprs if "up{" in e]
    assert up_rules and all('job="dropwatch"' in e for e in up_rules)
    assert r.one("Service")["metadata"]["labels"][r.one("ServiceMonitor")["spec"]["jobLabel"]] == "dropwatch"


def test_dashboard_configmap_is_the_dashboard(custom: Rendered) -> None:
    cms = [c for c in custom.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert len(cms) == 1
    cm = cms[0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Network"}
    assert json.loads(cm["data"]["pktpath.json"]) == json.loads((DEPLOY / "grafana" / "pktpath.json").read_text())


def test_chart_files_are_links_to_the_single_copies() -> None:
    for name, target in (
        ("alerts.yaml", DEPLOY / "prometheus" / "alerts.yaml"),
        ("pktpath.json", DEPLOY / "grafana" / "pktpath.json"),
    ):
        link = CHART / "files" / name
        assert link.is_symlink() and link.resolve() == target.resolve()
        assert not Path(os.readlink(link)).is_absolute()  # valid in any checkout


# --- least privilege -------------------------------------------------------------------------------


def test_default_security_context_is_least_privilege(default: Rendered) -> None:
    pod = default.one("DaemonSet")["spec"]["template"]["spec"]
    sc = container(default)["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == 0  # ambient capabilities do not exist in Kubernetes (values.yaml)
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"]}
    assert sc["seccompProfile"] == {"type": "Unconfined"}  # RuntimeDefault blocks bpf() on some runtimes
    assert "appArmorProfile" not in sc
    assert pod["hostPID"] is True and pod["hostNetwork"] is False
    assert "dnsPolicy" not in pod
    assert "securityContext" not in pod or not pod["securityContext"].get("privileged")


def test_capability_switches(custom: Rendered) -> None:
    # legacyKernel, pod labels (SYS_PTRACE) and extra, each capability once.
    assert container(custom)["securityContext"]["capabilities"]["add"] == [
        "BPF",
        "PERFMON",
        "NET_ADMIN",
        "SYS_ADMIN",
        "SYS_RESOURCE",
        "SYS_PTRACE",
        "SYSLOG",
    ]
    minimal = template({"capabilities": {"netnsInterfaceNames": False}})
    assert container(minimal)["securityContext"]["capabilities"]["add"] == ["BPF", "PERFMON", "NET_ADMIN"]
    pods = template({"config": {"kubernetes": {"pod_labels": True}}})
    assert container(pods)["securityContext"]["capabilities"]["add"] == [
        "BPF",
        "PERFMON",
        "NET_ADMIN",
        "SYS_ADMIN",
        "SYS_PTRACE",
    ]


def test_host_mounts_are_read_only_and_minimal(default: Rendered) -> None:
    pod = default.one("DaemonSet")["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert {h["path"] for h in host_paths.values()} == {"/sys/kernel/btf", "/run/netns"}
    mounts = {m["name"]: m for m in container(default)["volumeMounts"]}
    for name in host_paths:
        assert mounts[name]["readOnly"] is True, name
    # New pods' namespaces are mounts made after the agent started: they must propagate in.
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"
    assert mounts["config"]["readOnly"] is True and mounts["config"]["mountPath"] == "/etc/pktpath"


def test_custom_security_settings(custom: Rendered) -> None:
    pod = custom.one("DaemonSet")["spec"]["template"]["spec"]
    sc = container(custom)["securityContext"]
    assert sc["seccompProfile"] == CUSTOM["seccompProfile"]
    assert sc["appArmorProfile"] == CUSTOM["appArmorProfile"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"


# --- values passed through --------------------------------------------------------------------------


def test_probes_ports_and_service(default: Rendered, custom: Rendered) -> None:
    for r, port, svc_port in ((default, 9977, 9977), (custom, 9100, 9100)):
        c = container(r)
        assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        svc = r.one("Service")["spec"]
        assert svc["ports"] == [{"name": "metrics", "port": svc_port, "targetPort": "metrics", "protocol": "TCP"}]
        assert svc["selector"] == r.one("DaemonSet")["spec"]["selector"]["matchLabels"]
        assert c["command"] == ["pktpath", "run", "-c", "/etc/pktpath/config.yaml"]
    assert "clusterIP" not in default.one("Service")["spec"]
    assert custom.one("Service")["spec"]["clusterIP"] == "None"
    assert container(custom)["livenessProbe"]["periodSeconds"] == 7
    assert container(custom)["readinessProbe"]["failureThreshold"] == 9
    assert container(custom)["startupProbe"]["failureThreshold"] == 11


def test_scheduling_values(default: Rendered, custom: Rendered) -> None:
    d = default.one("DaemonSet")["spec"]
    assert d["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert d["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert "priorityClassName" not in d["template"]["spec"]
    assert d["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    c = custom.one("DaemonSet")["spec"]
    pod = c["template"]["spec"]
    for key in ("tolerations", "nodeSelector", "affinity", "priorityClassName", "terminationGracePeriodSeconds"):
        assert pod[key] == CUSTOM[key], key
    assert c["updateStrategy"] == CUSTOM["updateStrategy"]
    assert container(custom)["resources"] == CUSTOM["resources"]
    assert container(custom)["image"] == "registry.example/net/pktpath@sha256:" + "a" * 64
    assert container(custom)["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "pktpath-agent"
    assert c["template"]["metadata"]["labels"]["team"] == "network"
    assert c["template"]["metadata"]["annotations"]["example.com/team"] == "network"
    assert container(default)["image"] == "pktpath:0.1.0"


def test_otel_environment(default: Rendered, custom: Rendered) -> None:
    env = env_of(container(default))
    assert {k for k in env if k.startswith("OTEL_")} == {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
    # The node, not the agent's pod: k8s.pod.name on a span names the packet's pod.
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "host.name=$(NODE_NAME),k8s.node.name=$(NODE_NAME)"
    env = env_of(container(custom))
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://$(NODE_IP):4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_SERVICE_NAME"] == "pktpath-prod"
    assert env["OTEL_RESOURCE_ATTRIBUTES"].endswith(",deployment.environment=prod,k8s.cluster.name=edge-1")
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {"secretKeyRef": {"name": "otlp-auth", "key": "headers"}}
    assert env["OTEL_EXPORTER_OTLP_COMPRESSION"] == "gzip"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    names = [e["name"] for e in container(custom)["env"]]
    for dependent in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"):
        assert names.index(dependent) > max(names.index(v) for v in ("NODE_NAME", "NODE_IP"))


def test_rbac_is_read_only_pods() -> None:
    r = template({"config": {"kubernetes": {"pod_labels": True}}})
    role = r.one("ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = r.one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = r.one("ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "monitoring"}
    ]
    pod = r.one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


def test_no_cluster_role_or_token_without_pod_labels(default: Rendered) -> None:
    """Pod labels off (the default): the agent never calls the API server, so no cluster-wide
    pod-reading role and no token in the pod."""
    assert not default.of_kind("ClusterRole") and not default.of_kind("ClusterRoleBinding")
    assert default.one("DaemonSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_pods_file_needs_no_api_access() -> None:
    r = template({"config": {"kubernetes": {"pod_labels": True, "pods_file": "/etc/pktpath/pods.json"}}})
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    assert r.one("DaemonSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_without_rbac_no_role_but_the_token_pod_labels_need() -> None:
    r = template({"rbac": {"create": False}})
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    assert r.one("DaemonSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    r = template({"rbac": {"create": False}, "config": {"kubernetes": {"pod_labels": True}}})
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    # The user binds a role of their own to the service account: the agent needs the token for it.
    assert r.one("DaemonSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


# --- the agent's config ------------------------------------------------------------------------------


def agent_config(r: Rendered) -> str:
    cms = [c for c in r.of_kind("ConfigMap") if "config.yaml" in c.get("data", {})]
    assert len(cms) == 1
    return str(cms[0]["data"]["config.yaml"])


@pytest.mark.parametrize("which", ["default", "custom"])
def test_configmap_is_a_valid_agent_config(tmp_path: Path, which: str, request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(which)
    path = tmp_path / "config.yaml"
    path.write_text(agent_config(r))
    env = {**os.environ, "NODE_IP": "192.0.2.7", "NODE_NAME": "node-a"}  # set by the DaemonSet
    proc = subprocess.run([pktpath_bin(), "validate", str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr + path.read_text()
    loaded = yaml.safe_load(path.read_text())
    expected = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    if which == "custom":
        expected = merge(expected, CUSTOM["config"])
    assert loaded == expected  # every value passed through unchanged (large integers included)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_config_change_rolls_the_pods(default: Rendered) -> None:
    def checksum(r: Rendered) -> str:
        return str(r.one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    changed = template({"config": {"sampling": {"one_in": 500}}})
    assert checksum(changed) != checksum(default)
    assert checksum(template()) == checksum(default)


# --- values.schema.json ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"imagee": {}}, "imagee"),
        ({"config": {"metrics": {"lisen": "0.0.0.0:1"}}}, "lisen"),
        ({"config": {"drops": {"max_series": 8}}}, "max_series"),
        ({"config": {"drops": {"max_series": "4096"}}}, "max_series"),
        ({"config": {"sampling": {"ring_buffer_kb": 1000}}}, "ring_buffer_kb"),
        ({"config": {"logging": {"level": "verbose"}}}, "level"),
        ({"config": {"metrics": {"listen": "9977"}}}, "listen"),
        ({"config": {"tracez": {}}}, "tracez"),
        ({"otel": {"protocol": "http/json"}}, "protocol"),
        ({"otel": {"endpoint": "collector:4317"}}, "endpoint"),
        ({"capabilities": {"extra": ["CAP_SYS_PTRACE"]}}, "extra"),
        ({"capabilities": {"privileged": True}}, "privileged"),
        ({"config": {"kubernetes": {"max_pods": 0}}}, "max_pods"),
        ({"config": {"kubernetes": {"pod_label": True}}}, "pod_label"),
        ({"seccompProfile": {"type": "Localhost"}}, "localhostProfile"),
        ({"service": {"port": 0}}, "port"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "interval"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(HelmError, match=complaint):
        template(values)


def test_metrics_port_must_be_fixed() -> None:
    with pytest.raises(HelmError, match="fixed port"):
        template({"config": {"metrics": {"listen": "0.0.0.0:0"}}})


def test_service_monitor_needs_the_service() -> None:
    with pytest.raises(HelmError, match=r"needs service\.enabled"):
        template({"service": {"enabled": False}, "serviceMonitor": {"enabled": True}})


def test_notes(default: Rendered, custom: Rendered) -> None:
    assert "BPF, PERFMON, NET_ADMIN, SYS_ADMIN" in default.notes
    assert "pod-security.kubernetes.io/enforce=privileged" in default.notes
    assert "placeholder" in default.notes and "placeholder" not in custom.notes
    assert 'ServiceMonitor pp (job="pktpath") is installed' in custom.notes
