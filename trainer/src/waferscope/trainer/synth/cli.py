"""``waferscope synth train | sample | score``: rare-class map generators, with progress bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm  # type: ignore[import-untyped]

synth = typer.Typer(help="Synthetic wafer maps: train a generator, sample from it, score it.")

RARE = ["Scratch", "Loc", "Donut"]
ClassOpt = Annotated[
    list[str] | None, typer.Option("--class", "-k", help="Class to use (repeatable).")
]
MaxOutsideOpt = Annotated[
    float, typer.Option(help="Reject a draw with more of its die mass off the wafer.")
]
MinCoverageOpt = Annotated[
    float, typer.Option(help="Reject a draw whose dies cover less of the wafer disc.")
]


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


@synth.command("train")
def train_cmd(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Labelled training maps.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint file (.pt) to write.")],
    generator: Annotated[str, typer.Option("--generator", "-g", help="wgan-gp or vae.")] = "vae",
    classes: ClassOpt = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps (critic steps for WGAN).")] = 2000,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this wall time.")] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="Generator setting key=value (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many real maps a class.")] = None,
    seed: int = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    threads: int = 1,
) -> int:
    """Train a class- and density-conditional generator on real maps (resumable checkpoint)."""
    from waferscope.trainer.config import parse_overrides
    from waferscope.trainer.synth.fit import load_real, train_generator
    from waferscope.trainer.synth.registry import get_generator

    _threads(threads)
    plugin = get_generator(generator)
    values = dict(parse_overrides(settings or []))
    real = load_real(
        data, classes or RARE, 64 if "size" not in values else int(values["size"]), limit, seed
    )
    bar = tqdm(total=steps, desc=f"{plugin.name}", unit="step")

    def progress(step: int, losses: dict[str, float]) -> None:
        bar.n = step
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        bar.refresh()

    result = train_generator(
        generator,
        real,
        out,
        steps=steps,
        settings=values,
        max_minutes=max_minutes,
        seed=seed,
        resume=resume,
        progress=progress,
    )
    bar.close()
    print(
        f"{result.checkpoint}: {result.steps} steps, {result.seconds:.0f} s on "
        f"{len(real.grids)} maps of {', '.join(real.classes)}"
    )
    return 0


@synth.command("sample")
def sample_cmd(
    generator: Annotated[Path, typer.Option("--generator", "-g", help="Checkpoint (.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Archive (.npz) to write.")],
    count: Annotated[int, typer.Option("--count", "-n", help="Maps per class.")] = 100,
    classes: ClassOpt = None,
    seed: int = 0,
    edge_exclusion: Annotated[float, typer.Option(help="Die-free ring width, in cells.")] = 0.0,
    max_outside: MaxOutsideOpt = 0.02,
    min_coverage: MinCoverageOpt = 0.6,
    sheet: Annotated[
        Path | None, typer.Option(help="Contact sheet PNG (default: next to the archive).")
    ] = None,
) -> int:
    """Sample plausible maps per class into an archive the trainer reads, plus a contact sheet."""
    from waferscope.trainer.data import write_archive
    from waferscope.trainer.synth.contact import contact_sheet
    from waferscope.trainer.synth.fit import load_generator, sample
    from waferscope.trainer.synth.plausibility import PlausibilityConfig

    _threads(1)
    loaded = load_generator(generator)
    wanted = classes or list(loaded.classes)
    bar = tqdm(total=count * len(wanted), desc="sample", unit="map")
    result = sample(
        loaded,
        dict.fromkeys(wanted, count),
        seed=seed,
        plausibility=PlausibilityConfig.model_validate(
            {
                "edge_exclusion": edge_exclusion,
                "max_outside": max_outside,
                "min_coverage": min_coverage,
            }
        ),
        progress=bar.update,
    )
    bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_archive(out, result.grids, result.labels, loaded.class_names)
    png = sheet or out.with_suffix(".png")
    png.write_bytes(contact_sheet(result.grids, result.labels, loaded.class_names))
    report = result.report.to_dict()
    out.with_suffix(".plausibility.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{out}: {len(result.grids)} maps; contact sheet {png}; rejection rate "
        f"{report['rejection_rate']} {report['reasons']}"
    )
    return 0


@synth.command("score")
def score_cmd(
    generator: Annotated[Path, typer.Option("--generator", "-g", help="Checkpoint (.pt).")],
    reference: Annotated[
        list[Path], typer.Option("--reference", "-r", help="Real labelled maps (the val split).")
    ],
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Engine bundle for embeddings.")],
    count: Annotated[int, typer.Option("--count", "-n", help="Maps per class and side.")] = 300,
    classes: ClassOpt = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(help="Other real maps (the train split) scored the same way: the floor."),
    ] = None,
    seed: int = 0,
    max_outside: MaxOutsideOpt = 0.02,
    min_coverage: MinCoverageOpt = 0.6,
    as_json: Annotated[Path | None, typer.Option("--json", help="Write the scores here.")] = None,
) -> int:
    """Per class: FID on the classifier embedding, 1-NN accuracy, precision/recall, SSIM."""
    from waferscope.trainer.synth.fit import load_generator, load_real, sample
    from waferscope.trainer.synth.plausibility import PlausibilityConfig
    from waferscope.trainer.synth.quality import BundleEmbedder, score_sets

    _threads(1)
    loaded = load_generator(generator)
    wanted = classes or list(loaded.classes)
    embed = BundleEmbedder(bundle)
    pcfg = PlausibilityConfig.model_validate(
        {"max_outside": max_outside, "min_coverage": min_coverage}
    )
    size = loaded.size
    rows: dict[str, dict[str, object]] = {}
    for name in tqdm(wanted, desc="score", unit="class"):
        real = load_real(reference, [name], size, count, seed)
        fake = sample(loaded, {name: count}, seed=seed, plausibility=pcfg)
        e_real = embed(real.grids)
        row: dict[str, object] = {
            "generated": score_sets(real.grids, fake.grids, e_real, embed(fake.grids)),
            "rejection_rate": round(fake.report.rejection_rate, 4),
        }
        if baseline:
            other = load_real(baseline, [name], size, count, seed + 1)
            row["real_baseline"] = score_sets(real.grids, other.grids, e_real, embed(other.grids))
        rows[name] = row
    doc = {
        "generator": loaded.name,
        "steps": loaded.step,
        "train_seconds": round(loaded.seconds, 1),
        "embedding": "classifier embedding of the bundle (no Inception weights)",
        "classes": rows,
    }
    text = json.dumps(doc, indent=2)
    if as_json is not None:
        as_json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(synth, name="synth")
