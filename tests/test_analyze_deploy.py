"""deploy/: the Collector config and Kubernetes manifests, checked structurally.

No Collector binary or cluster exists here, so these tests parse every file and check the wiring
that makes the scale-out work: routing keys, the DNS resolver against the headless Service,
pipeline references, selectors, env var names and CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from otel_llm import environment_variables as ev

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module")
def collector():
    return yaml.safe_load((DEPLOY / "collector" / "otelcol-gateway.yaml").read_text())


@pytest.fixture(scope="module")
def k8s():
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(docs, kind, name):
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_collector_routes_traces_by_trace_id_and_metrics_by_service(collector):
    exporters = collector["exporters"]
    assert exporters["loadbalancing/traces"]["routing_key"] == "traceID"
    assert exporters["loadbalancing/metrics"]["routing_key"] == "service"
    pipelines = collector["service"]["pipelines"]
    assert "loadbalancing/traces" in pipelines["traces"]["exporters"]
    assert "loadbalancing/metrics" in pipelines["metrics"]["exporters"]
    for lb in ("loadbalancing/traces", "loadbalancing/metrics"):
        otlp = exporters[lb]["protocol"]["otlp"]
        assert "endpoint" not in otlp  # the resolver supplies endpoints
        assert otlp["headers"]["authorization"] == "Bearer ${env:OTEL_LLM_ANALYZE_TOKEN}"


def test_every_pipeline_component_is_defined(collector):
    service = collector["service"]
    for ext in service.get("extensions", []):
        assert ext in collector["extensions"]
    for name, pipe in service["pipelines"].items():
        assert name.split("/")[0] in ("traces", "metrics", "logs")
        for section in ("receivers", "processors", "exporters"):
            for component in pipe.get(section, []):
                assert component in collector[section], f"{name}: {component} is not defined in {section}"


def test_resolver_points_at_the_headless_service(collector, k8s):
    headless = _one(k8s, "Service", "otel-llm-analyze-headless")
    assert headless["spec"]["clusterIP"] == "None"
    ports = {p["port"] for p in headless["spec"]["ports"]}
    fqdn = f"{headless['metadata']['name']}.{headless['metadata']['namespace']}.svc.cluster.local"
    for lb in ("loadbalancing/traces", "loadbalancing/metrics"):
        dns = collector["exporters"][lb]["resolver"]["dns"]
        assert dns["hostname"] == fqdn and dns["port"] in ports


def test_manifests_are_well_formed_and_selectors_match(k8s):
    for doc in k8s:
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"]["name"]
    deployments = [d for d in k8s if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"otel-llm-analyze", "otelcol-gateway"}
    for dep in deployments:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for svc in (d for d in k8s if d["kind"] == "Service" and d["spec"]["selector"].items() <= labels.items()):
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in ports, f"{svc['metadata']['name']} targets a missing port"
    analyze = _one(k8s, "Deployment", "otel-llm-analyze")
    assert analyze["spec"]["replicas"] >= 2
    container = analyze["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_settings_use_known_env_vars_and_cli_flags(k8s):
    known = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)}
    config = _one(k8s, "ConfigMap", "otel-llm-analyze")
    unknown = set(config["data"]) - known
    assert not unknown, f"env vars otel-llm does not read: {unknown}"
    assert config["data"][ev.OTEL_LLM_ANALYZE_HTTP_ENDPOINT].startswith("0.0.0.0:")  # reachable in a pod
    container = _one(k8s, "Deployment", "otel-llm-analyze")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "analyze"
    from typer.testing import CliRunner

    from otel_llm.cli._app import build_app

    help_text = CliRunner().invoke(build_app(), ["analyze", "--help"], env={"COLUMNS": "200"}).output
    for flag in container["args"][1:]:
        assert flag.split("=")[0] in help_text
    from otel_llm.analyze import AnalyzeConfig

    AnalyzeConfig(http_endpoint=config["data"][ev.OTEL_LLM_ANALYZE_HTTP_ENDPOINT],
                  grpc_endpoint=config["data"][ev.OTEL_LLM_ANALYZE_GRPC_ENDPOINT]).validate()


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = {str(Path(r)) for r in kust["resources"]}
    on_disk = {str(p.relative_to(DEPLOY)) for p in (DEPLOY / "kubernetes").glob("*.yaml")}
    assert listed == on_disk
    for gen in kust["configMapGenerator"]:
        for item in gen["files"]:
            assert (DEPLOY / item.split("=")[-1]).exists()
