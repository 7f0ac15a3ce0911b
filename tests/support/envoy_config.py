"""Envoy configs parsed into Envoy's own Bootstrap proto (xds-protos), strictly.

Unknown fields are errors, and every ``typed_config`` is resolved: the module
defining its type is imported from its proto package, so the ``Any`` is parsed
field by field instead of being skipped.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

__all__ = ["TYPE_PREFIX", "load_document", "parse_bootstrap", "typed_configs"]

TYPE_PREFIX = "type.googleapis.com/"


def _type_urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@type" and isinstance(value, str):
                yield value
            else:
                yield from _type_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _type_urls(value)


def _import_type(type_url: str) -> None:
    """Import every ``*_pb2`` module of the proto package that defines ``type_url``."""
    if not type_url.startswith(TYPE_PREFIX):
        raise json_format.ParseError(f"not a type URL: {type_url}")
    package = type_url.removeprefix(TYPE_PREFIX).rpartition(".")[0]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise json_format.ParseError(f"unknown proto package for {type_url}") from exc
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def parse_bootstrap(document: Any) -> bootstrap_pb2.Bootstrap:
    """Parse a Bootstrap, rejecting unknown fields and unresolvable ``Any`` types."""
    for url in set(_type_urls(document)):
        _import_type(url)
    return json_format.ParseDict(document, bootstrap_pb2.Bootstrap(), ignore_unknown_fields=False)


def typed_configs(message: Message, type_: type[Message]) -> Iterator[Message]:
    """Every ``Any`` of type ``type_`` inside ``message``, unpacked, at any depth."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for item in values:
            if not isinstance(item, Message):
                continue
            if item.DESCRIPTOR.full_name != "google.protobuf.Any":
                yield from typed_configs(item, type_)
            elif item.Is(type_.DESCRIPTOR):
                out = type_()
                item.Unpack(out)
                yield out
            else:
                name = item.type_url.removeprefix(TYPE_PREFIX)
                descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
                inner = message_factory.GetMessageClass(descriptor)()
                item.Unpack(inner)
                yield from typed_configs(inner, type_)
