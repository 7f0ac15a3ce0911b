from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import cedarpy
import pytest
import yaml

from authz.engine.bundle import PolicyBundle, bundle_from_data, load_bundle, read_bundle
from authz.errors import AuthzError, BundleError
from tests.support.cli import REPO
from tests.unit.authz.conftest import write_tree

DATA = Path(__file__).parent / "data"
TABLE = yaml.safe_load((DATA / "bad_bundles.yaml").read_text())


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_bad_bundles_report_every_problem_with_position(case, tmp_path) -> None:
    root = write_tree(tmp_path / "b", {**TABLE["base"], **case["files"]})
    with pytest.raises(BundleError) as info:
        load_bundle(root)
    got = [[p.file, p.line, p.column, p.code] for p in info.value.problems]
    assert got == case["problems"]
    assert list(info.value.problems) == sorted(info.value.problems)
    assert isinstance(info.value, AuthzError)
    assert info.value.code == "bundle_invalid"


def test_the_base_of_the_bad_table_loads(tmp_path) -> None:
    bundle = load_bundle(write_tree(tmp_path / "b", TABLE["base"]))
    assert bundle.policy_ids == ("ok",)


def test_missing_directory_is_a_problem(tmp_path) -> None:
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "nope")
    assert [p.code for p in info.value.problems] == ["not-a-directory"]


def test_example_policies_load() -> None:
    bundle = load_bundle(REPO / "policies")
    assert len(bundle.policies) >= 10
    assert {p.effect for p in bundle.policies} == {"permit", "forbid"}
    assert sum(len(s.cases) for s in bundle.tests) >= 25
    assert bundle.directory == REPO / "policies"


def test_ids_come_from_annotation_else_file_and_position(make_bundle) -> None:
    root = make_bundle(
        {
            "a.cedar": 'permit (principal, action, resource);\n\n@id("named")\n'
            "forbid (principal, action, resource);\npermit (principal, action, resource);\n",
            "sub/b.cedar": "// lead\n  permit (principal, action, resource);\n",
        }
    )
    bundle = load_bundle(root)
    got = [(p.id, p.file, p.line, p.column, p.effect) for p in bundle.policies]
    assert got == [
        ("a.cedar#0", "a.cedar", 1, 1, "permit"),
        ("named", "a.cedar", 3, 1, "forbid"),
        ("a.cedar#2", "a.cedar", 5, 1, "permit"),
        ("sub/b.cedar#0", "sub/b.cedar", 2, 3, "permit"),
    ]
    assert bundle.policy("named").text.startswith('@id("named")')
    assert bundle.policy("named").json["effect"] == "forbid"
    assert '"effect": "forbid"' in bundle.policy("named").json_text
    with pytest.raises(KeyError):
        bundle.policy("missing")


def test_ids_are_stable_when_other_files_change(make_bundle) -> None:
    one = load_bundle(make_bundle({"a.cedar": "permit (principal, action, resource);\n"}))
    two = load_bundle(
        make_bundle(
            {
                "a.cedar": "// reworded\npermit (principal, action, resource);\n",
                "0.cedar": "forbid (principal, action, resource);\n",
            }
        )
    )
    assert "a.cedar#0" in one.policy_ids
    assert "a.cedar#0" in two.policy_ids


def test_version_is_a_content_hash_unless_given(make_bundle) -> None:
    files = {"a.cedar": "permit (principal, action, resource);\n"}
    first = load_bundle(make_bundle(files))
    same = load_bundle(make_bundle(files))
    other = load_bundle(make_bundle({"a.cedar": "forbid (principal, action, resource);\n"}))
    assert first.version == same.version
    assert first.version != other.version
    assert first.version.startswith("sha256:")
    pinned = load_bundle(make_bundle(files), version="0123abcd")
    assert pinned.version == "0123abcd"


def test_bundle_is_frozen_and_parsed_once(make_bundle) -> None:
    bundle = load_bundle(make_bundle({"a.cedar": "permit (principal, action, resource);\n"}))
    assert isinstance(bundle.policy_set, cedarpy.PolicySet)
    assert len(bundle.policy_set) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.version = "x"  # type: ignore[misc]


def test_entities_include_the_schema_actions(make_bundle) -> None:
    bundle = load_bundle(
        make_bundle(
            {
                "a.cedar": "permit (principal, action, resource);\n",
                "entities.json": '[{"uid": {"type": "Group", "id": "g"}, "attrs": {}, '
                '"parents": []}]',
            }
        )
    )
    uids = {(r["uid"]["type"], r["uid"]["id"]) for r in bundle.entity_records}
    assert ("Group", "g") in uids
    assert ("Action", "GET") in uids
    get = next(r for r in bundle.entity_records if r["uid"] == {"type": "Action", "id": "GET"})
    assert {"type": "Action", "id": "read"} in get["parents"]


def test_hidden_directories_are_ignored(make_bundle) -> None:
    root = make_bundle(
        {
            "a.cedar": "permit (principal, action, resource);\n",
            ".git/junk.cedar": "this is not cedar",
        }
    )
    assert load_bundle(root).policy_ids == ("a.cedar#0",)


def test_checked_content_survives_pickling_and_rebuilds_the_same_bundle() -> None:
    data = read_bundle(REPO / "policies", version="v1")
    copy = pickle.loads(pickle.dumps(data))
    assert copy == data
    assert [s.cases for s in copy.tests] == [s.cases for s in data.tests]
    assert [p.json for p in copy.policies] == [p.json for p in data.policies]
    rebuilt = bundle_from_data(copy)
    direct = load_bundle(REPO / "policies", version="v1")
    assert rebuilt.policy_ids == direct.policy_ids

    def records(bundle: PolicyBundle) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in bundle.entity_records)

    assert records(rebuilt) == records(direct)
    assert rebuilt.tests == direct.tests
    assert rebuilt.version == "v1"


def test_the_whole_policy_set_is_built_once_on_first_use() -> None:
    bundle = load_bundle(REPO / "policies")
    first = bundle.policy_set
    assert first is bundle.policy_set
    assert isinstance(first, cedarpy.PolicySet)


def test_a_new_version_takes_over_the_schema_and_entities_it_shares_with_the_active_one(
    tmp_path,
) -> None:
    shop = {p.name: p.read_text() for p in (REPO / "policies").iterdir() if p.is_file()}
    active = bundle_from_data(read_bundle(write_tree(tmp_path / "v1", shop), version="v1"))

    # Policies alone changed: nothing is parsed again, Cedar's handles are shared.
    edited = {**shop, "guards.cedar": shop["guards.cedar"] + "\n// edited\n"}
    same = bundle_from_data(read_bundle(write_tree(tmp_path / "v2", edited), version="v2"), active)
    assert same.schema is active.schema
    assert same.entities is active.entities
    assert same.entity_records == active.entity_records

    # Other entities: parsed against the shared schema.
    records = json.loads(shop["entities.json"])
    other_entities = {**shop, "entities.json": json.dumps(records[:1])}
    fewer_data = read_bundle(write_tree(tmp_path / "v3", other_entities), version="v3")
    fewer = bundle_from_data(fewer_data, active)
    assert fewer.schema is active.schema
    assert fewer.entities is not active.entities
    assert _records(fewer) == _records(bundle_from_data(fewer_data))
    assert _records(fewer) != _records(active)

    # Another schema: both parsed anew, and they decide as a cold build does.
    other_schema = {**shop, "schema.cedarschema": shop["schema.cedarschema"] + "\n"}
    data = read_bundle(write_tree(tmp_path / "v4", other_schema), version="v4")
    fresh = bundle_from_data(data, active)
    assert fresh.schema is not active.schema
    assert fresh.entities is not active.entities
    assert _records(fresh) == _records(bundle_from_data(data))


def _records(bundle: PolicyBundle) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in bundle.entity_records)
