"""robustbench-ibn: appearance-robustness benchmark for PyTorch image classifiers.

Reproduces Table 1 of IBN-Net (Pan et al., ECCV 2018) for any backbone: top-1/top-5 error on
ImageNet val, clean and under appearance shifts, with the drops.

Example:
    >>> import robustbench_ibn as rb
    >>> "resnet50_ibn_b" in rb.list_models("*ibn_b")
    True
    >>> rb.create_transform("rgb+50").label
    'RGB+50'
"""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that ``import robustbench_ibn`` (and every console
# script's --help) does not pay for torch; ``rb.evaluate`` imports what it needs the first time it is read.
_PUBLIC = {
    "DataConfig": ".data",
    "DomainResult": ".results",
    "EvalResult": ".results",
    "ImageNetVal": ".data",
    "ModelInfo": ".models",
    "RunConfig": ".engine",
    "Shift": ".transforms",
    "create_model": ".models",
    "create_transform": ".transforms",
    "effective_robustness": ".effective",
    "evaluate": ".runner",
    "list_models": ".models",
    "list_transforms": ".transforms",
    "model_info": ".models",
    "register_model": ".models",
    "register_transform": ".transforms",
}


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = [
    "DataConfig",
    "DomainResult",
    "EvalResult",
    "ImageNetVal",
    "ModelInfo",
    "RunConfig",
    "Shift",
    "__version__",
    "create_model",
    "create_transform",
    "effective_robustness",
    "evaluate",
    "list_models",
    "list_transforms",
    "model_info",
    "register_model",
    "register_transform",
]
