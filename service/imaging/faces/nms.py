"""Non-maximum suppression and box squaring, shared by the pyramid's levels and the stages.

Boxes are rows (x1, y1, x2, y2, score, ...) in image pixels; extra columns ride along.
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, threshold: float, by_smaller: bool = False) -> np.ndarray:
    """Indices of the boxes kept, best score first: each drops those overlapping it more than
    ``threshold``, measured over the union, or over the smaller box with ``by_smaller`` (which
    also removes a box nested inside a better one: MTCNN's last merge)."""
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-score, kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = width * height
        base = np.minimum(area[best], area[rest]) if by_smaller else area[best] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(base, 1e-9)]
    return np.asarray(kept, dtype=np.int64)


def squared(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to the square on its longer side, same centre (the next net's input)."""
    out = boxes.copy()
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 0], out[:, 1] = cx - side / 2, cy - side / 2
    out[:, 2], out[:, 3] = cx + side / 2, cy + side / 2
    return out
