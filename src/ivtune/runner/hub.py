"""Sharing as the ecosystem does it: Hub-ready folders (peft's adapter files + a model card), loaded back locally
or from the Hugging Face Hub.

A folder of :func:`save_pretrained` can be uploaded as it is::

    adapter_config.json          the backbone adapter (ivtune.save_adapter): timm name, method and its config, versions
    adapter_model.safetensors    the adapter tensors only (the frozen backbone comes from timm / its weights file)
    head_model.safetensors       a run's trained task tensors outside the backbone (neck, head / decoder / detector)
    config.yaml                  a run's resolved config (task, data section: normalisation, sizes)
    dataset_info.json            a run's class names / palette
    README.md                    the model card: YAML front matter (library_name: ivtune, base_model, tags, datasets,
                                 metrics and model-index results of the run's evaluation) and the paper citation

:func:`from_pretrained` reads such a folder (local, or a Hub id through ``huggingface_hub.snapshot_download``);
:func:`push_to_hub` uploads one with ``huggingface_hub``'s ``upload_folder``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbones.base import IVBackbone
from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write, load_adapter, save_adapter, trainable_state_dict
from ..config import Config, load_config, save_config
from ..errors import CheckpointMismatchError, ConfigError, IVTuneError, WeightsUnavailableError

HEAD_NAME = "head_model.safetensors"
RUN_CONFIG = "config.yaml"
RUN_INFO = "dataset_info.json"
CARD_NAME = "README.md"
_BACKBONE = "backbone."  # prefix of the backbone's tensors inside a task model
CITATION = """@article{zhang2024ivtuning,
  title   = {IV-tuning: Parameter-Efficient Transfer Learning for Infrared-Visible Tasks},
  author  = {Zhang, Yaming and Gao, Chenqiang and Liu, Fangcen and Guo, Junjie and Wang, Lan and Peng, Xinggan and
             Meng, Deyu},
  journal = {arXiv preprint arXiv:2412.16654},
  year    = {2024}
}"""
# task -> (Hub pipeline tag, metric keys of its evaluation worth a model-index row)
TASK_CARD = {"seg": ("image-segmentation", ("miou", "pixel_acc")),
             "sod": ("image-segmentation", ("Sm", "wFm", "meanEm", "maxFm", "MAE")),
             "det": ("object-detection", ("mAP", "AP50", "AP75"))}
TASK_TAGS = {"seg": "semantic-segmentation", "sod": "salient-object-detection", "det": "object-detection"}


class HubError(IVTuneError, RuntimeError):
    """A Hugging Face Hub call failed (offline, unknown repository, no permission)."""


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("sharing needs huggingface_hub: pip install 'ivtune[hub]'.") from None
    return huggingface_hub


# ------------------------------------------------------------------------------------------------ save
def save_pretrained(run_or_backbone: str | Path | Config | nn.Module, directory: str | Path,
                    overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Write a Hub-ready folder for a run (directory or config) or an :class:`ivtune.IVBackbone` (module docstring).

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    if isinstance(run_or_backbone, IVBackbone):
        save_adapter(run_or_backbone, directory)
        _write_card(directory, run_or_backbone.build_config, None, None, {})
        return directory
    if isinstance(run_or_backbone, nn.Module):
        raise ConfigError(f"save_pretrained takes a run directory, a config or an IVBackbone, got "
                          f"{type(run_or_backbone).__name__}; for a task module pass its run directory.")
    from .run import load_run_model, resolve

    cfg, run_dir = resolve(run_or_backbone, list(overrides))
    module = load_run_model(cfg, run_dir)
    backbone = module.model.backbone
    save_adapter(backbone, directory, step=(getattr(module, "weights_record", None) or {}).get("step"))
    head = {k: v.contiguous().cpu() for k, v in trainable_state_dict(module.model).items()
            if not k.startswith(_BACKBONE)}
    from ..checkpoint import save_weights

    save_weights(directory / HEAD_NAME, head, "ivtune-head/1")
    save_config(cfg, directory / RUN_CONFIG)
    info_text = (run_dir / RUN_INFO).read_text()
    atomic_write(directory / RUN_INFO, lambda p: Path(p).write_text(info_text))
    _write_card(directory, backbone.build_config, cfg, run_dir, json.loads(info_text))
    return directory


def base_model_id(build_config: dict[str, Any]) -> str:
    """The Hub id of the frozen backbone's timm weights (``timm/<name>.<tag>``), else the timm name."""
    import timm

    name = build_config.get("name", "")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown tag or a name timm cannot resolve: the architecture name still identifies it
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return hub_id or f"timm/{name}"


def run_metrics(run_dir: Path | None, task: str) -> list[tuple[str, str, float]]:
    """``(split, metric, value)`` from the run's ``eval/**/metrics.json`` (overall rows only)."""
    if run_dir is None:
        return []
    keys = TASK_CARD[task][1]
    rows = []
    for path in sorted(Path(run_dir, "eval").rglob("metrics.json")):
        split = path.parent.relative_to(Path(run_dir, "eval")).as_posix()
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        rows_of = data.get("results", data) if isinstance(data, dict) else {}  # seg / det wrap them in "results"
        for name, res in rows_of.items():
            if not isinstance(res, dict) or name != "all" and task != "sod":
                continue
            for key in keys:
                if isinstance(res.get(key), (int, float)):
                    rows.append((split if task != "sod" else name, key, float(res[key])))
    return rows


def _write_card(directory: Path, build: dict[str, Any], cfg: Config | None, run_dir: Path | None,
                info: dict[str, Any]) -> None:
    hub = _hub()
    task = cfg.task if cfg is not None else None
    method = build.get("method", "iv-tuning")
    tags = ["ivtune", "iv-tuning", "infrared", "thermal", "rgb-t", "peft", method]
    results, metrics = [], []
    if task is not None:
        pipeline, _ = TASK_CARD[task]
        tags.append(TASK_TAGS[task])
        for split, key, value in run_metrics(run_dir, task):
            metrics.append(key)
            results.append(hub.EvalResult(task_type=pipeline, dataset_type=cfg.data.dataset,
                                          dataset_name=cfg.data.dataset, dataset_split=split, metric_type=key,
                                          metric_value=round(value, 4)))
    name = run_dir.name if run_dir is not None else f"{build.get('name')}-{method}"
    data = hub.ModelCardData(
        library_name="ivtune", base_model=base_model_id(build), tags=tags,
        datasets=[cfg.data.dataset] if cfg is not None else None, metrics=sorted(set(metrics)) or None,
        pipeline_tag=TASK_CARD[task][0] if task else None, model_name=name, eval_results=results or None,
        license="mit")
    what = (f"a {task} model (`model.head: {cfg.model.head}`) on" if cfg is not None else "an adapter for")
    body = [
        f"# {name}", "",
        f"{what} the frozen timm backbone `{build.get('name')}` with the `{method}` method of "
        "[ivtune](https://arxiv.org/abs/2412.16654), for infrared + visible image pairs.", "",
        "## Use", "", "```python",
        *(["import ivtune", "", f'predictor = ivtune.Predictor.from_pretrained("{directory.name}")  # or a Hub id',
           'result = predictor.predict("vis.png", "ir.png")'] if cfg is not None else
          ["import ivtune", "", f'backbone = ivtune.from_pretrained("{directory.name}")  # or a Hub id']),
        "```", "",
        f"Files: `{CONFIG_NAME}` + `{WEIGHTS_NAME}` (the backbone adapter)"
        + (f", `{HEAD_NAME}` (the task head), `{RUN_CONFIG}` and `{RUN_INFO}` (the run)." if cfg is not None else "."),
        "",
    ]
    if results:
        body += ["## Evaluation", "", "| split | metric | value |", "|---|---|---|"]
        body += [f"| {r.dataset_split} | {r.metric_type} | {r.metric_value} |" for r in results] + [""]
    if info.get("classes"):
        body += [f"Classes: {', '.join(map(str, info['classes']))}.", ""]
    body += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
    atomic_write(directory / CARD_NAME, lambda p: Path(p).write_text(text))


# ------------------------------------------------------------------------------------------------ load
def resolve_folder(dir_or_hub_id: str | Path, revision: str | None = None, cache_dir: str | Path | None = None
                   ) -> Path:
    """A local folder as it is, or a Hub id (``owner/name``) downloaded (or found in the cache) by
    ``huggingface_hub.snapshot_download``."""
    path = Path(dir_or_hub_id)
    if path.is_dir():
        return path
    text = str(dir_or_hub_id)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/")):
        raise ConfigError(f"{text} is neither a folder nor a Hub id (owner/name); pass a folder written by "
                          "ivtune.save_pretrained or a Hub repository id.")
    hub = _hub()
    try:
        return Path(hub.snapshot_download(text, revision=revision, cache_dir=cache_dir, library_name="ivtune"))
    except (hub.errors.OfflineModeIsEnabled, hub.errors.LocalEntryNotFoundError) as exc:
        raise WeightsUnavailableError(
            f"cannot fetch {text} from the Hugging Face Hub: offline (HF_HUB_OFFLINE is set or there is no network) "
            "and it is not in the local cache. Download the folder where there is a network (e.g. `hf download "
            f"{text} --local-dir FOLDER`) and pass the local folder: ivtune.from_pretrained('FOLDER').") from exc
    except hub.errors.RepositoryNotFoundError as exc:
        raise WeightsUnavailableError(f"{text} is not a repository on the Hugging Face Hub (or it is private: log "
                                      "in with `hf auth login`).") from exc


def from_pretrained(dir_or_hub_id: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                    weights: str | Path | None = None, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a folder of :func:`save_pretrained`: a run's task module (eval mode, with ``cfg``) when the folder holds
    a run, else the :class:`ivtune.IVBackbone` of the adapter.

    Args:
        dir_or_hub_id: a local folder, or a Hub id (``owner/name``).
        revision: Hub branch, tag or commit.
        cache_dir: Hub cache folder (default: huggingface_hub's).
        weights: the frozen backbone's weights file, when the run was trained on one (``model.weights``).
        map_location: device of the loaded tensors.

    Raises:
        WeightsUnavailableError: a Hub id offline and not cached (the message says how to pass a local folder).
        CheckpointMismatchError: the files do not match the model they describe (every key named).
    """
    folder = resolve_folder(dir_or_hub_id, revision, cache_dir)
    if not (folder / RUN_CONFIG).is_file():
        return load_adapter(folder, weights=weights, map_location=map_location)
    from ..checkpoint import load_trainable, read_weights
    from ..tasks import get_task
    from .run import build_module_seeded

    overrides = [f"model.weights={weights}"] if weights is not None else []
    cfg = load_config(folder / RUN_CONFIG, overrides)
    for name in (WEIGHTS_NAME, HEAD_NAME, RUN_INFO):
        if not (folder / name).is_file():
            raise CheckpointMismatchError(f"{folder / name} not found: {folder} is not a complete folder of "
                                          "ivtune.save_pretrained.")
    module = build_module_seeded(get_task(cfg.task), cfg, json.loads((folder / RUN_INFO).read_text()))
    backbone, _ = read_weights(folder / WEIGHTS_NAME, map_location)
    head, _ = read_weights(folder / HEAD_NAME, map_location)
    load_trainable(module.model, {**{_BACKBONE + k: v for k, v in backbone.items()}, **head}, source=str(folder))
    return module.eval()


def push_to_hub(directory: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload ivtune model") -> str:
    """Upload a folder of :func:`save_pretrained` to the Hub repository ``repo_id`` (created when missing);
    returns the commit URL. A thin call of ``huggingface_hub``'s ``create_repo`` + ``upload_folder``."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise ConfigError(f"{directory} has no {CONFIG_NAME}: write it with ivtune.save_pretrained first.")
    hub = _hub()
    api = hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(directory), commit_message=commit_message)
    except (hub.errors.OfflineModeIsEnabled, hub.errors.HfHubHTTPError, OSError) as exc:
        raise HubError(f"uploading {directory} to {repo_id} failed: {exc}. Check the network, HF_HUB_OFFLINE and "
                       "your token (`hf auth login`).") from exc
    return str(getattr(info, "commit_url", info))
