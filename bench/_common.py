"""What every benchmark here shares: the shared sample images, as small ImageFolder trees."""

from __future__ import annotations

from pathlib import Path

SAMPLE_VAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample" / "val"


def sample_tree(n: int, dest: Path) -> Path:
    """An ImageFolder tree at ``dest`` with the first ``n`` shared class folders (symlinks, one image each)."""
    if not SAMPLE_VAL.is_dir():
        raise SystemExit(f"Expected the shared sample images at {SAMPLE_VAL} (../shared/data beside the project).")
    for class_dir in sorted(SAMPLE_VAL.iterdir())[:n]:
        (dest / class_dir.name).mkdir(parents=True)
        for image in class_dir.iterdir():
            (dest / class_dir.name / image.name).symlink_to(image)
    return dest
