"""Convert a UI-format workflow (what the ComfyUI frontend saves and templates ship) to an API prompt.

ComfyUI's Python has no such conversion: the frontend's graphToPrompt does it in JS. This
re-implements the parts the project's workflows need, following the frontend 1.32 sources:

* widgets_values is positional over the node's widgets, created in input_order (required,
  then optional; without input_order: the object_info key order). A widget input is one of
  type INT/FLOAT/STRING/BOOLEAN/COMBO (or a list = combo) without forceInput. Linked widget
  inputs keep their widget, so their value is still in widgets_values and is skipped.
* UI-only values that occupy positions but are not sent to the server:
  - a "control_after_generate" combo after an INT with that option, or an INT named seed /
    noise_seed unless the option is explicitly false;
  - after a COMBO with control_after_generate: that combo plus a "control_filter_list" string;
  - after a remote COMBO: an auto-refresh toggle, then a "refresh" button if refresh_button;
  - at the very end (after optional inputs when input_order exists, else after the
    required ones): "audioUI" for LoadAudio/SaveAudio/PreviewAudio/SaveAudioMP3/SaveAudioOpus,
    the "upload" button for image_upload/video_upload/animated_image_upload combos (saved
    as "image") and for an audio_upload "audio" input (saved as null or "").
* widgets_values may also be a dict {widget name: value} (some custom nodes save that).
* List values are wrapped as {"__value__": [...]} (a bare list would read as a link).
* Muted nodes (mode 2) are dropped and links from them removed; bypassed nodes (mode 4) pass
  the input matching the output's type through; Reroute is followed; PrimitiveNode's value
  replaces the link; Note/MarkdownNote are dropped.

Not emulated: subgraphs and group nodes (an error), dynamic prompts ({a|b} choices) and
%date%-style filename_prefix replacements (sent verbatim), custom JS widgets of other packs.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = {"seed", "noise_seed"}
AUDIO_UI_NODES = {"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
DROPPED_NODES = {"Note", "MarkdownNote"}
VIRTUAL_NODES = {"Reroute", "PrimitiveNode"} | DROPPED_NODES
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowConversionError(ValueError):
    """The workflow cannot be converted (unknown node types, unsupported features, broken links)."""


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API prompt {node id: {"class_type", "inputs", "_meta"}} for a UI-format `workflow`."""
    graph = _Graph(workflow)
    emitted = [node for node in workflow.get("nodes", [])
               if node["type"] not in VIRTUAL_NODES and node.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS)]
    _check_known(workflow, emitted, object_info)
    prompt = {}
    for node in emitted:
        node_def = object_info[node["type"]]
        inputs = _widget_inputs(node, node_def)
        for name, source in graph.linked_inputs(node):
            if source is not None:  # nothing resolvable upstream: a widget keeps its own value
                inputs[name] = source
        title = node.get("title") or node_def.get("display_name") or node["type"]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": title}}
    _drop_links_to_missing(prompt)
    return prompt


def _check_known(workflow: dict, nodes: list[dict], object_info: dict) -> None:
    subgraphs = {sg.get("id") for sg in (workflow.get("definitions") or {}).get("subgraphs", [])}
    nested = sorted({n["type"] for n in nodes if n["type"] in subgraphs or n["type"].startswith("workflow>")})
    if nested:
        raise WorkflowConversionError(f"subgraphs/group nodes are not supported by ui_to_api: {nested}")
    unknown = sorted({n["type"] for n in nodes if n["type"] not in object_info})
    if unknown:
        raise WorkflowConversionError(f"node types unknown to this ComfyUI (not in /object_info): {', '.join(unknown)}")


# ----------------------------------------------------------------------------- widgets


def widget_slots(class_type: str, node_def: dict) -> list[str | None]:
    """Input name per widgets_values position; None where the frontend stores a UI-only value."""
    required = node_def.get("input", {}).get("required") or {}
    optional = node_def.get("input", {}).get("optional") or {}
    order = node_def.get("input_order") or {}
    slots_required = [s for name in _ordered(order.get("required"), required) for s in _slots_of(name, required[name])]
    slots_optional = [s for name in _ordered(order.get("optional"), optional) for s in _slots_of(name, optional[name])]
    extras = _trailing_ui_slots(class_type, required)
    if "input_order" in node_def:
        return slots_required + slots_optional + extras
    return slots_required + extras + slots_optional


def _ordered(order: list[str] | None, inputs: dict) -> list[str]:
    names = [name for name in (order or []) if name in inputs]
    return names + [name for name in inputs if name not in names]


def _slots_of(name: str, spec: list) -> list[str | None]:
    kind, options = _kind(spec)
    if kind is None or options.get("forceInput"):
        return []
    slots: list[str | None] = [name]
    if kind == "COMBO" and options.get("remote"):
        slots += [None, None] if options["remote"].get("refresh_button") else [None]
    control = options.get("control_after_generate")
    if kind == "INT" and (control or (control is None and name in SEED_NAMES)):
        slots.append(None)
    elif kind == "COMBO" and control:
        slots += [None, None]
    return slots


def _kind(spec: list) -> tuple[str | None, dict]:
    """("INT"|"FLOAT"|"STRING"|"BOOLEAN"|"COMBO", options) for a widget input, (None, options) for a socket."""
    type_ = spec[0] if spec else None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(type_, list):
        return "COMBO", options
    type_ = options.get("widgetType", type_)
    return (type_ if type_ in WIDGET_TYPES else None), options


def _trailing_ui_slots(class_type: str, required: dict) -> list[None]:
    """The frontend appends these widgets to the node definition's required inputs (at most one each)."""
    audio_ui = class_type in AUDIO_UI_NODES
    image_upload = any(_is_upload_combo(spec, UPLOAD_OPTIONS) for spec in required.values())
    audio_upload = "audio" in required and _is_upload_combo(required["audio"], ("audio_upload",))
    return [None] * (audio_ui + image_upload + audio_upload)


def _is_upload_combo(spec: list, upload_options: tuple[str, ...]) -> bool:
    kind, options = _kind(spec)
    return kind == "COMBO" and any(options.get(option) is True for option in upload_options)


def _widget_inputs(node: dict, node_def: dict) -> dict:
    values = node.get("widgets_values")
    slots = widget_slots(node["type"], node_def)
    if isinstance(values, dict):
        pairs = [(name, values[name]) for name in slots if name is not None and name in values]
    else:
        pairs = [(name, value) for name, value in zip(slots, values or [], strict=False) if name is not None]
    return {name: {"__value__": value} if isinstance(value, list) else value for name, value in pairs}


# ----------------------------------------------------------------------------- links


class _Graph:
    """Link resolution through bypassed nodes, Reroutes and PrimitiveNodes, as graphToPrompt does."""

    def __init__(self, workflow: dict):
        self.nodes = {node["id"]: node for node in workflow.get("nodes", [])}
        self.links = {}
        for link in workflow.get("links", []):
            if isinstance(link, dict):
                link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                        link.get("type")]
            self.links[link[0]] = (link[1], link[2])

    def linked_inputs(self, node: dict):
        """(input name, [origin id, slot] | plain value | None) for every linked input of `node`."""
        for slot in node.get("inputs") or []:
            if slot.get("link") is not None:
                name = (slot.get("widget") or {}).get("name") or slot["name"]
                yield name, self._resolve_link(slot["link"], slot.get("type"), set())

    def _resolve_link(self, link_id: int, type_: str | None, seen: set):
        if link_id not in self.links:
            raise WorkflowConversionError(f"link {link_id} is used by a node but missing from 'links'")
        if link_id in seen:
            raise WorkflowConversionError(f"link cycle through link {link_id}")
        seen.add(link_id)
        origin_id, origin_slot = self.links[link_id]
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise WorkflowConversionError(f"link {link_id} starts at node {origin_id}, which does not exist")
        if origin["type"] == "PrimitiveNode":
            return _wrap((origin.get("widgets_values") or [None])[0])
        if origin["type"] == "Reroute" or origin.get("mode") == MODE_BYPASS:
            through = _passthrough_input(origin, origin_slot, type_)
            return None if through is None or through.get("link") is None else \
                self._resolve_link(through["link"], type_, seen)
        return [str(origin_id), origin_slot]


def _passthrough_input(node: dict, output_slot: int, type_: str | None) -> dict | None:
    """The input a Reroute or bypassed node forwards to output `output_slot` (frontend's rule)."""
    inputs = node.get("inputs") or []
    if node["type"] == "Reroute":
        return inputs[0] if inputs else None
    outputs = node.get("outputs") or []
    output_type = outputs[output_slot].get("type") if output_slot < len(outputs) else None
    if type_ in (None, "", "*"):
        return inputs[output_slot] if output_slot < len(inputs) else (inputs[0] if inputs else None)
    def fits(slot: dict) -> bool:
        return _compatible(slot.get("type"), output_type) and _compatible(slot.get("type"), type_)

    if output_slot < len(inputs) and fits(inputs[output_slot]):
        return inputs[output_slot]
    exact = [slot for slot in inputs if slot.get("type") == type_]
    return (exact or [slot for slot in inputs if fits(slot)] or [None])[0]


def _compatible(a: str | None, b: str | None) -> bool:
    """LiteGraph.isValidConnection: '*'/'' match anything; else case-insensitive, comma lists overlap."""
    if a in (None, "", "*", 0) or b in (None, "", "*", 0):
        return True
    return bool(set(str(a).lower().split(",")) & set(str(b).lower().split(",")))


def _wrap(value):
    return {"__value__": value} if isinstance(value, list) else value


def _drop_links_to_missing(prompt: dict) -> None:
    """Inputs fed by muted (or otherwise absent) nodes disappear, as in the frontend."""
    for node in prompt.values():
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                del node["inputs"][name]
