from __future__ import annotations

from console.schema_diagram import outline, render
from tests.support.cli import REPO


def test_outline_reads_the_example_schema() -> None:
    schema = outline((REPO / "policies" / "schema.cedarschema").read_text())
    entities = {e.name: e.parents for e in schema.entities}
    assert entities["User"] == ("Group",)
    assert entities["Workload"] == ()
    actions = {a.name: a for a in schema.actions}
    assert actions["GET"].groups == ("read",)
    assert actions["DELETE"].principals == ("Workload", "User", "Anonymous")
    assert actions["POST"].resources == ("Service",)


def test_outline_of_a_namespace_with_comments() -> None:
    text = """
    namespace Shop {
      // entity Ghost;
      entity Team, Person in [Team] { name: String };
      action view appliesTo { principal: [Person], resource: [Team], context: {} };
    }
    """
    schema = outline(text)
    assert schema.namespace == "Shop"
    assert [(e.name, e.parents) for e in schema.entities] == [
        ("Team", ("Team",)),
        ("Person", ("Team",)),
    ]
    assert schema.actions[0].name == "view"
    assert schema.actions[0].principals == ("Person",)


def test_render_escapes_names() -> None:
    svg = render(outline('entity A; action "<x>" appliesTo { principal: [A], resource: [A] };'))
    assert "&lt;x&gt;" in svg and "<x>" not in svg
    assert svg.startswith("<svg") and svg.count('class="entity"') == 1
