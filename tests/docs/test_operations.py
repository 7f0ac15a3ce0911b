"""docs/operations.md documents every metric the code defines and every setting."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from meshward.settings import Settings
from tests.support.cli import REPO
from tests.support.metrics import defined_families

OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
FAMILIES = defined_families()


def _exposed_name(name: str, kind: str) -> str:
    return {"counter": f"{name}_total", "info": f"{name}_info"}.get(kind, name)


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_metric_is_documented(family) -> None:
    documented = {f"`{family.name}`", f"`{_exposed_name(family.name, family.type)}`"}
    assert any(d in OPERATIONS for d in documented), (
        f"{family.name} ({family.module}) is not in docs/operations.md#metrics"
    )


def _settings(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    out = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_settings(annotation, (*prefix, name)))
            continue
        path = (*prefix, name)
        out.append((".".join(path), "MESHWARD_" + "__".join(p.upper() for p in path)))
    return out


SETTINGS = _settings(Settings)


def test_the_metric_list_is_not_empty() -> None:
    assert {"meshward_pdp_decisions", "meshward_ca_issuance"} <= {f.name for f in FAMILIES}


@pytest.mark.parametrize(("key", "env"), SETTINGS, ids=[k for k, _ in SETTINGS])
def test_setting_is_documented(key: str, env: str) -> None:
    assert f"`{key}`" in OPERATIONS and f"`{env}`" in OPERATIONS, (
        f"setting {key} ({env}) is not in docs/operations.md#settings"
    )
