from __future__ import annotations

import pytest

from authz.adapters.activepolicies import bundle_document
from authz.engine.bundle import load_bundle
from console.whatif import ActiveBundle, EditError, evaluate_edit
from tests.support.cli import REPO

TD = "spiffe://meshward.local/ns/shop/sa/"
REQUEST = {
    "principal": f'Workload::"{TD}frontend"',
    "action": 'Action::"GET"',
    "resource": f'Service::"{TD}catalog"',
    "context": {"http": {"method": "GET", "host": "c", "path": "/p", "query": "", "headers": {}}},
}


@pytest.fixture(scope="module")
def active() -> ActiveBundle:
    return ActiveBundle.from_json(bundle_document(load_bundle(REPO / "policies")))


def test_without_an_edit_it_decides_as_the_bundle_does(active: ActiveBundle) -> None:
    result = evaluate_edit(active, {}, REQUEST)
    assert result.decision is not None
    assert result.decision["decision"] == "allow"
    assert result.decision["reasons"] == ["frontend-reads-catalog"]
    assert result.decision["explanation"]["summary"]


def test_an_edit_changes_the_decision(active: ActiveBundle) -> None:
    text = active.files["workloads.cedar"] + '\n@id("stop")\nforbid (principal, action, resource);'
    result = evaluate_edit(active, {"workloads.cedar": text}, REQUEST)
    assert result.decision is not None
    assert result.decision["decision"] == "deny"
    assert result.decision["reasons"] == ["stop"]


def test_a_broken_edit_reports_its_problems(active: ActiveBundle) -> None:
    result = evaluate_edit(active, {"workloads.cedar": "permit (principal,"}, REQUEST)
    assert result.decision is None
    assert result.problems and result.problems[0].startswith("workloads.cedar:")


@pytest.mark.parametrize("name", ["../../etc/passwd.cedar", "/abs.cedar", "new.cedar", "x.txt"])
def test_only_files_of_the_bundle_can_be_edited(active: ActiveBundle, name: str) -> None:
    with pytest.raises(EditError):
        evaluate_edit(active, {name: "permit (principal, action, resource);"}, REQUEST)


def test_a_bad_request_is_an_edit_error(active: ActiveBundle) -> None:
    with pytest.raises(EditError):
        evaluate_edit(active, {}, {"principal": "nope"})
