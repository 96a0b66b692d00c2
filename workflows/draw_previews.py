"""Draw the picture of each workflow (<name>.jpg beside <name>.json): ComfyUI's template browser shows it as the
thumbnail, and the README shows it. Nodes are drawn where the workflow places them, links as curves coloured
by type, widget values listed in each node. Run after editing a workflow:

    python workflows/draw_previews.py
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
SCALE = 0.75
MARGIN = 30
TITLE_HEIGHT = 26
LINE_HEIGHT = 17
BACKGROUND, NODE, NODE_TITLE, NOTE, TEXT, DIM = "#202020", "#353535", "#2b4a63", "#3a3a2a", "#e8e8e8", "#a0a0a0"
LINK_COLOURS = {"IMAGE": "#64b5f6", "AUDIO": "#ffb74d", "FLOAT": "#aed581", "INT": "#aed581", "VIDEO": "#f06292"}
FLOAT_LINK = "#ba68c8"  # the pack's own types


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _lines(node: dict) -> list[str]:
    """What a node shows: its inputs by name, then its widget values (notes: their text, wrapped)."""
    if node["type"] in ("MarkdownNote", "Note"):
        words, lines, line = node["widgets_values"][0].replace("**", "").split(), [], ""
        for word in words:
            if len(line) + len(word) > 44:
                lines.append(line)
                line = ""
            line += word + " "
        return lines + [line]
    inputs = [f"<- {i['name']}" for i in node.get("inputs", []) if i.get("link") is not None and "widget" not in i]
    values = [repr(v) if isinstance(v, str) else str(v) for v in node.get("widgets_values", []) if v is not None]
    return inputs + values


def draw(workflow: dict) -> Image.Image:
    nodes = {node["id"]: node for node in workflow["nodes"]}
    right = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    image = Image.new("RGB", (int(right * SCALE) + 2 * MARGIN, int(bottom * SCALE) + 2 * MARGIN), BACKGROUND)
    canvas = ImageDraw.Draw(image)

    def box(node: dict) -> tuple[float, float, float, float]:
        x, y = (v * SCALE + MARGIN for v in node["pos"])
        return x, y, x + node["size"][0] * SCALE, y + node["size"][1] * SCALE

    for _, source, slot, target, target_slot, kind in workflow["links"]:
        x0, y0, x1, _ = box(nodes[source])
        start = (x1, y0 + TITLE_HEIGHT + 10 + slot * LINE_HEIGHT)
        tx, ty, _, _ = box(nodes[target])
        end = (tx, ty + TITLE_HEIGHT + 10 + target_slot * LINE_HEIGHT)
        bend = max(40.0, (end[0] - start[0]) / 2)
        points = []
        for step in range(33):  # a cubic Bezier, flat at both ends like ComfyUI's splines
            t = step / 32
            cx = (1 - t) ** 3 * start[0] + 3 * (1 - t) ** 2 * t * (start[0] + bend) + 3 * (1 - t) * t**2 * (end[0] - bend) + t**3 * end[0]
            cy = (1 - t) ** 3 * start[1] + 3 * (1 - t) ** 2 * t * start[1] + 3 * (1 - t) * t**2 * end[1] + t**3 * end[1]
            points.append((cx, cy))
        canvas.line(points, fill=LINK_COLOURS.get(kind, FLOAT_LINK), width=3)

    title_font, body_font = _font(15), _font(12)
    for node in nodes.values():
        x0, y0, x1, y1 = box(node)
        note = node["type"] in ("MarkdownNote", "Note")
        canvas.rounded_rectangle((x0, y0, x1, y1), radius=8, fill=NOTE if note else NODE)
        canvas.rounded_rectangle((x0, y0, x1, y0 + TITLE_HEIGHT), radius=8, fill=NOTE if note else NODE_TITLE)
        canvas.text((x0 + 10, y0 + 5), node.get("title") or node["type"], fill=TEXT, font=title_font)
        for row, text in enumerate(_lines(node)):
            y = y0 + TITLE_HEIGHT + 6 + row * LINE_HEIGHT
            if y + LINE_HEIGHT > y1:
                break
            canvas.text((x0 + 10, y), text[:48], fill=DIM, font=body_font)
    return image


def main() -> None:
    for path in sorted(HERE.glob("*.json")):
        draw(json.loads(path.read_text())).save(path.with_suffix(".jpg"), quality=88)
        print(f"drew {path.with_suffix('.jpg').name}")


if __name__ == "__main__":
    main()
