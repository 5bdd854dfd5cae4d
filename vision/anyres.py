"""Dynamic-resolution ("anyres") geometry and the packing of tile features into LLM tokens.

Pure functions shared by the image processor (which cuts tiles) and the model (which packs their features),
so the two can never disagree about a grid. Parameterised by the tile size t (336 for the released model)
and patch size p; g = t // p patches per tile side.

Conventions: sizes are (height, width) everywhere, including grid pinpoints. (The released processor reads
pinpoints as (width, height) and the released model as (height, width); the released list is symmetric, so
they only could differ on exact ties between a candidate and its transpose. Using one convention in both
places here rules that out.)

Token layout of one anyres image (SPEC_NOTES §5.4): the thumbnail's g^2 features, then the tile grid re-assembled
into one [Hc, Wc] feature map (Hc = rows*g, Wc = cols*g), with the rows/columns that only saw the black
padding removed ("unpad", floor rounding as released), and a learned `image_newline` appended after every row:
N = g^2 + H_f * (W_f + 1). Fixed mode (stage I, a single t x t image) is g^2 tokens, no newline.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

RELEASED_TILE_SIZE = 336
MODES = ("anyres", "fixed")

Size = tuple[int, int]  # (height, width)


def default_grid_pinpoints(tile_size: int = RELEASED_TILE_SIZE, *, max_tiles: int = 18,
                           max_tiles_per_side: int = 6) -> list[Size]:
    """All (rows*t, cols*t) with 1 <= rows, cols <= 6 and rows*cols <= 18, rows-major.

    With t = 336 these are the 28 resolutions released with MiniMax-VL-01 (SPEC_NOTES §5.3; 336 to 2016 per side).
    """
    return [(rows * tile_size, cols * tile_size)
            for rows in range(1, max_tiles_per_side + 1)
            for cols in range(1, max_tiles_per_side + 1)
            if rows * cols <= max_tiles]


MINIMAX_VL_01_GRID_PINPOINTS: list[Size] = default_grid_pinpoints(RELEASED_TILE_SIZE)


def scale_grid_pinpoints(pinpoints: Iterable[Sequence[int]], from_tile: int, to_tile: int) -> list[Size]:
    """The same tile grids at another tile size, e.g. the released list for a 160-px CPU preset."""
    pinpoints = validate_grid_pinpoints(pinpoints, from_tile)
    return [(h // from_tile * to_tile, w // from_tile * to_tile) for h, w in pinpoints]


def validate_grid_pinpoints(pinpoints: Iterable[Sequence[int]], tile_size: int) -> list[Size]:
    """Normalises to a list of (height, width) tuples; each side must be a positive multiple of the tile."""
    result = []
    for entry in pinpoints:
        if len(entry) != 2:
            raise ValueError(f"grid pinpoint {entry!r} must be a (height, width) pair")
        height, width = int(entry[0]), int(entry[1])
        if height <= 0 or width <= 0 or height % tile_size or width % tile_size:
            raise ValueError(
                f"grid pinpoint {(height, width)} is not a multiple of the tile size {tile_size}; every "
                "resolution must split into whole tiles (use scale_grid_pinpoints for another tile size)"
            )
        result.append((height, width))
    if not result:
        raise ValueError("grid_pinpoints is empty; give at least one (height, width) resolution")
    return result


def select_best_resolution(image_size: Size, pinpoints: Sequence[Size]) -> Size:
    """The candidate that keeps the most of the image's pixels, then wastes the least canvas (SPEC_NOTES §5.3 step 2).

    For each candidate (H, W): scale = min(W/w, H/h); effective = min(int(w*scale) * int(h*scale), h*w);
    waste = H*W - effective. Highest effective wins; ties go to the lower waste, then to the earlier candidate.
    """
    height, width = image_size
    best, best_effective, best_waste = None, 0, float("inf")
    for cand_h, cand_w in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = cand_h * cand_w - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (cand_h, cand_w), effective, waste
    if best is None:
        raise ValueError("select_best_resolution needs at least one candidate resolution")
    return best


def anyres_grid_shape(image_size: Size, pinpoints: Sequence[Size], tile_size: int) -> Size:
    """(rows, cols) of tiles that an image of `image_size` is cut into."""
    best_h, best_w = select_best_resolution(image_size, pinpoints)
    return best_h // tile_size, best_w // tile_size


def unpad_bounds(image_size: Size, feature_size: Size) -> tuple[int, int, int, int]:
    """(row_start, row_stop, col_start, col_stop) of the feature map that covers the image, not the padding.

    Released floor rounding (SPEC_NOTES §5.4): if the image is wider than the map, new_h = h*Wc // w and
    pad = (Hc - new_h) // 2 rows go from each side (so Hc - 2*pad rows stay); otherwise the same for columns.
    Comparing w*Hc > Wc*h in integers is the released float comparison w/h > Wc/Hc without rounding.
    """
    height, width = image_size
    grid_h, grid_w = feature_size
    if width * grid_h > grid_w * height:
        pad = (grid_h - height * grid_w // width) // 2
        return pad, grid_h - pad, 0, grid_w
    pad = (grid_w - width * grid_h // height) // 2
    return 0, grid_h, pad, grid_w - pad


def unpad(features: torch.Tensor, image_size: Size) -> torch.Tensor:
    """`[Hc, Wc, C]` feature map -> `[H_f, W_f, C]` without the rows/columns of black padding."""
    row_start, row_stop, col_start, col_stop = unpad_bounds(image_size, tuple(features.shape[:2]))
    return features[row_start:row_stop, col_start:col_stop]


def num_image_tokens(height: int, width: int, *, tile_size: int = RELEASED_TILE_SIZE, patch_size: int = 14,
                     grid_pinpoints: Sequence[Size] | None = None, mode: str = "anyres") -> int:
    """LLM tokens for one image: g^2 + H_f * (W_f + 1) in anyres mode (SPEC_NOTES §5.5), g^2 in fixed mode."""
    per_tile = _patches_per_side(tile_size, patch_size)
    if mode == "fixed":
        return per_tile**2
    _check_mode(mode)
    pinpoints = _pinpoints_or_default(grid_pinpoints, tile_size)
    rows, cols = anyres_grid_shape((height, width), pinpoints, tile_size)
    row_start, row_stop, col_start, col_stop = unpad_bounds((height, width), (rows * per_tile, cols * per_tile))
    return per_tile**2 + (row_stop - row_start) * (col_stop - col_start + 1)


def num_tiles(height: int, width: int, *, tile_size: int = RELEASED_TILE_SIZE,
              grid_pinpoints: Sequence[Size] | None = None, mode: str = "anyres") -> int:
    """Tiles the processor makes for one image: thumbnail + rows*cols crops (anyres), or 1 (fixed)."""
    if mode == "fixed":
        return 1
    _check_mode(mode)
    rows, cols = anyres_grid_shape((height, width), _pinpoints_or_default(grid_pinpoints, tile_size), tile_size)
    return 1 + rows * cols


def pack_image_features(
    features: torch.Tensor,
    image_size: Size,
    grid_pinpoints: Sequence[Size] | None,
    tile_size: int,
    patch_size: int,
    image_newline: torch.Tensor | None,
    *,
    mode: str = "anyres",
) -> torch.Tensor:
    """One image's tile features `[n_tiles, g^2, C]` -> its LLM token embeddings `[N, C]` (SPEC_NOTES §5.4).

    anyres: tile 0 is the thumbnail (g^2 tokens as they are); tiles 1.. are the row-major crops, re-assembled
    into one feature map, unpadded, with `image_newline` `[C]` after every row. fixed: the one tile's g^2 tokens
    (`image_newline` unused, may be None). N always equals `num_image_tokens` for the same settings.
    """
    per_tile = _patches_per_side(tile_size, patch_size)
    if features.ndim != 3 or features.shape[1] != per_tile**2:
        raise ValueError(
            f"features must be [n_tiles, {per_tile**2}, C] for tile {tile_size} / patch {patch_size}, "
            f"got {tuple(features.shape)}"
        )
    n_tiles, _, channels = features.shape
    image_size = (int(image_size[0]), int(image_size[1]))  # also accepts a row of an image_sizes tensor
    if mode == "fixed":
        if n_tiles != 1:
            raise ValueError(f"fixed mode packs exactly one tile per image, got {n_tiles}")
        return features[0]
    _check_mode(mode)
    rows, cols = anyres_grid_shape(image_size, _pinpoints_or_default(grid_pinpoints, tile_size), tile_size)
    if n_tiles != 1 + rows * cols:
        raise ValueError(
            f"an image of size {tuple(image_size)} (h, w) is cut into 1 thumbnail + {rows}x{cols} tiles, but "
            f"{n_tiles} tiles of features were given; use the same tile size and grid pinpoints as the processor"
        )
    if image_newline is None or image_newline.shape != (channels,):
        got = None if image_newline is None else tuple(image_newline.shape)
        raise ValueError(f"anyres packing needs image_newline of shape ({channels},), got {got}")
    thumbnail = features[0]  # [g^2, C]
    grid = features[1:].reshape(rows, cols, per_tile, per_tile, channels)  # [rows, cols, g, g, C]
    grid = grid.permute(0, 2, 1, 3, 4).reshape(rows * per_tile, cols * per_tile, channels)  # [Hc, Wc, C]
    grid = unpad(grid, image_size)  # [H_f, W_f, C]
    newline = image_newline.to(grid.dtype).expand(grid.shape[0], 1, channels)  # [H_f, 1, C]
    grid = torch.cat([grid, newline], dim=1)  # [H_f, W_f + 1, C]
    return torch.cat([thumbnail, grid.reshape(-1, channels)], dim=0)  # [g^2 + H_f * (W_f + 1), C]


def _patches_per_side(tile_size: int, patch_size: int) -> int:
    if tile_size <= 0 or patch_size <= 0 or tile_size % patch_size:
        raise ValueError(f"tile size {tile_size} must be a positive multiple of patch size {patch_size}")
    return tile_size // patch_size


def _pinpoints_or_default(pinpoints: Sequence[Size] | None, tile_size: int) -> Sequence[Size]:
    return default_grid_pinpoints(tile_size) if pinpoints is None else pinpoints


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"image processing mode {mode!r} is not supported; use one of {MODES}")
