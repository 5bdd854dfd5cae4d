"""Which parameters a stage trains, at which learning rate, and the start-up table that says so.

    names = apply_trainable(model, stage.trainable)      # requires_grad by name prefix; returns trained names
    print(component_table(model))                          # every component: frozen / trainable, parameter count
    groups = parameter_groups(model, stage)                # AdamW groups: one per (lr prefix, decay or not)
"""
from __future__ import annotations

from torch import nn

from training.stages import COMPONENTS, StageConfig, component_of, has_prefix, learning_rate_for


def apply_trainable(model: nn.Module, prefixes: list[str]) -> set[str]:
    """Sets requires_grad on exactly the parameters under `prefixes`; every other parameter is frozen."""
    names = {name for name, _ in model.named_parameters()}
    for prefix in prefixes:
        if not any(has_prefix(name, prefix) for name in names):
            raise ValueError(f"trainable prefix {prefix!r} matches no parameter of the model; parameter names "
                             f"start with {COMPONENTS}")
    trained = set()
    for name, param in model.named_parameters():
        param.requires_grad_(any(has_prefix(name, p) for p in prefixes))
        if param.requires_grad:
            trained.add(name)
    return trained


def component_table(model: nn.Module) -> str:
    """One line per top-level component: trainable / frozen / partly trainable, and parameter counts."""
    totals = {c: 0 for c in COMPONENTS}
    trained = {c: 0 for c in COMPONENTS}
    for name, param in model.named_parameters():
        component = component_of(name)
        totals[component] = totals.get(component, 0) + param.numel()
        trained[component] = trained.get(component, 0) + (param.numel() if param.requires_grad else 0)
    lines = [f"{'component':<24}{'status':<22}{'parameters':>14}"]
    for component, total in totals.items():
        if trained[component] == total and total:
            status = "trainable"
        elif trained[component] == 0:
            status = "frozen"
        else:
            status = f"partial ({trained[component]:,})"
        lines.append(f"{component:<24}{status:<22}{total:>14,}")
    all_params, all_trained = sum(totals.values()), sum(trained.values())
    lines.append(f"{'total':<24}{f'{all_trained:,} trainable':<22}{all_params:>14,}")
    return "\n".join(lines)


def _no_decay(name: str, param: nn.Parameter) -> bool:
    # Biases, norm gains and the image_newline vector are not weight-decayed (1-D tensors), as is customary.
    return param.ndim < 2


def parameter_groups(model: nn.Module, stage: StageConfig) -> list[dict]:
    """AdamW parameter groups: trainable parameters grouped by their learning-rate prefix and decay class.

    Each group carries its `name` ("vision_tower", "language_model/no_decay", ...) for logging.
    """
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        prefix = max((p for p in stage.learning_rates if has_prefix(name, p)), key=len, default=None)
        if prefix is None:
            raise ValueError(f"trainable parameter {name!r} has no learning rate; add one for "
                             f"{component_of(name)!r} under learning_rates")
        no_decay = _no_decay(name, param)
        key = (prefix, no_decay)
        if key not in groups:
            groups[key] = {"name": prefix + ("/no_decay" if no_decay else ""), "params": [],
                           "lr": learning_rate_for(name, stage.learning_rates),
                           "weight_decay": 0.0 if no_decay else stage.weight_decay}
        groups[key]["params"].append(param)
    return list(groups.values())
